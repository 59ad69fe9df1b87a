//! Integration tests: a real hub on 127.0.0.1:0 with a temporary data dir, driven over HTTP and
//! WebSocket by the real client and worker library.

mod alerts;
mod auth;
mod browser;
mod builtin;
mod consensus;
mod dashboard;
mod encodings;
mod errors;
mod flow;
mod graphs;
mod hubs;
mod limits;
mod llm;
mod mcp;
mod neural;
mod observability;
mod postgres;
mod progress;
mod protocol;
mod query_cache;
mod reconnect;
mod replicas;
mod store_failure;
mod swarm;
mod throughput;
mod tls;
mod util;
mod worker_shutdown;
