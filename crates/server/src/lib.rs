//! The Hive hub as a library: HTTP API, worker protocol, and the runtime that connects them to
//! the scheduler and the store.
//!
//! Data flows one way: request -> handler (parse, validate) -> actor (the core scheduler decides)
//! -> group commit (persist) -> effects (answer, send frames, wake waiters).
//!
//! # Layout
//! - [`auth`]: who may do what: tokens with roles, and the browser defences (Host, Origin,
//!   JSON-only POSTs).
//! - [`hub`]: start (recover, spawn, listen) and graceful shutdown; [`listener`]: the HTTP/1.1
//!   accept loop with its bounds (open connections, header read time); [`admission`]: what
//!   submits may wait inside the hub before new ones are refused.
//! - [`config`]: the resolved configuration; [`backend`]: which store (SQLite or PostgreSQL);
//!   [`membership`]: this hub among several sharing a PostgreSQL database (lease, claims).
//! - [`actor`]: the single owner of the scheduler; [`actor::effects`] runs after each commit.
//! - [`routes`]: the REST API under `/api/v1`, health probes, OpenAPI, `/metrics`, the live
//!   streams and the dashboard's assets; [`ws_agent`]: `/ws/agent`, framed by [`framer`].
//! - [`mcp`]: `/mcp`, the Model Context Protocol, whose tools call the routes in process.
//! - [`json`], [`error`], [`views`]: request parsing, error bodies, wire-type conversions;
//!   [`agent_view`]: the agent view, written straight from the scheduler's snapshot.
//! - [`connections`], [`waiters`]: where frames and wake-ups are delivered.
//! - [`swarms`]: swarm membership and broadcast replies (ephemeral, not stored).
//! - [`local_agent`]: an agent inside the hub; [`builtin`]: the built-in executors and their CPU
//!   pool, as the local agent `builtin`; [`llm`]: OpenAI-compatible providers, an agent each.
//! - [`metrics`]: what the hub measures and its snapshots; [`alerts`]: rules evaluated on them;
//!   [`events`]: committed changes for `/ws/events`, and running attempts' [`progress`];
//!   [`streams`]: pushing to slow clients safely.

pub mod actor;
pub mod admission;
pub mod agent_view;
pub mod alerts;
pub mod assign_frame;
pub mod auth;
pub mod backend;
pub mod broadcast;
pub mod builtin;
pub mod config;
pub mod connections;
pub mod error;
pub mod events;
pub mod framer;
pub mod hub;
pub mod json;
pub mod listener;
pub mod llm;
pub mod local_agent;
pub mod mcp;
pub mod membership;
pub mod metrics;
pub mod neural;
pub mod progress;
pub mod query_cache;
pub mod reads;
pub mod routes;
pub mod state;
pub mod streams;
pub mod swarms;
pub mod task_view;
pub mod views;
pub mod waiters;
pub mod ws_agent;

pub use config::{HubConfig, PostgresConfig, RoutingConfig, TlsFiles};
pub use hive_core::PolicyKind;
pub use hive_store::postgres::{HubIdentity, PoolBounds, ReplicaConfig, redact as redact_url};
pub use hive_store::sqlite::Durability;
pub use hub::{Hub, StartError};
