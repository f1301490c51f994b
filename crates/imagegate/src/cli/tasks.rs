//! `imagegate generate` and `imagegate tasks list|get|cancel|watch`: the gateway's async route
//! and task API from a terminal, with live progress from the task's event stream.

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Subcommand;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use super::client::Client;
use super::outln;

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// What to draw.
    pub prompt: String,
    #[arg(long, default_value = "nano-banana-pro")]
    pub model: String,
    /// OpenAI-style size (`1024x1024`, `1536x1024`, `auto`).
    #[arg(long)]
    pub size: Option<String>,
    /// Gemini-style shape instead of a size (`16:9`, and `1K`/`2K`/`4K`).
    #[arg(long)]
    pub aspect_ratio: Option<String>,
    #[arg(long)]
    pub image_size: Option<String>,
    /// Images to make.
    #[arg(short, default_value_t = 1)]
    pub n: u32,
    /// Reference images (files), in order.
    #[arg(long = "ref")]
    pub refs: Vec<PathBuf>,
    /// Where to save the images.
    #[arg(short, long, default_value = ".")]
    pub output: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// The key's tasks, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One task, as JSON.
    Get { id: String },
    /// Cancel a task.
    Cancel { id: String },
    /// Follow a task's events until it ends.
    Watch { id: String },
}

fn mime_of(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        _ => "image/jpeg",
    }
}

pub async fn generate(client: &Client, args: GenerateArgs) -> Result<()> {
    let mut body = json!({"model": args.model, "prompt": args.prompt, "n": args.n});
    for (field, value) in [("size", &args.size), ("aspect_ratio", &args.aspect_ratio), ("image_size", &args.image_size)]
    {
        if let Some(v) = value {
            body[field] = json!(v);
        }
    }
    if !args.refs.is_empty() {
        let mut refs = Vec::new();
        for path in &args.refs {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            refs.push(format!("data:{};base64,{b64}", mime_of(path)));
        }
        body["reference_images"] = json!(refs);
    }
    let task = client.json(client.post("/v1/images/generations/async").json(&body)).await?;
    let id = task["id"].as_str().context("the gateway answered without a task id")?.to_string();
    client.note(&format!("{id}: {}", task["status"].as_str().unwrap_or("queued")));
    let ended = watch(client, &id).await?;
    if ended["status"] != "completed" {
        let message = ended["error"]["message"].as_str().unwrap_or("no reason given");
        bail!("task {id} {}: {message}", ended["status"].as_str().unwrap_or("ended"));
    }
    std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
    for path in save_images(client, &ended, &args.output, &id).await? {
        outln!("{path}");
    }
    Ok(())
}

/// Downloads an ended task's images into `dir` as `{stem}-{index}.{ext}`; their paths.
pub(super) async fn save_images(client: &Client, task: &Value, dir: &Path, stem: &str) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for (i, item) in task["result"]["data"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let url = item["url"].as_str().context("an image without a URL")?;
        let bytes = client.http.get(url).send().await?.error_for_status()?.bytes().await?;
        let ext = item["content_type"].as_str().and_then(|c| c.strip_prefix("image/")).unwrap_or("jpg");
        let path = dir.join(format!("{stem}-{i}.{ext}"));
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        files.push(path.display().to_string());
    }
    Ok(files)
}

/// Follows the task's events (status changes and drafts) until it ends; returns the task.
async fn watch(client: &Client, id: &str) -> Result<Value> {
    let resp = client.get(&format!("/v1/tasks/{id}/events")).send().await?.error_for_status()?;
    let mut events = eventsource_stream::EventStream::new(resp.bytes_stream());
    let started = std::time::Instant::now();
    while let Some(event) = events.next().await {
        let event = event.context("the event stream broke")?;
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        let secs = started.elapsed().as_secs();
        match event.event.as_str() {
            "task.partial_image" => client.note(&format!("{id}: draft {} ({secs} s)", data["partial_image_index"])),
            name => {
                let status = name.trim_start_matches("task.");
                client.note(&format!("{id}: {status} ({secs} s)"));
                if matches!(status, "completed" | "failed" | "cancelled") {
                    return Ok(data);
                }
            }
        }
    }
    // The stream closed before the end (a proxy's timeout): read the task instead.
    client.json(client.get(&format!("/v1/tasks/{id}"))).await
}

pub async fn tasks(client: &Client, command: TasksCommand) -> Result<()> {
    match command {
        TasksCommand::List { status, limit } => {
            let mut path = format!("/v1/tasks?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            let page = client.json(client.get(&path)).await?;
            for t in page["data"].as_array().cloned().unwrap_or_default() {
                outln!(
                    "{}  {:<9}  {:<16}  {}",
                    t["id"].as_str().unwrap_or(""),
                    t["status"].as_str().unwrap_or(""),
                    t["model"].as_str().unwrap_or(""),
                    t["request"]["prompt"].as_str().unwrap_or("").chars().take(60).collect::<String>()
                );
            }
        }
        TasksCommand::Get { id } => {
            let t = client.json(client.get(&format!("/v1/tasks/{id}"))).await?;
            outln!("{}", serde_json::to_string_pretty(&t)?);
        }
        TasksCommand::Cancel { id } => {
            let t = client.json(client.post(&format!("/v1/tasks/{id}/cancel"))).await?;
            outln!("{} {}", id, t["status"].as_str().unwrap_or(""));
        }
        TasksCommand::Watch { id } => {
            // Watching is the point here: events are shown whatever stderr is.
            let mut client = client.clone();
            client.progress = true;
            let t = watch(&client, &id).await?;
            outln!("{} {}", id, t["status"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}
