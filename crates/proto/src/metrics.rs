//! The hub's measurements as JSON: `GET /api/v1/metrics` answers the latest [`MetricsSnapshot`]
//! and `/ws/performance` streams them. The first fields are the plan's
//! `DetailedPerformanceMetrics`; the rest break them down. Rates are per second over the
//! snapshot's interval; latencies are milliseconds over the same interval.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricsSnapshot {
    /// When the interval ended (RFC 3339).
    pub at: String,
    /// Length of the interval the rates and latencies cover.
    pub interval_ms: u64,
    /// Latency of every API request in the interval.
    pub p50_latency_ms: f64,
    pub p95_latency_ms: f64,
    pub p99_latency_ms: f64,
    /// Registrations, heartbeats, drains and disconnects of agents.
    pub agent_ops_per_sec: f64,
    /// Tasks submitted, attempts started and attempts ended.
    pub task_ops_per_sec: f64,
    /// Swarm broadcasts and the deliveries answered.
    pub swarm_ops_per_sec: f64,
    /// Busy share of each core of the machine, 0-100.
    pub cpu_core_usage: Vec<f64>,
    /// Bytes, by component; see docs/observability.md for how each is counted.
    pub memory_by_component: BTreeMap<String, u64>,
    /// Hits per lookup, 0-100, by cache.
    pub cache_hit_rates: BTreeMap<String, f64>,
    /// API responses with a 5xx status, percent of all responses.
    pub error_rate_percent: f64,
    /// Attempts whose lease ran out, percent of the attempts that ended.
    pub timeout_rate_percent: f64,

    /// Latency by stage: `api`, `task_queue_wait`, `task_execution`, `task_end_to_end`.
    pub latency_ms: BTreeMap<String, LatencySummary>,
    /// Per second, by operation (`tasks_submitted`, `attempts_succeeded`, `heartbeats`, ...).
    pub throughput: BTreeMap<String, f64>,
    /// By API route (`GET /api/v1/tasks/{id}`, ...).
    pub routes: BTreeMap<String, RouteMetrics>,
    /// Tasks ready to run and waiting for an agent, by capability.
    pub queue_depth: BTreeMap<String, u64>,
    /// Agents by state (`idle`, `busy`, `draining`, `offline`).
    pub agents: BTreeMap<String, u64>,
    /// Counts since the hub started, by what was counted (`tasks_succeeded`, ...).
    pub totals: BTreeMap<String, u64>,
    pub process: ProcessMetrics,
    /// The machine's 1-minute load average.
    #[schema(required)]
    pub load_avg: Option<f64>,
    /// LLM providers' requests and tokens since the hub started, by capability
    /// (`llm:<provider>/<model>`); empty without `[[llm.providers]]`.
    #[serde(default)]
    #[schema(required)]
    pub llm: BTreeMap<String, LlmUsage>,
    /// The neural routing model; absent unless `[routing] policy = "neural"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neural: Option<NeuralMetrics>,
}

/// The neural routing model's learning and its error (docs/routing.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NeuralMetrics {
    /// Attempts learned from, ever (kept across restarts).
    pub trained: u64,
    /// Whether its predictions are used yet (it has learned from enough attempts).
    pub ready: bool,
    /// Attempts whose latency it predicted in this interval, before learning from them, and
    /// its mean absolute error on them, ms, and that error over their mean latency (absent
    /// without such attempts).
    pub predicted: u64,
    #[schema(required)]
    pub mean_absolute_error_ms: Option<f64>,
    #[schema(required)]
    pub relative_error: Option<f64>,
    /// Attempts it could not learn from because its trainer had fallen behind, since the hub
    /// started.
    pub dropped: u64,
}

/// What one model of one LLM provider was asked and answered, since the hub started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LlmUsage {
    pub provider: String,
    pub model: String,
    /// Requests answered with a completion.
    pub requests: u64,
    /// Requests that got none (refused, throttled, unreachable, malformed).
    pub failed_requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// What the tokens cost, at the configured prices (null without prices).
    #[schema(required)]
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatencySummary {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    /// Samples in the interval.
    pub count: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RouteMetrics {
    pub requests_per_sec: f64,
    /// 4xx responses, percent of the route's responses.
    pub client_error_percent: f64,
    /// 5xx responses, percent of the route's responses.
    pub server_error_percent: f64,
    pub latency_ms: LatencySummary,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ProcessMetrics {
    /// CPU time of the hub over the interval, percent of one core.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub uptime_s: f64,
}
