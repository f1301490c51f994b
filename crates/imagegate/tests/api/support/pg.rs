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
