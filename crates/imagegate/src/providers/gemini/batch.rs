//! Gemini's Batch API: the job's requests uploaded as a JSONL file through the Files API
//! (resumable upload; `{"key", "request"}` lines: file input rather than inline, which is
//! capped at 20 MB and has been reported to fail past ~120 image answers),
//! `models/{model}:batchGenerateContent`, polled at `batches/{id}` (`BATCH_STATE_*`, and
//! `JOB_STATE_*` as some versions name them), results downloaded from
//! `files/{id}:download?alt=media` and read line by line (`{"key", "response"}` or
//! `{"key", "error"}`).

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::GeminiProvider;
use crate::providers::batch::{BatchProvider, JobState, ResultLine};
use crate::providers::{ProviderError, ProviderRequest};

const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Deserialize)]
struct Operation {
    name: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    error: Option<Status>,
    #[serde(default)]
    response: Option<Output>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    state: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    output: Option<Output>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Output {
    #[serde(default)]
    responses_file: Option<String>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
}

impl GeminiProvider {
    async fn check(&self, resp: reqwest::Response) -> Result<reqwest::Response, ProviderError> {
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let retry_after =
            resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = crate::egress::read_capped(resp, MAX_ERROR_BODY).await.unwrap_or_default();
        Err(super::classify(status, &body, retry_after.as_deref()))
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> Result<Value, ProviderError> {
        let resp = req.header("x-goog-api-key", self.key.expose()).send().await.map_err(ProviderError::Network)?;
        let resp = self.check(resp).await?;
        let body = crate::egress::read_capped(resp, 16 * 1024 * 1024)
            .await
            .map_err(|e| ProviderError::Malformed { message: format!("batch answer unreadable: {e}") })?;
        serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Malformed { message: format!("batch answer is not JSON: {e}") })
    }
}

/// `BATCH_STATE_X` or `JOB_STATE_X` → `X`.
fn state_word(s: &str) -> &str {
    s.strip_prefix("BATCH_STATE_").or_else(|| s.strip_prefix("JOB_STATE_")).unwrap_or(s)
}

fn job_state(op: &Operation) -> JobState {
    match state_word(&op.metadata.state) {
        "SUCCEEDED" => {
            let file = op.metadata.output.clone().or_else(|| op.response.clone()).and_then(|o| o.responses_file);
            match file {
                Some(results) => JobState::Succeeded { results },
                None => JobState::Failed { message: "the job succeeded but names no responses file".into() },
            }
        }
        "FAILED" => JobState::Failed {
            message: op.error.as_ref().map(|e| e.message.clone()).unwrap_or_else(|| "the batch job failed".into()),
        },
        "EXPIRED" => JobState::Expired,
        "CANCELLED" => JobState::Cancelled,
        _ => JobState::Running,
    }
}

#[async_trait]
impl BatchProvider for GeminiProvider {
    fn request_line(&self, key: &str, req: &ProviderRequest) -> Result<Vec<u8>, ProviderError> {
        let line = json!({"key": key, "request": super::build_request(req)});
        serde_json::to_vec(&line).map_err(|e| ProviderError::Malformed { message: e.to_string() })
    }

    async fn upload(&self, display_name: &str, body: Bytes) -> Result<String, ProviderError> {
        let start = self
            .client
            .post(format!("{}/upload/v1beta/files", self.base_url))
            .header("x-goog-api-key", self.key.expose())
            .header("X-Goog-Upload-Protocol", "resumable")
            .header("X-Goog-Upload-Command", "start")
            .header("X-Goog-Upload-Header-Content-Length", body.len().to_string())
            .header("X-Goog-Upload-Header-Content-Type", "application/jsonl")
            .json(&json!({"file": {"displayName": display_name}}))
            .send()
            .await
            .map_err(ProviderError::Network)?;
        let start = self.check(start).await?;
        let url = start
            .headers()
            .get("x-goog-upload-url")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Malformed { message: "the upload start gave no upload URL".into() })?;
        let done = self
            .client
            .post(url)
            .header("X-Goog-Upload-Command", "upload, finalize")
            .header("X-Goog-Upload-Offset", "0")
            .body(body)
            .send()
            .await
            .map_err(ProviderError::Network)?;
        let done = self.check(done).await?;
        if done.headers().get("x-goog-upload-status").and_then(|v| v.to_str().ok()) != Some("final") {
            return Err(ProviderError::Malformed { message: "the upload did not finish".into() });
        }
        let body = crate::egress::read_capped(done, 1024 * 1024)
            .await
            .map_err(|e| ProviderError::Malformed { message: format!("upload answer unreadable: {e}") })?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Malformed { message: format!("upload answer is not JSON: {e}") })?;
        v["file"]["name"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Malformed { message: "the uploaded file has no name".into() })
    }

    async fn create(&self, model: &str, display_name: &str, file: &str) -> Result<String, ProviderError> {
        let body = json!({"batch": {"displayName": display_name, "inputConfig": {"fileName": file}}});
        let url = format!("{}/v1beta/models/{model}:batchGenerateContent", self.base_url);
        let v = self.json(self.client.post(url).json(&body)).await?;
        let op: Operation = serde_json::from_value(v)
            .map_err(|e| ProviderError::Malformed { message: format!("batch creation answer: {e}") })?;
        Ok(op.name)
    }

    async fn find(&self, display_name: &str) -> Result<Option<String>, ProviderError> {
        let url = format!("{}/v1beta/batches?pageSize=100", self.base_url);
        let v = self.json(self.client.get(url)).await?;
        let ops: Vec<Operation> = serde_json::from_value(v["operations"].clone()).unwrap_or_default();
        Ok(ops.into_iter().find(|op| op.metadata.display_name == display_name).map(|op| op.name))
    }

    async fn state(&self, job: &str) -> Result<JobState, ProviderError> {
        let v = self.json(self.client.get(format!("{}/v1beta/{job}", self.base_url))).await?;
        let op: Operation = serde_json::from_value(v)
            .map_err(|e| ProviderError::Malformed { message: format!("batch state answer: {e}") })?;
        Ok(job_state(&op))
    }

    async fn results(&self, file: &str) -> Result<crate::blobs::ByteStream, ProviderError> {
        let url = format!("{}/download/v1beta/{file}:download?alt=media", self.base_url);
        let resp = self
            .client
            .get(url)
            .header("x-goog-api-key", self.key.expose())
            .send()
            .await
            .map_err(ProviderError::Network)?;
        let resp = self.check(resp).await?;
        use futures_util::StreamExt;
        Ok(Box::pin(resp.bytes_stream().map(|c| c.map_err(std::io::Error::other))))
    }

    fn result_line(&self, line: &[u8]) -> Result<ResultLine, ProviderError> {
        #[derive(Deserialize)]
        struct Line {
            key: String,
            #[serde(default)]
            response: Option<Box<serde_json::value::RawValue>>,
            #[serde(default)]
            error: Option<Status>,
            #[serde(default)]
            status: Option<Status>,
        }
        let l: Line = serde_json::from_slice(line)
            .map_err(|e| ProviderError::Malformed { message: format!("results line is not JSON: {e}") })?;
        let outcome = match (l.response, l.error.or(l.status)) {
            (Some(r), _) => super::parse_response(r.get().as_bytes()),
            (None, Some(e)) => {
                let http = u16::try_from(e.code).ok().filter(|c| (400..600).contains(c)).unwrap_or(400);
                let body = json!({"error": {"code": http, "message": e.message, "status": e.status}}).to_string();
                Err(super::classify(http, body.as_bytes(), None))
            }
            (None, None) => {
                Err(ProviderError::Malformed { message: "results line has neither response nor error".into() })
            }
        };
        Ok((l.key, outcome))
    }

    async fn cancel(&self, job: &str) -> Result<(), ProviderError> {
        self.json(self.client.post(format!("{}/v1beta/{job}:cancel", self.base_url)).json(&json!({}))).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_state_namings_are_read() {
        let op = |state: &str, extra: Value| -> Operation {
            let mut v = json!({"name": "batches/1", "metadata": {"state": state}});
            if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            serde_json::from_value(v).unwrap()
        };
        assert_eq!(job_state(&op("BATCH_STATE_RUNNING", json!({}))), JobState::Running);
        assert_eq!(job_state(&op("JOB_STATE_PENDING", json!({}))), JobState::Running);
        assert_eq!(job_state(&op("JOB_STATE_EXPIRED", json!({}))), JobState::Expired);
        assert_eq!(job_state(&op("BATCH_STATE_CANCELLED", json!({}))), JobState::Cancelled);
        let done = op("BATCH_STATE_SUCCEEDED", json!({"response": {"responsesFile": "files/out"}}));
        assert_eq!(job_state(&done), JobState::Succeeded { results: "files/out".into() });
        let failed = op("JOB_STATE_FAILED", json!({"error": {"code": 13, "message": "boom"}}));
        assert_eq!(job_state(&failed), JobState::Failed { message: "boom".into() });
    }
}
