//! The BlobStore seam's contract on every backend: the local folder and S3 (a real
//! S3-compatible server, SeaweedFS). Plus the S3 start-up probe and a full round trip.

use bytes::Bytes;
use imagegate::blobs::{self, BlobError, BlobStore};
use imagegate::domain::durability::Durability;
use serde_json::Value;
use std::sync::Arc;

use crate::support::s3::{self, ACCESS};
use crate::support::*;

async fn conformance(store: Arc<dyn BlobStore>) {
    store.probe().await.expect("probe");
    let jpeg = Bytes::from(vec![7u8; 300_000]);
    store.put("img_conf1.jpeg", jpeg.clone(), "image/jpeg").await.unwrap();
    assert_eq!(store.get("img_conf1.jpeg").await.unwrap(), jpeg);
    assert_eq!(store.head("img_conf1.jpeg").await.unwrap(), 300_000);
    let read = |range| {
        let store = store.clone();
        async move {
            use futures_util::TryStreamExt;
            let chunks: Vec<Bytes> = store.stream("img_conf1.jpeg", range).await.unwrap().try_collect().await.unwrap();
            assert!(chunks.iter().all(|c| c.len() <= blobs::STREAM_CHUNK), "streamed in bounded chunks");
            chunks.concat()
        }
    };
    assert_eq!(read(None).await, jpeg, "the whole object, streamed");
    assert_eq!(read(Some(150_000..150_010)).await, jpeg.slice(150_000..150_010), "only the range");
    assert!(store.stream("img_missing.png", None).await.err().expect("missing").is_not_found());
    store.put("img_conf1.jpeg", Bytes::from_static(b"replaced"), "image/jpeg").await.unwrap();
    assert_eq!(&store.get("img_conf1.jpeg").await.unwrap()[..], b"replaced", "put replaces");
    store.put("img_conf3.png", Bytes::from_static(b"y"), "image/png").await.unwrap();
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = store.list_page(cursor).await.unwrap();
        listed.extend(page);
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    let now = imagegate::domain::now_secs();
    for key in ["img_conf1.jpeg", "img_conf3.png"] {
        let (_, modified) = listed.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("{key} listed"));
        assert!((now - 120..=now + 120).contains(modified), "{key} modified at {modified}");
    }
    store.delete("img_conf3.png").await.unwrap();
    store.delete("img_conf1.jpeg").await.unwrap();
    store.delete("img_conf1.jpeg").await.expect("deleting a missing object is not an error");
    assert!(store.get("img_conf1.jpeg").await.unwrap_err().is_not_found());
    assert!(store.head("img_missing.png").await.unwrap_err().is_not_found());
    assert!(matches!(store.get("../escape").await, Err(BlobError::InvalidKey(_))));
    // A stream is stored as it comes; a failing one leaves nothing behind.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..40u8).map(|i| Ok(Bytes::from(vec![i; 100_000]))).collect();
    let n = store
        .put_stream("files_conf2", Box::pin(futures_util::stream::iter(chunks)), "application/jsonl")
        .await
        .unwrap();
    assert_eq!(n, 4_000_000);
    let got = store.get("files_conf2").await.unwrap();
    assert_eq!((got.len(), got[0], got[3_999_999]), (4_000_000, 0, 39));
    let failing = futures_util::stream::iter([Ok(Bytes::from_static(b"half")), Err(std::io::Error::other("cut off"))]);
    assert!(store.put_stream("files_conf3", Box::pin(failing), "application/jsonl").await.is_err());
    assert!(store.head("files_conf3").await.unwrap_err().is_not_found(), "nothing stored");
    store.delete("files_conf2").await.unwrap();
    store.flush().expect("flush");
    assert_eq!(store.flush().unwrap(), 0, "a second flush has nothing left to do");
}

#[tokio::test]
async fn the_fs_store_meets_the_contract_at_both_durability_levels() {
    for durability in [Durability::Process, Durability::Power] {
        let dir = tempfile::tempdir().unwrap();
        let store = blobs::open(&format!("file://{}", dir.path().display()), None, durability).unwrap();
        conformance(store.clone()).await;
        // `process` leaves the disk to the flush loop; `power` syncs each image as it is stored.
        store.put("img_conf2.png", Bytes::from_static(b"x"), "image/png").await.unwrap();
        let owed = if durability == Durability::Process { 1 } else { 0 };
        assert_eq!(store.flush().unwrap(), owed, "{durability:?}");
        assert_eq!(&store.get("img_conf2.png").await.unwrap()[..], b"x");
        let leftovers: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.contains(".tmp")).collect();
        assert!(leftovers.is_empty(), "no temporary files left behind: {leftovers:?}");
    }
}

/// The names of the files under `dir`.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test]
async fn the_s3_store_meets_the_contract() {
    let server = s3::s3().await;
    conformance(blobs::open(&server.storage_url(), Some(server.credentials()), Durability::Process).unwrap()).await;
}

#[tokio::test]
async fn the_s3_probe_says_which_setting_is_wrong() {
    let server = s3::s3().await;
    let wrong_bucket = format!("s3://no-such-bucket-here?endpoint={}&region=us-east-1", server.endpoint);
    let err = blobs::open(&wrong_bucket, Some(server.credentials()), Durability::Process)
        .unwrap()
        .probe()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-bucket-here") && err.contains("does not exist"), "{err}");
    let err = blobs::open(
        &server.storage_url(),
        Some((ACCESS.into(), "wrong-secret-0000000000".into())),
        Durability::Process,
    )
    .unwrap()
    .probe()
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("credentials") && err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
}

#[tokio::test]
async fn a_generation_stored_on_s3_serves_the_bytes_in_the_bucket() {
    let server = s3::s3().await;
    let url = server.storage_url();
    let (a, s) = server.credentials();
    let app = spawn_with(
        {
            let url = url.clone();
            move |rt| {
                rt.storage_url = url;
                rt.s3_access_key = Some(a);
                rt.s3_secret_key = Some(imagegate::config::Secret::new(s));
            }
        },
        false,
    )
    .await;
    let body: Value = app.generate(pro("stored in a bucket")).await.json().await.unwrap();
    let image_url = body["data"][0]["url"].as_str().unwrap();
    let served = app.get(image_url).await;
    assert_eq!(served.status(), 200);
    let served = served.bytes().await.unwrap();
    let key = image_url.rsplit('/').next().unwrap();
    let bucket = blobs::open(&url, Some(server.credentials()), Durability::Process).unwrap();
    assert_eq!(bucket.get(key).await.unwrap(), served, "the gateway serves what landed in the bucket");
    let ranged = app.client.get(image_url).header("Range", "bytes=10-19").send().await.unwrap();
    assert_eq!(ranged.bytes().await.unwrap(), served.slice(10..20));
}

#[tokio::test]
async fn public_url_mode_points_at_the_cdn() {
    let app =
        spawn_with(|rt| rt.url_mode = imagegate::config::UrlMode::Public("https://cdn.example.com/img".into()), false)
            .await;
    let text = app.generate(pro("on a cdn")).await.text().await.unwrap();
    assert!(text.len() < 1024, "{} bytes", text.len());
    let body: Value = serde_json::from_str(&text).unwrap();
    let url = body["data"][0]["url"].as_str().unwrap();
    assert!(url.starts_with("https://cdn.example.com/img/img_") && url.ends_with(".jpeg"), "{url}");
    // The gateway still serves it under /images for origins and tools.
    let key = url.rsplit('/').next().unwrap();
    assert_eq!(app.get(&app.url(&format!("/images/{key}"))).await.status(), 200);
}

/// The gateway on S3 storage under a fresh prefix, with `tweak` on top.
async fn on_s3(server: &s3::S3Server, tweak: impl FnOnce(&mut imagegate::config::Runtime)) -> TestApp {
    let url = server.storage_url();
    let (a, s) = server.credentials();
    spawn_with(
        move |rt| {
            rt.storage_url = url;
            rt.s3_access_key = Some(a);
            rt.s3_secret_key = Some(imagegate::config::Secret::new(s));
            tweak(rt);
        },
        false,
    )
    .await
}

#[tokio::test]
async fn presigned_urls_read_straight_from_the_bucket() {
    let server = s3::s3().await;
    let app = on_s3(&server, |rt| {
        rt.url_mode = imagegate::config::UrlMode::Presigned(std::time::Duration::from_secs(600));
    })
    .await;
    let resp = app.generate(pro("presigned")).await;
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let text = resp.text().await.unwrap();
    assert!(text.len() < 1024, "a presigned answer stays under 1 KB: {} bytes", text.len());
    let body: Value = serde_json::from_str(&text).unwrap();
    let presigned = body["data"][0]["url"].as_str().unwrap();
    assert!(presigned.starts_with(&server.endpoint) && presigned.contains("X-Amz-Signature"), "{presigned}");
    assert!(body["data"][0]["url_expires_at"].as_i64().unwrap() <= body["data"][0]["expires_at"].as_i64().unwrap());
    let direct = reqwest::get(presigned).await.unwrap();
    assert_eq!(direct.status(), 200);
    let direct = direct.bytes().await.unwrap();
    let via_gateway =
        app.get(&app.url(&format!("/images/{}", body["data"][0]["id"].as_str().unwrap().to_string() + ".jpeg"))).await;
    assert_eq!(via_gateway.bytes().await.unwrap(), direct);
    let task = app.task(&task_id).await;
    let again = task["result"]["data"][0]["url"].as_str().unwrap();
    assert!(again.contains("X-Amz-Signature"), "task reads get signed URLs too");
    assert_eq!(reqwest::get(again).await.unwrap().status(), 200);
}

#[tokio::test]
async fn presigned_mode_without_s3_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut rt = runtime(dir.path());
    rt.url_mode = imagegate::config::UrlMode::Presigned(std::time::Duration::from_secs(60));
    let err = imagegate::app::start(rt).await.err().expect("refused").to_string();
    assert!(err.contains("presigned") && err.contains("S3"), "{err}");
}

#[tokio::test]
async fn presigned_urls_are_signed_afresh_wherever_a_task_is_handed_out_again() {
    let server = s3::s3().await;
    let app = on_s3(&server, |rt| {
        rt.url_mode = imagegate::config::UrlMode::Presigned(std::time::Duration::from_secs(1));
        rt.webhook_schedule = vec![std::time::Duration::from_millis(2500)];
    })
    .await;
    let sink = imagegate_fakes::WebhookSink::start().await.unwrap();
    sink.reply_with(&[500]);
    let task = app
        .submit_async(
            &app.key,
            serde_json::json!({"model": "nano-banana-pro", "prompt": "short-lived urls",
        "webhook_url": sink.url()}),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_string();
    let done = app.wait_task(&id).await;
    let first = done["result"]["data"][0]["url"].as_str().unwrap().to_string();
    // Wait until the URL signed at completion has expired at the bucket.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while reqwest::get(&first).await.unwrap().status().is_success() {
        assert!(std::time::Instant::now() < deadline, "a 1 s presigned URL never expired");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let works = |u: String| async move { reqwest::get(&u).await.unwrap().status() == 200 };
    let read = app.task(&id).await;
    assert!(works(read["result"]["data"][0]["url"].as_str().unwrap().into()).await, "GET /v1/tasks/{{id}}");
    let list = app.list_tasks("?limit=1").await;
    assert!(works(list["data"][0]["result"]["data"][0]["url"].as_str().unwrap().into()).await, "GET /v1/tasks");
    let sse = app.client.get(app.url(&format!("/v1/tasks/{id}/events"))).bearer_auth(&app.key).send();
    let sse = sse.await.unwrap().text().await.unwrap();
    let data = sse.lines().find_map(|l| l.strip_prefix("data:")).unwrap();
    let event: Value = serde_json::from_str(data.trim()).unwrap();
    assert!(works(event["result"]["data"][0]["url"].as_str().unwrap().into()).await, "SSE");
    // The webhook's retry, 2.5 s after the first attempt, carries a URL signed for it.
    let got = sink.wait_for(2, std::time::Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2);
    let retried: Value = serde_json::from_str(&got[1].body).unwrap();
    let hook_url = retried["data"]["result"]["data"][0]["url"].as_str().unwrap().to_string();
    assert_ne!(hook_url, first);
    // Fetching it here would race its 1 s life on a loaded machine: its signing time says it
    // was signed for the retry, after the first URL had expired.
    let signed_at = |u: &str| {
        let u = url::Url::parse(u).unwrap();
        u.query_pairs().find(|(k, _)| k == "X-Amz-Date").map(|(_, v)| v.into_owned()).expect("X-Amz-Date")
    };
    assert!(signed_at(&hook_url) > signed_at(&first), "the webhook retry carries a URL signed afresh");
}
