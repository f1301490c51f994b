//! Fake upstreams for imagegate's tests and benchmarks, started on 127.0.0.1 with latency and
//! fault injection. Written from the vendors' public docs and the fixtures beside this crate,
//! never from imagegate's code: a misreading of a spec cannot be mirrored on both sides.

pub mod gemini;
pub mod gemini_batch;
pub mod gemini_stream;
pub mod images;
pub mod openai;
pub mod script;
pub mod serve;
pub mod webhook_sink;

pub use gemini::FakeGemini;
pub use openai::FakeOpenAi;
pub use script::{Reply, Script};
pub use webhook_sink::WebhookSink;
