//! Hive's measuring instruments, with no knowledge of what they measure: latency distributions
//! ([`latency`]), readings of `/proc` ([`procfs`]) and the Prometheus text format
//! ([`prometheus`]). The server decides what to measure and when; `hive bench` reads the hub's
//! process with the same code.
//!
//! Layout: `latency.rs` (HDR histograms: an interval for live percentiles, fixed buckets for
//! scrapes), `procfs.rs` (process CPU and memory, per-core CPU, load average), `prometheus.rs`
//! (the exposition writer).

pub mod latency;
pub mod procfs;
pub mod prometheus;

pub use latency::{Latency, Percentiles};
