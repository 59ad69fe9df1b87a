//! The snapshot loop: every interval (1 s by default, down to 100 ms) it reads the registry, the
//! scheduler (queue depths, agents, its memory) and `/proc`, and makes a [`MetricsSnapshot`] of
//! that interval: latencies are the interval's own, rates are the counters' differences from the
//! previous snapshot divided by the time between the two.
//!
//! The last [`HISTORY`] snapshots are kept, so a new dashboard starts with a history; each new
//! one goes to the `/ws/performance` subscribers through a bounded broadcast channel, so a
//! subscriber that falls behind skips snapshots instead of making the hub buffer them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive_metrics::procfs::{self, CoreTimes};
use hive_metrics::{Latency, Percentiles};
use hive_proto::metrics::{
    LatencySummary, MetricsSnapshot, NeuralMetrics, ProcessMetrics, RouteMetrics,
};
use tokio::sync::broadcast;

use super::{Count, HubMetrics};
use crate::actor::{Command, Overview};
use crate::state::AppState;

/// Snapshots kept for new subscribers: five minutes at the default interval.
pub const HISTORY: usize = 300;
/// Snapshots a subscriber may fall behind by before it skips some.
const STREAM_BUFFER: usize = 16;

pub struct Snapshots {
    /// With each snapshot's size as JSON, which is what it costs to keep (about).
    history: Mutex<VecDeque<(Arc<MetricsSnapshot>, usize)>>,
    stream: broadcast::Sender<Arc<MetricsSnapshot>>,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots {
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            stream: broadcast::channel(STREAM_BUFFER).0,
        }
    }
}

impl Snapshots {
    pub fn latest(&self) -> Option<Arc<MetricsSnapshot>> {
        self.lock().back().map(|(s, _)| s.clone())
    }

    /// Bytes of the snapshots kept, counted as their JSON.
    pub fn bytes(&self) -> usize {
        self.lock().iter().map(|(_, n)| n).sum()
    }

    /// The history so far and the snapshots after it, with none missed or repeated between the
    /// two (the subscription is taken under the history's lock, which `push` also takes).
    pub fn subscribe(
        &self,
    ) -> (
        Vec<Arc<MetricsSnapshot>>,
        broadcast::Receiver<Arc<MetricsSnapshot>>,
    ) {
        let history = self.lock();
        let snapshots = history.iter().map(|(s, _)| s.clone()).collect();
        (snapshots, self.stream.subscribe())
    }

    /// Oldest first.
    pub fn history(&self) -> Vec<Arc<MetricsSnapshot>> {
        self.lock().iter().map(|(s, _)| s.clone()).collect()
    }

    fn push(&self, snapshot: Arc<MetricsSnapshot>) {
        let size = serde_json::to_vec(&*snapshot).map_or(0, |j| j.len());
        let mut history = self.lock();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back((snapshot.clone(), size));
        // No subscriber is fine.
        let _ = self.stream.send(snapshot);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Arc<MetricsSnapshot>, usize)>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counters and clocks as they were at the previous snapshot.
struct Reading {
    at: Instant,
    counts: [u64; Count::ALL.len()],
    routes: HashMap<String, [u64; 3]>,
    cpu_us: Option<u64>,
    cores: Option<CoreTimes>,
    neural: Option<hive_neural::Totals>,
}

impl Reading {
    fn take(metrics: &HubMetrics) -> Reading {
        Reading {
            at: Instant::now(),
            counts: metrics.counts(),
            routes: HashMap::new(),
            cpu_us: procfs::sample_self().map(|s| s.cpu_us),
            cores: CoreTimes::read(),
            neural: metrics.neural.as_ref().map(|n| n.totals()),
        }
    }
}

/// Publishes a first snapshot (of an empty interval, so that there always is one), then spawns
/// the loop that takes one every `interval` until the hub stops.
pub async fn start(state: AppState, interval: Duration) {
    let mut previous = Reading::take(&state.metrics);
    if !publish(&state, &mut previous).await {
        return;
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let stop = crate::state::stopped(state.shutdown.clone());
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = &mut stop => return,
            }
            if !publish(&state, &mut previous).await {
                return;
            }
        }
    });
}

/// False once the scheduler is gone.
async fn publish(state: &AppState, previous: &mut Reading) -> bool {
    let Ok(overview) = state.ask(|reply| Command::Overview { reply }).await else {
        return false;
    };
    let mut snapshot = take(&state.metrics, &overview, state.snapshots.bytes(), previous);
    add_query_cache(&state.cache, &mut snapshot.cache_hit_rates);
    state.snapshots.push(Arc::new(snapshot));
    let history = state.snapshots.history();
    state.alerts.check(&history, state.clock.now()).await;
    true
}

/// The query cache's hit rates since start: `query_cache` for all its lookups, and
/// `query_<name>` per query (see [`crate::query_cache`]).
fn add_query_cache(cache: &crate::query_cache::QueryCache, rates: &mut BTreeMap<String, f64>) {
    let (mut hits, mut lookups) = (0, 0);
    for (query, query_hits, query_misses) in cache.lookups() {
        let query_lookups = query_hits + query_misses;
        rates.insert(
            format!("query_{}", query.name()),
            percent(query_hits, query_lookups),
        );
        hits += query_hits;
        lookups += query_lookups;
    }
    rates.insert("query_cache".into(), percent(hits, lookups));
}

fn summary(p: Percentiles) -> LatencySummary {
    LatencySummary {
        p50: p.p50,
        p95: p.p95,
        p99: p.p99,
        max: p.max,
        count: p.count,
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn take(
    metrics: &HubMetrics,
    overview: &Overview,
    history_bytes: usize,
    previous: &mut Reading,
) -> MetricsSnapshot {
    let mut now = Reading::take(metrics);
    let seconds = now.at.duration_since(previous.at).as_secs_f64().max(1e-6);
    let (current, before) = (now.counts, previous.counts);
    let delta = |c: Count| current[c as usize].saturating_sub(before[c as usize]);
    let rate = |counts: &[Count]| counts.iter().map(|&c| delta(c)).sum::<u64>() as f64 / seconds;

    let roll = |l: &Latency| summary(l.roll());
    let api = roll(&metrics.api);
    let latency_ms = BTreeMap::from([
        ("api".to_string(), api),
        ("task_queue_wait".to_string(), roll(&metrics.queue_wait)),
        ("task_execution".to_string(), roll(&metrics.execution)),
        ("task_end_to_end".to_string(), roll(&metrics.end_to_end)),
    ]);
    let mut routes = BTreeMap::new();
    for (key, stats) in metrics.routes() {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let counts = [
            load(&stats.ok),
            load(&stats.client_errors),
            load(&stats.server_errors),
        ];
        let earlier = previous.routes.get(&key).copied().unwrap_or_default();
        let [ok, client, server] = [0, 1, 2].map(|i| counts[i].saturating_sub(earlier[i]));
        let all = ok + client + server;
        routes.insert(
            key.clone(),
            RouteMetrics {
                requests_per_sec: all as f64 / seconds,
                client_error_percent: percent(client, all),
                server_error_percent: percent(server, all),
                latency_ms: roll(&stats.latency),
            },
        );
        now.routes.insert(key, counts);
    }

    let attempts_ended = [
        Count::AttemptsSucceeded,
        Count::AttemptsFailed,
        Count::AttemptsLeaseExpired,
        Count::AttemptsCancelled,
        Count::AttemptsReleased,
    ];
    let ended: u64 = attempts_ended.iter().map(|&c| delta(c)).sum();
    let hits = metrics.count(Count::FinishedCacheHits);
    let lookups = hits + metrics.count(Count::FinishedCacheMisses);
    let process = procfs::sample_self();
    let mut memory_by_component = BTreeMap::from([
        ("scheduler".to_string(), overview.memory.bytes as u64),
        ("metrics_history".to_string(), history_bytes as u64),
    ]);
    if let Some(p) = process {
        memory_by_component.insert("process_rss".into(), p.rss_bytes);
    }
    let mut agents = BTreeMap::new();
    for agent in &overview.agents {
        *agents.entry(agent.state.as_str().to_string()).or_insert(0) += 1;
    }
    let snapshot = MetricsSnapshot {
        at: crate::views::rfc3339(hive_core::Clock::now(&hive_core::SystemClock)),
        interval_ms: (seconds * 1000.0).round() as u64,
        p50_latency_ms: api.p50,
        p95_latency_ms: api.p95,
        p99_latency_ms: api.p99,
        agent_ops_per_sec: rate(&[
            Count::AgentsRegistered,
            Count::Heartbeats,
            Count::AgentsDrained,
            Count::AgentsDisconnected,
        ]),
        task_ops_per_sec: rate(&[Count::TasksSubmitted, Count::AttemptsStarted])
            + ended as f64 / seconds,
        swarm_ops_per_sec: rate(&[Count::SwarmMessages, Count::SwarmDeliveries]),
        cpu_core_usage: match (&now.cores, &previous.cores) {
            (Some(now), Some(before)) => now
                .usage_since(before)
                .into_iter()
                .map(|u| u * 100.0)
                .collect(),
            _ => Vec::new(),
        },
        memory_by_component,
        cache_hit_rates: BTreeMap::from([("finished_tasks".to_string(), percent(hits, lookups))]),
        error_rate_percent: percent(delta(Count::ApiServerErrors), delta(Count::ApiRequests)),
        timeout_rate_percent: percent(delta(Count::AttemptsLeaseExpired), ended),
        latency_ms,
        throughput: Count::ALL
            .iter()
            .map(|&c| (c.name().to_string(), delta(c) as f64 / seconds))
            .collect(),
        routes,
        queue_depth: overview
            .queue_depths
            .iter()
            .map(|(c, n)| (c.clone(), *n as u64))
            .collect(),
        agents,
        totals: Count::ALL
            .iter()
            .map(|&c| (c.name().to_string(), current[c as usize]))
            .collect(),
        process: ProcessMetrics {
            cpu_percent: match (now.cpu_us, previous.cpu_us) {
                (Some(now), Some(before)) => {
                    now.saturating_sub(before) as f64 / (seconds * 1e6) * 100.0
                }
                _ => 0.0,
            },
            rss_bytes: process.map_or(0, |p| p.rss_bytes),
            peak_rss_bytes: process.map_or(0, |p| p.peak_rss_bytes),
            uptime_s: metrics.started.elapsed().as_secs_f64(),
        },
        load_avg: procfs::load_avg(),
        llm: metrics.llm.read(),
        neural: metrics
            .neural
            .as_ref()
            .map(|model| neural(model, now.neural, previous.neural)),
    };
    *previous = now;
    snapshot
}

/// The model's learning, and its error on the attempts of the interval (`now` less `before`).
fn neural(
    model: &hive_neural::SharedModel,
    now: Option<hive_neural::Totals>,
    before: Option<hive_neural::Totals>,
) -> NeuralMetrics {
    let (now, before) = (now.unwrap_or_default(), before.unwrap_or_default());
    let predicted = now.predicted.saturating_sub(before.predicted);
    let error_ms = now.absolute_error_ms - before.absolute_error_ms;
    let actual_ms = now.actual_ms - before.actual_ms;
    let weights = model.weights();
    NeuralMetrics {
        trained: weights.trained,
        ready: weights.ready(),
        predicted,
        mean_absolute_error_ms: (predicted > 0).then(|| error_ms / predicted as f64),
        relative_error: (predicted > 0 && actual_ms > 0.0).then(|| error_ms / actual_ms),
        dropped: model.dropped(),
    }
}

/// The default interval and the shortest allowed.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
