//! The wire shapes of the API as OpenAPI schemas. Handlers build their JSON in place (no copy
//! of megabyte bodies into typed structs), so these types describe it for the spec only;
//! schemathesis checks every answer of a running server against them (tests/sdk/test_openapi.py).

pub mod admin;
pub mod batches;
pub mod common;
pub mod gemini;
pub mod images;
pub mod tasks;
