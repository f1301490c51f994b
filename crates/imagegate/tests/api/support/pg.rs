//! A fresh PostgreSQL schema per test, on the server `.ci/run` starts (127.0.0.1:5432, or
//! `IMAGEGATE_TEST_POSTGRES`), dropped when the test ends.

use std::str::FromStr;

/// The server's URL (its default database).
pub fn server_url() -> String {
    std::env::var("IMAGEGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

/// An empty schema; its URL points the store at it (`search_path`).
pub struct Schema {
    pub name: String,
    pub url: String,
}

async fn admin() -> tokio_postgres::Client {
    let config = tokio_postgres::Config::from_str(&server_url()).expect("IMAGEGATE_TEST_POSTGRES parses");
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {} is not reachable ({e}): .ci/run starts it; see README", server_url())
    });
    tokio::spawn(conn);
    client
}

impl Schema {
    pub async fn new() -> Schema {
        let name = format!("t_{}", ulid::Ulid::new().to_string().to_lowercase());
        admin().await.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("create schema");
        let sep = if server_url().contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}options=-csearch_path%3D{name}", server_url());
        Schema { name, url }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropped from its own thread and runtime: `Drop` cannot wait on the test's.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            let dropped =
                rt.block_on(async { admin().await.batch_execute(&format!("DROP SCHEMA {name} CASCADE")).await });
            if let Err(e) = dropped {
                eprintln!("schema {name} was left behind: {e}");
            }
        })
        .join();
    }
}

/// A PostgreSQL server of the test's own (initdb in a temporary folder, on a free port), for
/// tests that stop and restart the database. Run as the `postgres` user when the tests run as
/// root (the server refuses root).
pub struct PrivateServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
}

impl PrivateServer {
    pub fn start() -> PrivateServer {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let as_root = Self::as_root();
        if as_root {
            let _ = std::process::Command::new("chown").arg("postgres").arg(dir.path()).status();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let server = PrivateServer { port, dir, bin };
        let data = server.data();
        let ok = server
            .command("initdb", as_root)
            .args(["-D", &data, "-A", "trust", "-U", "root", "--no-sync", "-E", "UTF8"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(ok.success(), "initdb failed");
        server.up();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, tool: &str, as_root: bool) -> std::process::Command {
        let path = self.bin.join(tool);
        if as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    fn as_root() -> bool {
        std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let ok = self
            .command("pg_ctl", Self::as_root())
            .args(["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(
            ok.success(),
            "the private PostgreSQL did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server: `fast` disconnects every client, `immediate` is a crash.
    pub fn down(&self, mode: &str) {
        let _ = self
            .command("pg_ctl", Self::as_root())
            .args(["-D", &self.data(), "-m", mode, "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
    }

    pub fn url(&self) -> String {
        format!("postgres://root@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.down("immediate");
    }
}

/// Where the server's programs are (`IMAGEGATE_TEST_PG_BIN`, else Debian's newest).
fn bin_dir() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("IMAGEGATE_TEST_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().expect("PostgreSQL's server programs (initdb, pg_ctl): install postgresql or set IMAGEGATE_TEST_PG_BIN")
}
