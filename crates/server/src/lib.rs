//! The Hive hub as a library: HTTP API, worker protocol, and the runtime that connects them to
//! the scheduler and the store.
//!
//! Data flows one way: request -> handler (parse, validate) -> actor (the core scheduler decides)
//! -> group commit (persist) -> effects (answer, send frames, wake waiters).
//!
//! # Layout
//! - [`hub`]: start (recover, spawn, listen) and graceful shutdown.
//! - [`config`]: the resolved configuration.
//! - [`actor`]: the single owner of the scheduler; [`actor::effects`] runs after each commit.
//! - [`routes`]: the REST API under `/api/v1`, health probes, OpenAPI; [`ws_agent`]: `/ws/agent`.
//! - [`json`], [`error`], [`views`]: request parsing, error bodies, wire-type conversions.
//! - [`connections`], [`waiters`]: where frames and wake-ups are delivered.
//! - [`swarms`]: swarm membership and broadcast replies (ephemeral, not stored).

pub mod actor;
pub mod alerts;
pub mod builtin;
pub mod config;
pub mod connections;
pub mod error;
pub mod events;
pub mod framer;
pub mod hub;
pub mod json;
pub mod metrics;
pub mod routes;
pub mod state;
pub mod streams;
pub mod swarms;
pub mod views;
pub mod waiters;
pub mod ws_agent;

pub use config::HubConfig;
pub use hive_store::sqlite::Durability;
pub use hub::{Hub, StartError};
