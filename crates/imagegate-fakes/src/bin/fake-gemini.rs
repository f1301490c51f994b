//! The fake Gemini API as a process, for tests of the gateway as a user runs it (the SDK tests):
//! prints its base URL on the first line of stdout, then serves until killed. What it received
//! is at `GET /_fake/calls`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

#[tokio::main]
async fn main() {
    let fake = match imagegate_fakes::FakeGemini::start().await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-gemini: {e}");
            std::process::exit(1);
        }
    };
    println!("{}", fake.base_url());
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
}
