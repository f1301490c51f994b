//! `GET /images/{id}.{ext}`: caching headers, conditional GET, HEAD, unknown ids.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn images_are_served_with_strong_etags_and_immutable_caching() {
    let app = spawn_app().await;
    let body: Value = app.generate(pro("cached")).await.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap().to_string();
    let resp = app.get(&url).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["content-length"].to_str().unwrap(), bytes.len().to_string());
    let etag = h["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "strong etag: {etag}");
    let cc = h["cache-control"].to_str().unwrap();
    assert!(cc.starts_with("public, max-age=") && cc.ends_with(", immutable"), "{cc}");
    let max_age: i64 = cc["public, max-age=".len()..cc.len() - ", immutable".len()].parse().unwrap();
    assert!((7 * 86400 - 60..=7 * 86400).contains(&max_age), "max-age runs to expiry: {max_age}");
    assert!(h.contains_key("last-modified"));

    let resp = app.client.get(&url).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = app.client.get(&url).header("If-None-Match", "\"other\"").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let lm = h["last-modified"].to_str().unwrap();
    let resp = app.client.get(&url).header("If-Modified-Since", lm).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    let resp = app.client.head(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"].to_str().unwrap(), bytes.len().to_string());
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_or_mismatched_image_ids_are_404() {
    let app = spawn_app().await;
    let body: Value = app.generate(pro("x")).await.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap();
    let wrong_ext = url.replace(".jpeg", ".png");
    for u in [
        app.url("/images/img_01ABCDEFGHJKMNPQRSTVWXYZ0123456789ABCDEF.png"),
        app.url("/images/nothing"),
        app.url("/images/..%2F..%2Fimagegate.db"),
        wrong_ext,
    ] {
        assert_error(app.get(&u).await, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn an_expired_image_answers_410() {
    // Expiry is in whole seconds: 2 s leaves at least 1 s for the first GET.
    let app = spawn_with(|rt| rt.retention = std::time::Duration::from_secs(2), false).await;
    let body: Value = app.generate(pro("short-lived")).await.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(app.get(&url).await.status(), 200);
    assert_error(until_not_200(&app, &url).await, StatusCode::GONE, "image_expired").await;
}

/// GETs `url` until it stops answering 200 (at most 20 s), and returns that answer.
pub async fn until_not_200(app: &TestApp, url: &str) -> reqwest::Response {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let resp = app.get(url).await;
        if resp.status() != 200 || std::time::Instant::now() > deadline {
            return resp;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn one_image(app: &TestApp, body: serde_json::Value) -> String {
    let body: Value = app.generate(body).await.json().await.unwrap();
    body["data"][0]["url"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn byte_ranges_answer_206_with_the_right_bytes_and_416_when_unsatisfiable() {
    let app = spawn_app().await;
    let url = one_image(&app, pro("ranged")).await;
    let full = app.get(&url).await.bytes().await.unwrap();
    let resp = app.client.get(&url).header("Range", "bytes=0-99").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    assert_eq!(resp.headers()["content-range"].to_str().unwrap(), format!("bytes 0-99/{}", full.len()));
    assert_eq!(resp.bytes().await.unwrap(), full.slice(0..100));
    let resp = app.client.get(&url).header("Range", "bytes=-10").send().await.unwrap();
    assert_eq!(resp.bytes().await.unwrap(), full.slice(full.len() - 10..));
    let resp = app.client.get(&url).header("Range", format!("bytes={}-", full.len() + 5)).send().await.unwrap();
    assert_eq!(resp.headers()["content-range"].to_str().unwrap(), format!("bytes */{}", full.len()));
    assert_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable").await;
    // If-Range with a stale validator: the whole image.
    let resp = app.client.get(&url).header("Range", "bytes=0-9").header("If-Range", "\"old\"").send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn images_convert_and_resize_once_then_come_from_storage() {
    let app = spawn_app().await;
    let url = one_image(&app, json!({"model": "nano-banana-pro", "prompt": "convert me", "size": "2048x2048"})).await;
    let resp = app.get(&format!("{url}?format=webp")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/webp");
    assert_eq!(resp.headers()["x-imagegate-variant"], "converted");
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::WebP);
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (2048, 2048));
    let again = app.get(&format!("{url}?format=webp")).await;
    assert_eq!(again.headers()["x-imagegate-variant"], "stored");
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(again.bytes().await.unwrap(), bytes);
    let resp = app.client.get(format!("{url}?format=webp")).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    let resp = app.get(&format!("{url}?w=256")).await;
    assert_eq!(resp.headers()["content-type"], "image/jpeg", "keeps the original format");
    let img = image::load_from_memory(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (256, 256));
    let resp = app.get(&format!("{url}?format=png&w=320&h=128")).await;
    let img = image::load_from_memory(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (128, 128), "fits inside, keeps the aspect");

    // Concurrent first requests for one new variant convert it once.
    let variant = format!("{url}?format=jpeg&w=512&quality=75");
    let all = futures_util::future::join_all((0..6).map(|_| app.get(&variant))).await;
    let sources: Vec<String> =
        all.iter().map(|r| r.headers()["x-imagegate-variant"].to_str().unwrap().to_string()).collect();
    assert_eq!(sources.iter().filter(|s| *s == "converted").count(), 1, "{sources:?}");
    let conversions = app.server.as_ref().unwrap().app.variants.conversions();
    assert_eq!(conversions, 4, "webp, w=256, png 128x128, and the shared jpeg 512");

    for (query, param) in
        [("w=0", "w"), ("w=99999", "w"), ("format=gif", "format"), ("h=abc", "h"), ("format=png&quality=50", "quality")]
    {
        let err =
            assert_error(app.get(&format!("{url}?{query}")).await, StatusCode::BAD_REQUEST, "invalid_value").await;
        assert_eq!(err["error"]["param"], json!(param), "{query}");
    }
}

#[tokio::test]
async fn the_sweeper_deletes_expired_images_and_their_variants() {
    let app = spawn_with(
        |rt| {
            rt.retention = std::time::Duration::from_secs(2);
            rt.sweep_interval = std::time::Duration::from_millis(200);
        },
        false,
    )
    .await;
    let resp = app.generate(pro("ephemeral")).await;
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(app.get(&format!("{url}?format=webp")).await.status(), 200);
    let files = |dir: &std::path::Path| -> usize {
        walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "jpeg" || e == "webp")).count()
    };
    let images_dir = app.dir.path().join("images");
    assert_eq!(files(&images_dir), 2, "original and variant stored");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while files(&images_dir) > 0 {
        assert!(std::time::Instant::now() < deadline, "{} files left", files(&images_dir));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_error(app.get(&url).await, StatusCode::GONE, "image_expired").await;
    assert_eq!(app.task(&task_id).await["status"], "completed", "the task keeps its record");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn format_auto_negotiates_webp_from_accept() {
    let app = spawn_app().await;
    let url = one_image(&app, pro("negotiated")).await;
    let auto = format!("{url}?format=auto&w=320");
    let webp = app.client.get(&auto).header("Accept", "image/avif,image/webp,*/*").send().await.unwrap();
    assert_eq!(webp.headers()["content-type"], "image/webp");
    assert_eq!(webp.headers()["vary"], "Accept");
    let plain = app.client.get(&auto).header("Accept", "image/jpeg").send().await.unwrap();
    assert_eq!(plain.headers()["content-type"], "image/jpeg");
    assert_eq!(plain.headers()["vary"], "Accept");
    assert_ne!(webp.headers()["etag"], plain.headers()["etag"], "each variant has its own validator");
    let img = image::load_from_memory(&plain.bytes().await.unwrap()).unwrap();
    assert_eq!(img.width(), 320);
}

/// A 4096×4096 image (the dearest to convert) on an app whose conversions are tightly bounded.
async fn bounded_app(concurrency: usize, queue: usize, max_variants: u32) -> (TestApp, String) {
    let app = spawn_with(
        move |rt| {
            rt.conversion_concurrency = concurrency;
            rt.conversion_queue = queue;
            rt.max_variants_per_image = max_variants;
        },
        false,
    )
    .await;
    let url = one_image(&app, json!({"model": "nano-banana-pro", "prompt": "big", "size": "4096x4096"})).await;
    (app, url)
}

/// Distinct variants after snapping: every size step × two formats.
fn distinct_variants(url: &str) -> Vec<String> {
    let sizes = [64, 96, 128, 160, 192, 256, 320, 384, 480, 512, 640, 768, 960, 1024, 1280, 1536, 1920, 2048];
    sizes.iter().flat_map(|w| ["jpeg", "webp"].map(|f| format!("{url}?w={w}&format={f}"))).collect()
}

#[tokio::test]
async fn a_flood_of_variants_from_clients_that_hang_up_stays_within_the_conversion_pool() {
    let (app, url) = bounded_app(1, 2, 100).await;
    let server = &app.server.as_ref().unwrap().app;
    // Each client gives up after 20 ms: the conversions it started must still be bounded.
    let impatient = reqwest::Client::builder().timeout(std::time::Duration::from_millis(20)).build().unwrap();
    let flood = distinct_variants(&url);
    futures_util::future::join_all(flood.iter().map(|u| impatient.get(u).send())).await;
    // Wait for whatever was started to end.
    for _ in 0..600 {
        if server.conversions.running() == 0 && app.get(&format!("{url}?w=64&format=jpeg")).await.status() != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(server.conversions.peak(), 1, "never more than the pool's one slot at once");
    let started = server.variants.conversions() as usize;
    assert!(started < flood.len() / 2, "{started} of {} conversions started: the queue bounds them", flood.len());
    // What was converted for clients that left was kept, not wasted.
    let kept = walk(&app.dir.path().join("images")).len() - 1;
    assert!(kept >= 1 && kept <= started, "{kept} variants stored for {started} conversions");
}

#[tokio::test]
async fn a_full_conversion_queue_answers_503_with_retry_after() {
    let (app, url) = bounded_app(1, 1, 100).await;
    let all = futures_util::future::join_all(distinct_variants(&url).iter().take(8).map(|u| app.get(u))).await;
    let busy: Vec<_> = all.iter().filter(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(all.iter().all(|r| r.status() == 200 || r.status() == 503), "only served or busy");
    assert!(busy.len() >= 4, "one converting and one waiting; the rest refused ({} busy)", busy.len());
    assert!(busy.iter().all(|r| r.headers().contains_key("retry-after")));
    for r in busy {
        assert_eq!(r.headers()["content-type"], "application/json");
    }
}

#[tokio::test]
async fn nearby_sizes_share_one_variant_and_an_image_has_a_bounded_number() {
    let (app, url) = bounded_app(0, 16, 2).await;
    let first = app.get(&format!("{url}?w=300")).await;
    assert_eq!(first.headers()["x-imagegate-variant"], "converted");
    let second = app.get(&format!("{url}?w=310")).await;
    assert_eq!(second.headers()["x-imagegate-variant"], "stored", "300 and 310 both round up to 320");
    assert_eq!(first.headers()["etag"], second.headers()["etag"]);
    let img = image::load_from_memory(&second.bytes().await.unwrap()).unwrap();
    assert_eq!(img.width(), 320);
    assert_eq!(app.get(&format!("{url}?w=600")).await.status(), 200);
    let err =
        assert_error(app.get(&format!("{url}?w=1000")).await, StatusCode::BAD_REQUEST, "variant_limit_reached").await;
    assert!(err["error"]["message"].as_str().unwrap().contains('2'), "{err}");
    assert_eq!(app.get(&format!("{url}?w=320")).await.status(), 200, "the stored ones are still served");
}

#[tokio::test]
async fn a_failed_conversion_is_not_remembered() {
    let app = spawn_app().await;
    let url = one_image(&app, pro("fragile")).await;
    let file = walk(&app.dir.path().join("images")).pop().unwrap();
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"\xff\xd8\xff garbage, not a jpeg").unwrap();
    assert_error(app.get(&format!("{url}?w=256")).await, StatusCode::INTERNAL_SERVER_ERROR, "conversion_failed").await;
    std::fs::write(&file, &good).unwrap();
    let resp = app.get(&format!("{url}?w=256")).await;
    assert_eq!(resp.status(), 200, "tried again, not answered from a cached failure");
    assert_eq!(resp.headers()["x-imagegate-variant"], "converted");
}

#[tokio::test]
async fn ranges_and_head_of_a_large_image_read_only_what_they_need() {
    let app = spawn_app().await;
    let url = one_image(&app, json!({"model": "nano-banana-pro", "prompt": "large", "size": "4096x4096"})).await;
    let full = app.get(&url).await.bytes().await.unwrap();
    let mid = full.len() / 2;
    let resp = app.client.get(&url).header("Range", format!("bytes={mid}-{}", mid + 9)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap(), full.slice(mid..mid + 10));
    let resp = app.client.head(&url).header("Range", "bytes=0-0").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-length"], "1");
    // A variant served from storage streams too.
    app.get(&format!("{url}?w=256&format=webp")).await.bytes().await.unwrap();
    let stored = app.get(&format!("{url}?w=256&format=webp")).await;
    assert_eq!(stored.headers()["x-imagegate-variant"], "stored");
    let len: usize = stored.headers()["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(stored.bytes().await.unwrap().len(), len);
}

#[tokio::test]
async fn images_stored_for_a_task_that_was_then_cancelled_are_swept_as_orphans() {
    let app = spawn_with(
        |rt| {
            rt.sweep_interval = std::time::Duration::from_millis(200);
            rt.orphan_grace = std::time::Duration::from_secs(1);
        },
        true,
    )
    .await;
    let images_dir = app.dir.path().join("images");
    let kept = one_image(&app, pro("kept")).await;
    // Two images: one comes back at once and is stored, the other takes its time.
    app.gemini().script.push(imagegate_fakes::Reply::Success);
    app.gemini().script.push(imagegate_fakes::Reply::Delay(
        std::time::Duration::from_secs(30),
        Box::new(imagegate_fakes::Reply::Success),
    ));
    let task = app.submit_async(&app.key, json!({"model": "nano-banana-pro", "prompt": "cut short", "n": 2})).await;
    let id = task["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while walk(&images_dir).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the first image was never stored");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.cancel(&app.key, id).await.status(), 200);
    assert_eq!(app.wait_task(id).await["status"], "cancelled");
    // Not the gateway's: never touched. A temporary file from a crash mid-write: swept.
    let shard = images_dir.join("zz");
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(shard.join("notes.txt"), b"someone else's").unwrap();
    let stray = imagegate::domain::ids::image_id();
    let own_shard = images_dir.join(&stray[stray.len() - 2..]);
    std::fs::create_dir_all(&own_shard).unwrap();
    std::fs::write(own_shard.join(format!("{stray}.tmp4242")), b"half an image").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let names: Vec<String> =
            walk(&images_dir).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        if names.len() == 2 {
            assert!(names.contains(&"notes.txt".to_string()), "{names:?}");
            assert!(kept.ends_with(names.iter().find(|n| n.starts_with("img_")).unwrap()), "{names:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "orphans left: {names:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.get(&kept).await.status(), 200, "the recorded image stays");
}
