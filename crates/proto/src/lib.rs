//! Hive's wire types: the JSON bodies of the REST API ([`api`], [`metrics`], [`alerts`]), the
//! messages of the worker protocol on `/ws/agent` ([`protocol`]) and how they are framed
//! ([`codec`]), the events of `/ws/events` ([`events`]), and the closed sets of words they use
//! ([`enums`]). Shared by the server and the Rust
//! client so the two cannot drift apart; the OpenAPI document is generated from these same types.
//!
//! No logic lives here beyond (de)serialisation and the shape checks of protocol frames.

pub mod alerts;
pub mod api;
pub mod codec;
pub mod enums;
pub mod events;
pub mod fast_json;
pub mod integral;
pub mod metrics;
pub mod protocol;
pub mod sse;

pub use serde_json::value::RawValue;
