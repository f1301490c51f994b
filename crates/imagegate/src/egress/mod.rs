//! Outbound HTTP: every connection the gateway opens goes through a client from here, under one
//! policy per kind of target (see `client`): the SSRF guard (`guard`) for URLs that customers or
//! upstream answers chose, with connect-time checks through a pluggable `resolver`; no proxy
//! unless configured; redirects refused or re-checked; time limits; bodies read with a cap.

pub mod client;
pub mod guard;
pub mod resolver;

pub use client::{Guarded, ReadError, guarded, read_capped, upstream};
pub use guard::GuardError;
pub use resolver::{Resolver, SystemResolver};
