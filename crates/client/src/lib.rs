//! The Rust client of a Hive hub: [`HubClient`] for the REST API and [`worker`] for running an
//! agent over the worker protocol (what `hive worker` and the tests use).
//!
//! # Layout
//! - [`http`]: `HubClient`, one method per endpoint, errors as [`ClientError`].
//! - [`worker`]: the worker loop: hello, assignments, heartbeats, results, reconnects.
//! - [`exec`]: an executor that runs a shell command per task.

pub mod exec;
pub mod http;
pub mod worker;

pub use http::{ClientError, HubClient};
pub use worker::{Executor, Outcome, WorkerOptions, run_worker};
