//! What the hub measures about itself, and where: the registry ([`HubMetrics`]) every part of the
//! hub records into, cheaply and from any thread; [`snapshot`] turns it into a
//! [`MetricsSnapshot`](hive_proto::metrics::MetricsSnapshot) every interval (the JSON of
//! `/api/v1/metrics` and `/ws/performance`); [`exposition`] renders `/metrics` for Prometheus;
//! [`http`] times every API request. docs/observability.md lists each metric and how it is
//! counted.
//!
//! Recording points: HTTP requests (middleware), committed scheduler changes (task stages and
//! outcomes, on the writer thread after each commit, so nothing uncommitted is counted), agent
//! sessions (register, heartbeat, disconnect), drains, swarm broadcasts, and the actor's cache
//! of recently finished tasks.

pub mod exposition;
pub mod http;
pub mod llm;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hive_core::{AttemptOutcome, Change, TaskStatus};
use hive_metrics::Latency;

/// Everything counted since the hub started. Rates are differences between snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    TasksSubmitted,
    AttemptsStarted,
    AttemptsSucceeded,
    AttemptsFailed,
    AttemptsLeaseExpired,
    AttemptsCancelled,
    /// Given back unstarted by a stopping agent.
    AttemptsReleased,
    TasksSucceeded,
    TasksFailed,
    TasksCancelled,
    AgentsRegistered,
    Heartbeats,
    AgentsDrained,
    AgentsDisconnected,
    /// Disconnected without a clean close: the connection broke or heartbeats stopped.
    AgentsLost,
    SwarmMessages,
    SwarmDeliveries,
    ApiRequests,
    ApiClientErrors,
    ApiServerErrors,
    /// Submits refused at once by admission control (work in flight over its bound).
    SubmitsShed,
    /// Connections answered 503 and closed: the hub served all it may.
    ConnectionsRefused,
    FinishedCacheHits,
    FinishedCacheMisses,
    /// Several hubs: queued tasks handed to the shared pool, claimed from it, and taken over
    /// from hubs whose lease ended.
    TasksReleased,
    TasksClaimed,
    TasksAdopted,
    /// Progress frames passed on to the streams, and those dropped for coming too fast.
    ProgressReported,
    ProgressDropped,
}

impl Count {
    pub const ALL: [Count; 29] = [
        Count::TasksSubmitted,
        Count::AttemptsStarted,
        Count::AttemptsSucceeded,
        Count::AttemptsFailed,
        Count::AttemptsLeaseExpired,
        Count::AttemptsCancelled,
        Count::AttemptsReleased,
        Count::TasksSucceeded,
        Count::TasksFailed,
        Count::TasksCancelled,
        Count::AgentsRegistered,
        Count::Heartbeats,
        Count::AgentsDrained,
        Count::AgentsDisconnected,
        Count::AgentsLost,
        Count::SwarmMessages,
        Count::SwarmDeliveries,
        Count::ApiRequests,
        Count::ApiClientErrors,
        Count::ApiServerErrors,
        Count::SubmitsShed,
        Count::ConnectionsRefused,
        Count::FinishedCacheHits,
        Count::FinishedCacheMisses,
        Count::TasksReleased,
        Count::TasksClaimed,
        Count::TasksAdopted,
        Count::ProgressReported,
        Count::ProgressDropped,
    ];

    /// The key in the JSON's `totals` and `throughput`.
    pub fn name(self) -> &'static str {
        match self {
            Count::TasksSubmitted => "tasks_submitted",
            Count::AttemptsStarted => "attempts_started",
            Count::AttemptsSucceeded => "attempts_succeeded",
            Count::AttemptsFailed => "attempts_failed",
            Count::AttemptsLeaseExpired => "attempts_lease_expired",
            Count::AttemptsCancelled => "attempts_cancelled",
            Count::AttemptsReleased => "attempts_released",
            Count::TasksSucceeded => "tasks_succeeded",
            Count::TasksFailed => "tasks_failed",
            Count::TasksCancelled => "tasks_cancelled",
            Count::AgentsRegistered => "agents_registered",
            Count::Heartbeats => "heartbeats",
            Count::AgentsDrained => "agents_drained",
            Count::AgentsDisconnected => "agents_disconnected",
            Count::AgentsLost => "agents_lost",
            Count::SwarmMessages => "swarm_messages",
            Count::SwarmDeliveries => "swarm_deliveries",
            Count::ApiRequests => "api_requests",
            Count::ApiClientErrors => "api_client_errors",
            Count::ApiServerErrors => "api_server_errors",
            Count::SubmitsShed => "submits_shed",
            Count::ConnectionsRefused => "connections_refused",
            Count::FinishedCacheHits => "finished_cache_hits",
            Count::FinishedCacheMisses => "finished_cache_misses",
            Count::TasksReleased => "tasks_released",
            Count::TasksClaimed => "tasks_claimed",
            Count::TasksAdopted => "tasks_adopted",
            Count::ProgressReported => "progress_reported",
            Count::ProgressDropped => "progress_dropped",
        }
    }
}

/// The requests and latency of one API route.
#[derive(Default)]
pub struct RouteStats {
    pub latency: Latency,
    /// Responses by class: 2xx/3xx, 4xx, 5xx.
    pub ok: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
}

pub struct HubMetrics {
    /// Off (`metrics.enabled = false`, to measure what metrics cost): nothing is recorded.
    enabled: bool,
    pub started: Instant,
    counts: [AtomicU64; Count::ALL.len()],
    /// Every API request but long-polls and WebSocket upgrades (whose duration is the client's
    /// choice, not the hub's speed).
    pub api: Latency,
    /// By "METHOD /route/{template}"; an entry is made by a route's first request.
    routes: Mutex<HashMap<String, Arc<RouteStats>>>,
    /// Ready to started, per attempt.
    pub queue_wait: Latency,
    /// Started to ended, per attempt.
    pub execution: Latency,
    /// Created to finished, per task that ended with an attempt.
    pub end_to_end: Latency,
    /// The store's pool and cache counters (PostgreSQL only), read when `/metrics` is scraped.
    pub store_stats: Option<hive_store::postgres::StoreMonitor>,
    /// LLM providers' requests, tokens and cost (recorded even with metrics off: they are
    /// what was spent, not a measurement of the hub).
    pub llm: llm::LlmMeter,
    /// The neural routing model, with `[routing] policy = "neural"`: its learning and error are
    /// read from it by `/metrics` and each snapshot.
    pub neural: Option<hive_neural::SharedModel>,
}

impl Default for HubMetrics {
    fn default() -> Self {
        HubMetrics::new(true)
    }
}

impl HubMetrics {
    pub fn new(enabled: bool) -> Self {
        HubMetrics {
            enabled,
            started: Instant::now(),
            counts: Default::default(),
            api: Latency::default(),
            routes: Mutex::default(),
            queue_wait: Latency::default(),
            execution: Latency::default(),
            end_to_end: Latency::default(),
            store_stats: None,
            llm: Default::default(),
            neural: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn add(&self, what: Count, n: u64) {
        if self.enabled {
            self.counts[what as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn count(&self, what: Count) -> u64 {
        self.counts[what as usize].load(Ordering::Relaxed)
    }

    pub fn counts(&self) -> [u64; Count::ALL.len()] {
        Count::ALL.map(|c| self.count(c))
    }

    pub fn route(&self, key: &str) -> Arc<RouteStats> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stats) = routes.get(key) {
            return stats.clone();
        }
        routes.entry(key.to_string()).or_default().clone()
    }

    pub fn routes(&self) -> Vec<(String, Arc<RouteStats>)> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = routes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Counts and times what a committed batch of scheduler changes did. Task times come from
    /// the scheduler's clock, in whole milliseconds.
    pub fn observe(&self, changes: &[Change]) {
        if !self.enabled {
            return;
        }
        for change in changes {
            match change {
                Change::TaskCreated { status, .. } => {
                    self.add(Count::TasksSubmitted, 1);
                    if *status == TaskStatus::Failed {
                        self.add(Count::TasksFailed, 1);
                    }
                }
                Change::AttemptStarted { queued_ms, .. } => {
                    self.add(Count::AttemptsStarted, 1);
                    self.queue_wait.record_us(queued_ms * 1000);
                }
                Change::AttemptEnded {
                    created_at,
                    started_at,
                    ended_at,
                    outcome,
                    next,
                    ..
                } => {
                    self.add(
                        match outcome {
                            AttemptOutcome::Succeeded => Count::AttemptsSucceeded,
                            AttemptOutcome::Failed => Count::AttemptsFailed,
                            AttemptOutcome::LeaseExpired => Count::AttemptsLeaseExpired,
                            AttemptOutcome::Cancelled => Count::AttemptsCancelled,
                            AttemptOutcome::Released => Count::AttemptsReleased,
                        },
                        1,
                    );
                    // A released attempt never ran.
                    if *outcome != AttemptOutcome::Released {
                        self.execution
                            .record_us(ended_at.ms_since(*started_at) * 1000);
                    }
                    if let Some(status) = next.terminal_status() {
                        self.end_to_end
                            .record_us(ended_at.ms_since(*created_at) * 1000);
                        self.finished(status);
                    }
                }
                Change::TaskFinished { status, .. } => self.finished(*status),
                _ => {}
            }
        }
    }

    fn finished(&self, status: TaskStatus) {
        match status {
            TaskStatus::Succeeded => self.add(Count::TasksSucceeded, 1),
            TaskStatus::Failed => self.add(Count::TasksFailed, 1),
            TaskStatus::Cancelled => self.add(Count::TasksCancelled, 1),
            _ => {}
        }
    }
}
