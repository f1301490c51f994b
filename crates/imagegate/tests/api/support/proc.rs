//! The real binary as a child process: started on a port with its own data folder and only the
//! settings a test gives it, checked to be the process answering, signalled, killed.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: this build's, or another given by IMAGEGATE_TEST_BINARY (the
/// reliability harness runs an earlier build side by side).
pub fn binary() -> String {
    std::env::var("IMAGEGATE_TEST_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_imagegate").to_string())
}

pub fn free_port() -> u16 {
    imagegate::install_crypto_provider();
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The binary with none of the caller's `IMAGEGATE_*` (or provider) settings: each test says
/// what it wants.
pub fn command() -> Command {
    let mut cmd = Command::new(binary());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().to_string();
        let proxy = name.to_ascii_lowercase().ends_with("_proxy");
        if name.starts_with("IMAGEGATE_") || name == "GEMINI_API_KEY" || name.starts_with("AWS_") || proxy {
            cmd.env_remove(&name);
        }
    }
    cmd
}

pub fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    command().arg("--data-dir").arg(dir).args(args).env_remove("GEMINI_API_KEY").current_dir(dir).output().unwrap()
}

/// A new API key made with the CLI.
pub fn new_key(dir: &Path) -> String {
    let out = cli(dir, &["keys", "create", "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Where a server's log goes: `$IMAGEGATE_TEST_LOG_DIR/server-{port}.log` when set (to see
/// what a soak's servers did), else nowhere.
fn log_file(port: u16) -> Stdio {
    match std::env::var("IMAGEGATE_TEST_LOG_DIR") {
        Ok(dir) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&dir).join(format!("server-{port}.log")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null()),
        Err(_) => Stdio::null(),
    }
}

pub struct Proc {
    pub child: Child,
    pub base: String,
}

impl Proc {
    pub async fn start(dir: &Path, port: u16, config: Option<&Path>) -> Proc {
        Proc::start_with(dir, port, config, &[]).await
    }

    pub async fn start_with(dir: &Path, port: u16, config: Option<&Path>, envs: &[(&str, String)]) -> Proc {
        let mut cmd = command();
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log_file(port))
            .spawn()
            .unwrap();
        let mut proc = Proc { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        while Instant::now() < deadline {
            // Ours, not whatever else may hold the port now: the answer names our process.
            // (A binary from before /healthz named its pid, run side by side on purpose, is
            // taken at its word.)
            let earlier_build = std::env::var("IMAGEGATE_TEST_BINARY").is_ok();
            if let Ok(r) = client.get(format!("{}/healthz", proc.base)).send().await
                && let Ok(h) = r.json::<Value>().await
                && (h["pid"] == json!(proc.child.id()) || (h["pid"].is_null() && earlier_build))
            {
                return proc;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("server exited at start: {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not start");
    }

    /// `GET /v1/tasks/{id}` as JSON.
    pub async fn task(&self, client: &reqwest::Client, key: &str, id: &str) -> Value {
        client.get(format!("{}/v1/tasks/{id}", self.base)).bearer_auth(key).send().await.unwrap().json().await.unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET url` with a bearer key, as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str, key: &str) -> Value {
    client.get(url).bearer_auth(key).send().await.unwrap().json().await.unwrap()
}

/// Resident memory of a process now, and its peak so far (MB), from `/proc/{pid}/status`.
pub fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
