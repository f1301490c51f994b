//! A batch input file, checked line by line as OpenAI checks it: every line a JSON object
//! `{"custom_id", "method": "POST", "url", "body"}`; a line that is not JSON, a duplicate
//! `custom_id` or a `url` other than the batch's endpoint fails the whole batch (its `errors`
//! name the lines); a line whose body is invalid (a bad size, say) is kept for the error file
//! while the others run. Fed one line at a time and keeping only the `custom_id`s, so a file
//! is never held whole: a first pass checks the file, a second (the same checks again) hands
//! each line on as it is read.

use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;

use super::request::{self, ImageRequest};

/// The endpoints a batch's lines may call.
pub const GENERATIONS: &str = "/v1/images/generations";
pub const EDITS: &str = "/v1/images/edits";

/// Lines a batch may have, and the longest `custom_id`.
pub const MAX_LINES: usize = 50_000;
pub const MAX_CUSTOM_ID: usize = 512;

/// A problem that fails the whole batch, at a line (1-based), as OpenAI's batch `errors` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

/// One line that passed the file-level checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    pub custom_id: String,
    /// The line's body validated, or why it is not valid (the line goes to the error file).
    pub request: Result<ImageRequest, request::Invalid>,
    /// The body as sent (its canonical form keys idempotency, and the error file's lines).
    pub body: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    custom_id: Value,
    method: Value,
    url: Value,
    body: Value,
}

/// Checks lines as they come; `finish` says whether the batch may run.
pub struct Validator {
    endpoint: String,
    seen: HashSet<String>,
    count: usize,
    errors: Vec<LineError>,
    number: usize,
}

/// Errors listed at most (the batch has failed anyway; the first ones say why).
const MAX_ERRORS: usize = 100;

impl Validator {
    pub fn new(endpoint: &str) -> Validator {
        Validator { endpoint: endpoint.to_string(), seen: HashSet::new(), count: 0, errors: Vec::new(), number: 0 }
    }

    fn fail(&mut self, code: &'static str, message: String, param: Option<&str>) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(LineError { line: self.number, code, message, param: param.map(str::to_string) });
        }
    }

    /// One line of the file (without its newline): the line, when it passes the file-level
    /// checks. Blank lines are skipped.
    pub fn feed(&mut self, text: &[u8]) -> Option<Line> {
        self.number += 1;
        if text.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        if self.count >= MAX_LINES {
            if self.count == MAX_LINES {
                self.count += 1;
                self.fail("too_many_lines", format!("A batch may have at most {MAX_LINES} lines."), None);
            }
            return None;
        }
        let raw: RawLine = match serde_json::from_slice(text) {
            Ok(r) => r,
            Err(e) => {
                let code = if e.is_data() { "invalid_request" } else { "invalid_json_line" };
                let message = if e.is_data() {
                    format!("This line is not a batch request ({e}): it needs custom_id, method, url and body.")
                } else {
                    format!("This line is not valid JSON: {e}.")
                };
                self.fail(code, message, None);
                return None;
            }
        };
        let custom_id = match raw.custom_id {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_CUSTOM_ID => s,
            _ => {
                let m = format!("custom_id must be a string of 1 to {MAX_CUSTOM_ID} characters.");
                self.fail("invalid_custom_id", m, Some("custom_id"));
                return None;
            }
        };
        if raw.method != Value::String("POST".into()) {
            self.fail("invalid_method", "method must be \"POST\".".into(), Some("method"));
            return None;
        }
        if raw.url.as_str() != Some(self.endpoint.as_str()) {
            let m = format!("The url of every line must be the batch's endpoint, {}.", self.endpoint);
            self.fail("mismatched_url", m, Some("url"));
            return None;
        }
        if !self.seen.insert(custom_id.clone()) {
            let m = format!("The custom_id '{custom_id}' is used by an earlier line: each must be unique.");
            self.fail("duplicate_custom_id", m, Some("custom_id"));
            return None;
        }
        // Lines run as async tasks: the fields of the async route are allowed. An edit's input
        // images are checked (and stored) when its task is written.
        let request = if self.endpoint == EDITS {
            let mut fields = raw.body.clone();
            if let Some(obj) = fields.as_object_mut() {
                obj.remove("images");
                obj.remove("mask");
            }
            request::validate(&fields, &["webhook_url", "webhook_events", "input_fidelity"])
        } else {
            request::validate(&raw.body, &["webhook_url", "webhook_events"])
        };
        self.count += 1;
        Some(Line { number: self.number, custom_id, request, body: raw.body })
    }

    /// The number of lines, or the errors that fail the batch.
    pub fn finish(self) -> Result<usize, Vec<LineError>> {
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        if self.count == 0 {
            return Err(vec![LineError {
                line: 0,
                code: "empty_file",
                message: "The input file has no requests.".into(),
                param: None,
            }]);
        }
        Ok(self.count)
    }
}

/// Splits bytes into lines as they come in chunks (a line may span chunks).
#[derive(Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Feeds each complete line in `chunk` to `line`.
    pub fn push(&mut self, chunk: &[u8], mut line: impl FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                line(trim_cr(&rest[..i]));
            } else {
                self.partial.extend_from_slice(&rest[..i]);
                line(trim_cr(&self.partial));
                self.partial.clear();
            }
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    /// The last line, when the file does not end with a newline.
    pub fn finish(self, mut line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(trim_cr(&self.partial));
        }
    }
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "/v1/images/generations";

    fn line(id: &str, body: &str) -> String {
        format!(r#"{{"custom_id": "{id}", "method": "POST", "url": "{EP}", "body": {body}}}"#)
    }

    fn run(text: &str) -> Result<Vec<Line>, Vec<LineError>> {
        let mut v = Validator::new(EP);
        let mut lines = Lines::default();
        let mut out = Vec::new();
        // Fed in small chunks: lines span them.
        for chunk in text.as_bytes().chunks(7) {
            lines.push(chunk, |l| out.extend(v.feed(l)));
        }
        lines.finish(|l| out.extend(v.feed(l)));
        let n = v.finish()?;
        assert_eq!(n, out.len());
        Ok(out)
    }

    #[test]
    fn good_lines_run_and_a_bad_body_goes_to_the_error_file() {
        let text = [
            line("a", r#"{"model": "nano-banana-pro", "prompt": "a fox"}"#),
            line("b", r#"{"model": "nano-banana-pro", "prompt": "x", "size": "7x7"}"#),
            String::new(),
            line("c", r#"{"model": "nano-banana", "prompt": "an owl"}"#),
        ]
        .join("\r\n");
        let lines = run(&text).unwrap();
        assert_eq!(lines.iter().map(|l| l.custom_id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(lines.iter().map(|l| l.number).collect::<Vec<_>>(), [1, 2, 4]);
        assert!(lines[0].request.is_ok() && lines[2].request.is_ok());
        assert_eq!(lines[1].request.as_ref().unwrap_err().param.as_deref(), Some("size"));
    }

    #[test]
    fn file_level_problems_fail_the_batch_naming_their_lines() {
        let ok = r#"{"model": "nano-banana-pro", "prompt": "x"}"#;
        let text = [
            line("a", ok),
            line("a", ok),
            "{not json".to_string(),
            line("c", ok).replace(EP, "/v1/images/edits"),
            r#"{"custom_id": "d", "method": "GET", "url": "/v1/images/generations", "body": {}}"#.to_string(),
        ]
        .join("\n");
        let errors = run(&text).unwrap_err();
        let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.code)).collect();
        assert_eq!(
            got,
            [(2, "duplicate_custom_id"), (3, "invalid_json_line"), (4, "mismatched_url"), (5, "invalid_method")]
        );
        assert_eq!(run("\n\n").unwrap_err()[0].code, "empty_file");
    }
}
