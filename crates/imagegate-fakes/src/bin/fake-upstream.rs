//! A fast fake upstream for the benchmarks: answers at once (or after `--delay-ms`) in both the
//! OpenAI images shape (`POST /v1/images/generations`) and Gemini's `generateContent` shape
//! (`POST /v1beta/models/{model}:generateContent`), with one image prepared at start-up so the
//! fake costs the same for every target measured against it.
//!
//!   fake-upstream [--listen 127.0.0.1:9100] [--size 64] [--delay-ms 0] [--image FILE.png]

#![allow(clippy::print_stdout, clippy::print_stderr)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::sync::Arc;
use std::time::Duration;

struct Answers {
    openai: Bytes,
    gemini: Bytes,
    delay: Duration,
}

struct Args {
    listen: String,
    size: u32,
    delay_ms: u64,
    image: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { listen: "127.0.0.1:9100".into(), size: 64, delay_ms: 0, image: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = value()?,
            "--size" => a.size = value()?.parse().map_err(|_| "--size must be a number of pixels")?,
            "--delay-ms" => a.delay_ms = value()?.parse().map_err(|_| "--delay-ms must be a number")?,
            "--image" => a.image = Some(value()?),
            "-h" | "--help" => {
                return Err("fake-upstream [--listen ADDR] [--size PX] [--delay-ms MS] [--image FILE.png]".into());
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Reads a request body to its end without holding it (edits carry up to ~140 MB of inputs).
async fn drain(body: axum::body::Body) -> Result<usize, Response> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        n += chunk.map_err(|_| StatusCode::BAD_REQUEST.into_response())?.len();
    }
    Ok(n)
}

async fn openai(State(a): State<Arc<Answers>>, body: axum::body::Body) -> Response {
    if let Err(r) = drain(body).await {
        return r;
    }
    if !a.delay.is_zero() {
        tokio::time::sleep(a.delay).await;
    }
    ([(header::CONTENT_TYPE, "application/json")], a.openai.clone()).into_response()
}

async fn gemini(State(a): State<Arc<Answers>>, body: axum::body::Body) -> Response {
    if let Err(r) = drain(body).await {
        return r;
    }
    if !a.delay.is_zero() {
        tokio::time::sleep(a.delay).await;
    }
    ([(header::CONTENT_TYPE, "application/json")], a.gemini.clone()).into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let png = match &args.image {
        Some(path) => std::fs::read(path)?,
        None => imagegate_fakes::images::noise_png(args.size, args.size, 42),
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let openai_body = serde_json::json!({
        "created": 1_764_000_000,
        "data": [{"b64_json": b64}],
        "usage": {"total_tokens": 100, "input_tokens": 50, "output_tokens": 50,
                  "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}}
    });
    let gemini_body = serde_json::json!({
        "candidates": [{"content": {"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "data": b64}}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302},
        "modelVersion": "gemini-2.5-flash-image"
    });
    let answers = Arc::new(Answers {
        openai: Bytes::from(serde_json::to_vec(&openai_body)?),
        gemini: Bytes::from(serde_json::to_vec(&gemini_body)?),
        delay: Duration::from_millis(args.delay_ms),
    });
    let app = Router::new()
        .route("/v1/images/generations", axum::routing::post(openai))
        .route("/v1/images/edits", axum::routing::post(openai))
        .route("/v1beta/models/{action}", axum::routing::post(gemini))
        .route("/healthz", axum::routing::get(|| async { StatusCode::OK }))
        .with_state(answers.clone());
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!(
        "fake-upstream on {} image {} bytes (openai answer {} bytes) delay {} ms",
        listener.local_addr()?,
        png.len(),
        answers.openai.len(),
        args.delay_ms
    );
    imagegate_fakes::serve::serve(listener, app).await;
    Ok(())
}
