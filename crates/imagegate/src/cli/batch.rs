//! `imagegate batch FILE --concurrency N -o DIR`: many prompts through a running gateway's
//! async route, N at a time, with a progress bar (done, failed, ETA) on stderr when it is a
//! terminal. Resumable: each line's images are recorded in `DIR/.imagegate-batch.jsonl` as they
//! are saved, and a run skips the lines recorded; a line cut off in flight is submitted again
//! with the same Idempotency-Key (the file's digest and the line), so it gets the task it made
//! the first time rather than a second paid image.

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::client::Client;
use super::outln;

#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    /// Prompts: a text file (one prompt per line) or JSONL (`{"prompt", …}` per line, any
    /// generation field, and an optional `custom_id`).
    pub file: PathBuf,
    /// Model for lines that name none.
    #[arg(long, default_value = "nano-banana-pro")]
    pub model: String,
    /// Lines in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Where the images (and the record of what is done) go.
    #[arg(short, long, default_value = ".")]
    pub output: PathBuf,
}

const RECORD: &str = ".imagegate-batch.jsonl";

/// The lines of the input: `(id, request body)`.
fn lines(path: &Path, model: &str) -> Result<Vec<(String, Value)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut body = if jsonl {
            let v: Value = serde_json::from_str(line).with_context(|| format!("line {} is not JSON", i + 1))?;
            if !v.is_object() {
                bail!("line {} is not a JSON object", i + 1);
            }
            v
        } else {
            json!({"prompt": line.trim()})
        };
        let id = match body.as_object_mut().and_then(|o| o.remove("custom_id")) {
            Some(Value::String(s)) => s,
            _ => format!("line-{}", i + 1),
        };
        if body.get("model").is_none() {
            body["model"] = json!(model);
        }
        out.push((id, body));
    }
    Ok(out)
}

fn done_ids(dir: &Path) -> HashSet<String> {
    std::fs::read_to_string(dir.join(RECORD))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

pub async fn run(client: &Client, args: BatchArgs) -> Result<()> {
    let all = lines(&args.file, &args.model)?;
    std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
    let digest = crate::domain::ids::hex(&Sha256::digest(std::fs::read(&args.file)?))[..16].to_string();
    let done = done_ids(&args.output);
    let todo: Vec<(String, Value)> = all.iter().filter(|(id, _)| !done.contains(id)).cloned().collect();
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(all.len() as u64),
        if client.progress { indicatif::ProgressDrawTarget::stderr() } else { indicatif::ProgressDrawTarget::hidden() },
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} done, {msg} (eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position((all.len() - todo.len()) as u64);
    bar.set_message("0 failed");
    let record =
        std::sync::Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(args.output.join(RECORD))?);
    let mut failed = 0usize;
    let mut results = futures_util::stream::iter(todo.into_iter().map(|(id, body)| {
        let idempotency = format!("cli-batch-{digest}-{id}");
        let out = args.output.clone();
        async move { (id.clone(), one(client, &id, &body, &idempotency, &out).await) }
    }))
    .buffer_unordered(args.concurrency.max(1));
    while let Some((id, result)) = results.next().await {
        match result {
            Ok(files) => {
                let line = json!({"id": id, "files": files});
                if let Ok(mut f) = record.lock() {
                    writeln!(f, "{line}")?;
                    f.flush()?;
                }
            }
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("{id}: {e:#}"));
                bar.set_message(format!("{failed} failed"));
            }
        }
        bar.inc(1);
    }
    bar.finish();
    outln!("{} done, {failed} failed, images in {}", all.len() - failed, args.output.display());
    if failed > 0 {
        bail!("{failed} line(s) failed; run the same command again to retry them");
    }
    Ok(())
}

/// Submits one line (idempotently), waits for its task and saves its images.
async fn one(client: &Client, id: &str, body: &Value, idempotency: &str, out: &Path) -> Result<Vec<String>> {
    let req = client.post("/v1/images/generations/async").header("Idempotency-Key", idempotency).json(body);
    let task = client.json(req).await?;
    let task_id = task["id"].as_str().context("no task id")?.to_string();
    let ended = loop {
        let t = client.json(client.get(&format!("/v1/tasks/{task_id}"))).await?;
        if matches!(t["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if ended["status"] != "completed" {
        bail!("{}", ended["error"]["message"].as_str().unwrap_or("the task did not complete"));
    }
    let stem: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    super::tasks::save_images(client, &ended, out, &stem).await
}
