//! Batch lines run through a provider's batch API (Gemini's) at the batch price. A batch's
//! lines for such a model wait in lane 2, which workers never claim; the batch driver gathers
//! them into upstream jobs (`form_jobs`, up to `batch.max_job_lines` each), and this loop takes
//! each job through its steps, recording each before the next can be lost:
//!
//! `preparing` (its lines are taken: the input file is built and uploaded) → `creating` (the
//! upload is recorded; the job is looked up by its display name, the gateway's job id, before
//! one is created, so a crash between creating it and recording its name never makes a
//! second) → `running` (polled every `batch.poll_interval`; on success its results are read as
//! a stream and each line's images stored and its task completed at the batch price; a failed,
//! expired or cancelled job ends its lines so) → `done`. A gateway batch that is cancelled or
//! expires cancels its jobs upstream.

use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::BatchError;
use crate::app::App;
use crate::domain::batch::{BatchStatus, JobStep};
use crate::domain::batch_input::Lines;
use crate::domain::request::ImageRequest;
use crate::domain::{models, now_millis};
use crate::providers::batch::{BatchProvider, JobState};
use crate::providers::channels::{Channel, ChannelState};
use crate::providers::{GeneratedImage, ProviderError, ProviderRequest};
use crate::store::{BatchRecord, TaskRecord, UpstreamJob};
use crate::worker::execute::{end_held, error_json, finish_with, provider_error_json};

/// How long a job holds its lines: past this (a job lost for two days) workers may take them.
pub(super) const HOLD: Duration = Duration::from_secs(50 * 3600);
const IDLE: Duration = Duration::from_millis(500);
/// The longest one step may take (an upload or a results file of a large job), so a call the
/// upstream never answers cannot hold a job forever.
const STEP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// After a step failed for a reason that may pass (the upstream or the database unreachable).
const RETRY: Duration = Duration::from_secs(10);

/// A channel that can run batch jobs for the upstream model, if any.
pub(super) fn channel_for(app: &App, upstream_model: &str) -> Option<Arc<Channel>> {
    app.providers
        .for_model(upstream_model)
        .channels
        .iter()
        .find(|c| c.provider.batch().is_some() && c.state() != ChannelState::Disabled)
        .cloned()
}

/// Whether a batch line for this upstream model goes to an upstream batch job.
pub fn can_batch(app: &App, upstream_model: &str) -> bool {
    app.rt.batch.upstream && channel_for(app, upstream_model).is_some()
}

/// Gathers the batch's lines waiting for an upstream job into jobs.
pub(super) async fn form_jobs(app: &App, b: &BatchRecord) -> Result<(), BatchError> {
    for model in app.store.waiting_models(&b.id).await? {
        let Some(upstream_model) = models::resolve(&model).map(|m| m.upstream) else { continue };
        let Some(channel) = channel_for(app, upstream_model) else { continue };
        loop {
            let job = UpstreamJob {
                id: format!("ujob_{}", ulid::Ulid::new()),
                batch_id: Some(b.id.clone()),
                owner: b.owner.clone(),
                channel: channel.spec.name.clone(),
                model: upstream_model.to_string(),
                step: JobStep::Preparing,
                input_file: None,
                upstream_name: None,
                error: None,
                lines: 0,
                created_at_ms: now_millis(),
            };
            let held_until = now_millis() + HOLD.as_millis() as i64;
            let taken = app.store.create_job(&job, &model, app.rt.batch.max_job_lines, held_until).await?;
            if taken.is_empty() {
                break;
            }
            tracing::info!(
                batch_id = b.id,
                job_id = job.id,
                lines = taken.len(),
                model = upstream_model,
                "upstream batch job formed"
            );
            app.batch_wake.notify_one();
        }
    }
    Ok(())
}

/// Starts the job loop; it stops with `app.background`.
pub fn start(app: Arc<App>) {
    tokio::spawn(async move {
        let worker = format!("jobs-{}", ulid::Ulid::new());
        let mut last_tick = std::time::Instant::now() - IDLE;
        loop {
            if app.background.is_cancelled() {
                return;
            }
            // Flex pooling and deadline fallbacks, however busy the jobs keep this loop.
            if last_tick.elapsed() >= IDLE {
                last_tick = std::time::Instant::now();
                if let Err(e) = super::flex::tick(&app).await {
                    tracing::warn!(error = %e, "pooling flex tasks failed");
                }
            }
            // The job's lease is the workers' (`worker.lease`), renewed while a step runs: a
            // replica that dies mid-step lets another take the job up soon.
            let lease = app.rt.lease;
            let lease_until = now_millis() + lease.as_millis() as i64;
            match app.store.claim_job(&worker, now_millis(), lease_until).await {
                Ok(Some(job)) => {
                    let id = job.id.clone();
                    let heartbeat = async {
                        loop {
                            tokio::time::sleep(lease / 3).await;
                            let until = now_millis() + lease.as_millis() as i64;
                            match app.store.renew_job(&id, &worker, until).await {
                                Ok(true) => {}
                                Ok(false) => return,
                                Err(e) => tracing::warn!(job_id = id, error = %e, "renewing a job's lease failed"),
                            }
                        }
                    };
                    let bounded = tokio::time::timeout(STEP_TIMEOUT, step(&app, job.clone()));
                    let stepped = tokio::select! {
                        r = bounded => Some(r.unwrap_or(Err(BatchError::Submit("the step timed out".into())))),
                        _ = heartbeat => None,
                    };
                    let (job, again) = match stepped {
                        None => {
                            tracing::warn!(job_id = id, "the job's lease was lost mid-step; another replica has it");
                            continue;
                        }
                        Some(Ok(done)) => done,
                        Some(Err(e)) => {
                            tracing::warn!(job_id = id, error = %e, "an upstream job step failed; it will be tried again");
                            (job, RETRY)
                        }
                    };
                    let next = now_millis() + again.as_millis() as i64;
                    if let Err(e) = app.store.save_job(&job, &worker, next).await {
                        tracing::warn!(job_id = id, error = %e, "saving an upstream job failed; it will be taken again");
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE) => {}
                        _ = app.background.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming an upstream job failed");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
}

pub(super) fn claim(job: &UpstreamJob) -> String {
    format!("job:{}", job.id)
}

/// Takes one step of a job: the job as it now stands and when to look again.
async fn step(app: &App, mut job: UpstreamJob) -> Result<(UpstreamJob, Duration), BatchError> {
    let poll = app.rt.batch.poll_interval;
    let channel = app.providers.for_model(&job.model).channels.iter().find(|c| c.spec.name == job.channel).cloned();
    let Some(provider) = channel.as_ref().and_then(|c| c.provider.batch()) else {
        let err = error_json(
            502,
            "upstream_error",
            "upstream_unavailable",
            "The upstream channel of this batch job is no longer configured.",
        );
        end_all(app, &job, Some(&err)).await?;
        job.step = JobStep::Done;
        job.error = Some("channel gone".into());
        return Ok((job, Duration::ZERO));
    };
    // A gateway batch cancelled, or past its window: the job stops upstream too.
    let stopped = match &job.batch_id {
        Some(id) => app
            .store
            .get_batch(&job.owner, id)
            .await?
            .is_none_or(|b| b.status == BatchStatus::Cancelling || b.expired_at.is_some()),
        None => false,
    };
    if stopped {
        if let Some(name) = &job.upstream_name
            && let Err(e) = provider.cancel(name).await
        {
            tracing::warn!(job_id = job.id, error = %e, "cancelling the upstream job failed");
        }
        end_all(app, &job, None).await?;
        job.step = JobStep::Done;
        return Ok((job, Duration::ZERO));
    }
    match job.step {
        JobStep::Preparing => match upload(app, provider, &job).await? {
            Ok(file) => {
                job.input_file = Some(file);
                job.step = JobStep::Creating;
                Ok((job, Duration::ZERO))
            }
            Err(e) => give_up_or_retry(app, job, e, poll).await,
        },
        JobStep::Creating => {
            let file = job.input_file.clone().unwrap_or_default();
            let created = match provider.find(&job.id).await {
                Ok(Some(name)) => Ok(name),
                Ok(None) => provider.create(&job.model, &job.id, &file).await,
                Err(e) => Err(e),
            };
            match created {
                Ok(name) => {
                    tracing::info!(job_id = job.id, upstream = name, "upstream batch job created");
                    job.upstream_name = Some(name);
                    job.step = JobStep::Running;
                    Ok((job, poll))
                }
                Err(e) => give_up_or_retry(app, job, e, poll).await,
            }
        }
        JobStep::Running => {
            let name = job.upstream_name.clone().unwrap_or_default();
            let state = match provider.state(&name).await {
                Ok(s) => s,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(job_id = job.id, error = %e, "polling the upstream job failed");
                    return Ok((job, poll));
                }
                Err(e) => return give_up_or_retry(app, job, e, poll).await,
            };
            match state {
                JobState::Running => return Ok((job, poll)),
                JobState::Succeeded { results } => match collect(app, provider, &job, &results).await? {
                    Ok(()) => {}
                    Err(e) if e.is_retryable() => return Ok((job, poll)),
                    Err(e) => return give_up_or_retry(app, job, e, poll).await,
                },
                JobState::Failed { message } => {
                    let err = error_json(
                        502,
                        "upstream_error",
                        "upstream_batch_failed",
                        &format!("The upstream batch job failed: {message}"),
                    );
                    end_all(app, &job, Some(&err)).await?;
                    job.error = Some(message);
                }
                JobState::Expired => {
                    let err = error_json(
                        504,
                        "timeout_error",
                        "upstream_batch_expired",
                        "The upstream batch job expired before it ran this line.",
                    );
                    end_all(app, &job, Some(&err)).await?;
                    job.error = Some("expired".into());
                }
                JobState::Cancelled => {
                    end_all(app, &job, None).await?;
                    job.error = Some("cancelled upstream".into());
                }
            }
            job.step = JobStep::Done;
            tracing::info!(job_id = job.id, error = ?job.error, "upstream batch job done");
            Ok((job, Duration::ZERO))
        }
        JobStep::Done => Ok((job, Duration::ZERO)),
    }
}

/// A failure that may pass is tried again at the next look; any other ends the job's lines
/// with it.
async fn give_up_or_retry(
    app: &App,
    mut job: UpstreamJob,
    e: ProviderError,
    poll: Duration,
) -> Result<(UpstreamJob, Duration), BatchError> {
    // Before anything exists upstream (the upload failed), a channel at fault (rate limited,
    // overloaded, its credential refused) is swapped for another that can take batch jobs, as
    // a realtime call fails over. Later steps stay on the job's channel: its file and job
    // belong to that credential.
    let channel_fault = e.is_channel_fault() || matches!(e, ProviderError::Auth { .. });
    if job.step == JobStep::Preparing
        && channel_fault
        && let Some(other) =
            app.providers.for_model(&job.model).channels.iter().find(|c| {
                c.spec.name != job.channel && c.provider.batch().is_some() && c.state() != ChannelState::Disabled
            })
    {
        tracing::warn!(job_id = job.id, from = job.channel, to = other.spec.name, error = %e, "upstream job moved to another channel");
        job.channel = other.spec.name.clone();
        return Ok((job, Duration::ZERO));
    }
    if e.is_retryable() {
        // The upstream's own hint when it gave one (a 429's Retry-After), bounded.
        let wait = e.retry_after().unwrap_or(poll.min(RETRY)).min(Duration::from_secs(600));
        tracing::warn!(job_id = job.id, step = job.step.as_str(), error = %e, "an upstream job call failed; trying again");
        return Ok((job, wait));
    }
    tracing::warn!(job_id = job.id, step = job.step.as_str(), error = %e, "an upstream job failed");
    end_all(app, &job, Some(&provider_error_json(&e))).await?;
    job.step = JobStep::Done;
    job.error = Some(e.to_string());
    Ok((job, Duration::ZERO))
}

/// Ends every line the job still holds: failed with `err`, or cancelled.
async fn end_all(app: &App, job: &UpstreamJob, err: Option<&serde_json::Value>) -> Result<(), BatchError> {
    let claim = claim(job);
    for t in app.store.job_tasks(&job.id).await? {
        if !t.status.is_terminal() {
            end_held(&app.workers, &t.id, &claim, err).await;
        }
    }
    Ok(())
}

/// The upstream request of each image of a line, keyed `{task id}/{index}`.
fn requests(
    task: &TaskRecord,
    req: &ImageRequest,
    inputs: Arc<crate::providers::Inputs>,
) -> Vec<(String, ProviderRequest)> {
    let options = Arc::new(crate::providers::Options::of(req));
    (0..req.n)
        .map(|i| {
            (
                format!("{}/{i}", task.id),
                ProviderRequest::for_image(req, i, HOLD, inputs.clone(), options.clone(), None),
            )
        })
        .collect()
}

/// Builds the job's input file from its lines and uploads it.
async fn upload(
    app: &App,
    provider: &dyn BatchProvider,
    job: &UpstreamJob,
) -> Result<Result<String, ProviderError>, BatchError> {
    let mut body = Vec::new();
    let tasks = app.store.job_tasks(&job.id).await?;
    for (at, task) in tasks.iter().enumerate() {
        if task.status.is_terminal() {
            continue;
        }
        let req: ImageRequest = match serde_json::from_value(task.request.clone()) {
            Ok(r) => r,
            Err(e) => {
                let err = error_json(
                    500,
                    "api_error",
                    "internal_error",
                    &format!("The stored request could not be read: {e}"),
                );
                end_held(&app.workers, &task.id, &claim(job), Some(&err)).await;
                continue;
            }
        };
        let inputs = if req.has_inputs() {
            match crate::inputs::load(&app.store, &app.blobs, &task.owner, &task.id, req.mask.is_some()).await {
                Ok(i) => Arc::new(i),
                Err(e) => {
                    let err = error_json(
                        500,
                        "api_error",
                        "input_unavailable",
                        &format!("The line's input images could not be read: {e}"),
                    );
                    end_held(&app.workers, &task.id, &claim(job), Some(&err)).await;
                    continue;
                }
            }
        } else {
            Arc::new(crate::providers::Inputs::default())
        };
        let mut lines = Vec::new();
        for (key, preq) in requests(task, &req, inputs) {
            match provider.request_line(&key, &preq) {
                Ok(line) => {
                    lines.extend_from_slice(&line);
                    lines.push(b'\n');
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        // The file is held whole until uploaded: past its limit, this line and the rest wait
        // for the next job (the first line goes whatever its size).
        if !body.is_empty() && body.len() + lines.len() > app.rt.batch.max_job_bytes {
            let rest: Vec<String> = tasks[at..].iter().map(|t| t.id.clone()).collect();
            tracing::info!(
                job_id = job.id,
                lines = rest.len(),
                "job input at its size limit; the rest wait for the next job"
            );
            app.store.release_job_tasks(&job.id, &rest).await?;
            break;
        }
        body.extend_from_slice(&lines);
    }
    Ok(provider.upload(&job.id, bytes::Bytes::from(body)).await)
}

/// Reads a succeeded job's results as they stream in and ends each line: its images stored
/// at the batch price, or its error. Lines missing from the results fail.
async fn collect(
    app: &App,
    provider: &dyn BatchProvider,
    job: &UpstreamJob,
    results: &str,
) -> Result<Result<(), ProviderError>, BatchError> {
    let mut stream = match provider.results(results).await {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let tasks: HashMap<String, TaskRecord> =
        app.store.job_tasks(&job.id).await?.into_iter().map(|t| (t.id.clone(), t)).collect();
    let factor = app.rt.prices.batch_factor;
    let claim = claim(job);
    let mut current: Option<(String, Vec<Result<GeneratedImage, ProviderError>>)> = None;
    let mut ended: std::collections::HashSet<String> = Default::default();
    let mut splitter = Lines::default();
    let mut more = true;
    while more {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        match stream.next().await {
            Some(Ok(chunk)) => splitter.push(&chunk, |l| lines.push(l.to_vec())),
            Some(Err(e)) => {
                return Ok(Err(ProviderError::Malformed { message: format!("results download broke: {e}") }));
            }
            None => {
                std::mem::take(&mut splitter).finish(|l| lines.push(l.to_vec()));
                more = false;
            }
        }
        for line in lines {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let (key, outcome) = match provider.result_line(&line) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(job_id = job.id, error = %e, "an unreadable results line was skipped");
                    continue;
                }
            };
            let task_id = key.rsplit_once('/').map(|(t, _)| t.to_string()).unwrap_or(key);
            if current.as_ref().is_some_and(|(id, _)| *id != task_id)
                && let Some((id, outcomes)) = current.take()
                && let Some(task) = tasks.get(&id)
            {
                finish_with(&app.workers, task, &claim, outcomes, factor).await;
                ended.insert(id);
            }
            current.get_or_insert_with(|| (task_id, Vec::new())).1.push(outcome);
        }
    }
    if let Some((id, outcomes)) = current.take()
        && let Some(task) = tasks.get(&id)
    {
        finish_with(&app.workers, task, &claim, outcomes, factor).await;
        ended.insert(id);
    }
    let missing =
        error_json(502, "upstream_error", "missing_result", "The upstream batch job returned no result for this line.");
    for (id, task) in &tasks {
        if !ended.contains(id) && !task.status.is_terminal() {
            end_held(&app.workers, id, &claim, Some(&missing)).await;
        }
    }
    Ok(Ok(()))
}
