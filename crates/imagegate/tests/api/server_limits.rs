//! The HTTP server's own protections: slow-header clients are cut off, and connections are capped.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = spawn_with(|rt| rt.header_read_timeout = Duration::from_millis(500), false).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(started.elapsed() >= Duration::from_millis(400), "after the timeout, not before");
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let app = spawn_with(
        |rt| {
            rt.max_connections = 1;
            rt.header_read_timeout = Duration::from_millis(800);
        },
        false,
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // A slow client takes the only slot until the header timeout frees it.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let resp = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(500), "served only once the slot was free: {waited:?}");
}
