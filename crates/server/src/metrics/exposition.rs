//! `GET /metrics`: the registry in Prometheus' text format. Counters and histograms are read
//! live (cumulative since the hub started, as Prometheus expects); the gauges that need the
//! scheduler (queue depth, agents, its memory) come from the latest snapshot, so a scrape never
//! waits for the scheduler's turn.

use std::sync::atomic::Ordering;

use hive_metrics::procfs;
use hive_metrics::prometheus::{Exposition, Kind};
use hive_proto::metrics::{LlmUsage, MetricsSnapshot};

use super::{Count, HubMetrics};

pub fn render(
    metrics: &HubMetrics,
    cache: &crate::query_cache::QueryCache,
    latest: Option<&MetricsSnapshot>,
) -> String {
    let mut e = Exposition::default();

    let mut counter = |name: &str, help: &str, label: &str, series: &[(&str, Count)]| {
        e.family(name, Kind::Counter, help);
        for (value, c) in series {
            let labels: &[(&str, &str)] = if label.is_empty() {
                &[]
            } else {
                &[(label, value)]
            };
            e.sample(name, labels, metrics.count(*c) as f64);
        }
    };
    counter(
        "hive_tasks_submitted_total",
        "Tasks accepted (committed).",
        "",
        &[("", Count::TasksSubmitted)],
    );
    counter(
        "hive_tasks_total",
        "Tasks that reached a final status, by status.",
        "status",
        &[
            ("succeeded", Count::TasksSucceeded),
            ("failed", Count::TasksFailed),
            ("cancelled", Count::TasksCancelled),
        ],
    );
    counter(
        "hive_attempts_started_total",
        "Attempts started on an agent.",
        "",
        &[("", Count::AttemptsStarted)],
    );
    counter(
        "hive_attempts_ended_total",
        "Attempts that ended, by outcome.",
        "outcome",
        &[
            ("succeeded", Count::AttemptsSucceeded),
            ("failed", Count::AttemptsFailed),
            ("lease_expired", Count::AttemptsLeaseExpired),
            ("cancelled", Count::AttemptsCancelled),
            ("released", Count::AttemptsReleased),
        ],
    );
    counter(
        "hive_agent_operations_total",
        "Agent operations, by operation.",
        "operation",
        &[
            ("register", Count::AgentsRegistered),
            ("heartbeat", Count::Heartbeats),
            ("drain", Count::AgentsDrained),
            ("disconnect", Count::AgentsDisconnected),
        ],
    );
    counter(
        "hive_submits_shed_total",
        "Submit requests refused at once (503) because the work in flight passed its bound.",
        "",
        &[("", Count::SubmitsShed)],
    );
    counter(
        "hive_connections_refused_total",
        "Connections answered 503 and closed because the hub served all it may.",
        "",
        &[("", Count::ConnectionsRefused)],
    );
    counter(
        "hive_agents_lost_total",
        "Agents disconnected without a clean close (connection broken or heartbeats missed).",
        "",
        &[("", Count::AgentsLost)],
    );
    counter(
        "hive_swarm_messages_total",
        "Swarm broadcasts sent.",
        "",
        &[("", Count::SwarmMessages)],
    );
    counter(
        "hive_swarm_deliveries_total",
        "Swarm messages delivered and answered.",
        "",
        &[("", Count::SwarmDeliveries)],
    );
    counter(
        "hive_finished_cache_lookups_total",
        "Lookups of a finished task's status, by whether the hub's cache answered.",
        "result",
        &[
            ("hit", Count::FinishedCacheHits),
            ("miss", Count::FinishedCacheMisses),
        ],
    );
    counter(
        "hive_hub_tasks_moved_total",
        "Several hubs on PostgreSQL: queued tasks this hub released to the shared pool, claimed from it, and took over from hubs whose lease ended.",
        "how",
        &[
            ("released", Count::TasksReleased),
            ("claimed", Count::TasksClaimed),
            ("adopted", Count::TasksAdopted),
        ],
    );

    let routes = metrics.routes();
    e.family(
        "hive_http_requests_total",
        Kind::Counter,
        "API requests, by route and status class.",
    );
    for (key, stats) in &routes {
        let (method, route) = key.split_once(' ').unwrap_or(("", key));
        for (class, counter) in [
            ("2xx", &stats.ok),
            ("4xx", &stats.client_errors),
            ("5xx", &stats.server_errors),
        ] {
            let labels = [("method", method), ("route", route), ("status", class)];
            e.sample(
                "hive_http_requests_total",
                &labels,
                counter.load(Ordering::Relaxed) as f64,
            );
        }
    }
    e.family(
        "hive_http_request_duration_seconds",
        Kind::Histogram,
        "Time to answer an API request, by route.",
    );
    for (key, stats) in &routes {
        let (method, route) = key.split_once(' ').unwrap_or(("", key));
        e.histogram(
            "hive_http_request_duration_seconds",
            &[("method", method), ("route", route)],
            &stats.latency.cumulative(),
        );
    }
    for (name, help, latency) in [
        (
            "hive_task_queue_wait_seconds",
            "Time an attempt waited in its ready queue (1 ms resolution).",
            &metrics.queue_wait,
        ),
        (
            "hive_task_execution_seconds",
            "Time from an attempt's start to its end (1 ms resolution).",
            &metrics.execution,
        ),
        (
            "hive_task_end_to_end_seconds",
            "Time from a task's creation to its final status (1 ms resolution).",
            &metrics.end_to_end,
        ),
    ] {
        e.family(name, Kind::Histogram, help)
            .histogram(name, &[], &latency.cumulative());
    }

    if let Some(s) = latest {
        e.family(
            "hive_queue_depth",
            Kind::Gauge,
            "Tasks ready and waiting for an agent, by capability.",
        );
        for (capability, n) in &s.queue_depth {
            e.sample("hive_queue_depth", &[("capability", capability)], *n as f64);
        }
        e.family("hive_agents", Kind::Gauge, "Agents by state.");
        for (state, n) in &s.agents {
            e.sample("hive_agents", &[("state", state)], *n as f64);
        }
        e.family(
            "hive_memory_bytes",
            Kind::Gauge,
            "Memory by component (see docs/observability.md).",
        );
        for (component, bytes) in &s.memory_by_component {
            e.sample(
                "hive_memory_bytes",
                &[("component", component)],
                *bytes as f64,
            );
        }
        e.family(
            "hive_cpu_core_usage_ratio",
            Kind::Gauge,
            "Busy share of each core of the machine over the last interval.",
        );
        for (core, usage) in s.cpu_core_usage.iter().enumerate() {
            e.sample(
                "hive_cpu_core_usage_ratio",
                &[("core", &core.to_string())],
                usage / 100.0,
            );
        }
    }

    if let Some(store) = &metrics.store_stats {
        let p = store.stats();
        e.family(
            "hive_store_pool_connections",
            Kind::Gauge,
            "PostgreSQL connections of the store's pool, by state.",
        );
        let idle = p.open.saturating_sub(p.in_use);
        for (state, n) in [("in_use", p.in_use), ("idle", idle)] {
            e.sample("hive_store_pool_connections", &[("state", state)], n as f64);
        }
        e.family(
            "hive_store_pool_max_connections",
            Kind::Gauge,
            "The pool's bound (store.pool_max).",
        )
        .sample("hive_store_pool_max_connections", &[], p.max as f64);
        e.family(
            "hive_store_pool_waiting",
            Kind::Gauge,
            "Store requests waiting for a connection now.",
        )
        .sample("hive_store_pool_waiting", &[], p.waiting as f64);
        e.family(
            "hive_store_pool_acquired_total",
            Kind::Counter,
            "Connections handed out by the pool.",
        )
        .sample("hive_store_pool_acquired_total", &[], p.acquired as f64);
        e.family(
            "hive_store_pool_wait_seconds_total",
            Kind::Counter,
            "Time store requests waited for a connection, in all.",
        )
        .sample("hive_store_pool_wait_seconds_total", &[], p.wait_seconds);
        replicas(&mut e, &store.replicas());
    }

    e.family(
        "hive_query_cache_lookups_total",
        Kind::Counter,
        "Reads the query cache was asked for, by query and by whether it answered (see docs/design.md, \"The query cache\").",
    );
    for (query, hits, misses) in cache.lookups() {
        for (result, n) in [("hit", hits), ("miss", misses)] {
            e.sample(
                "hive_query_cache_lookups_total",
                &[("query", query.name()), ("result", result)],
                n as f64,
            );
        }
    }

    if let Some(p) = procfs::sample_self() {
        e.family(
            "process_cpu_seconds_total",
            Kind::Counter,
            "User and system CPU time of the hub.",
        )
        .sample("process_cpu_seconds_total", &[], p.cpu_us as f64 / 1e6);
        e.family(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory of the hub.",
        )
        .sample("process_resident_memory_bytes", &[], p.rss_bytes as f64);
    }
    e.family(
        "hive_uptime_seconds",
        Kind::Gauge,
        "Time since the hub started.",
    )
    .sample(
        "hive_uptime_seconds",
        &[],
        metrics.started.elapsed().as_secs_f64(),
    );
    llm(&mut e, &metrics.llm.read());
    if let Some(model) = &metrics.neural {
        neural(&mut e, model);
    }
    e.finish()
}

/// The neural routing model: what it learned and its error on attempts before it learned from
/// them (a rate of the error total over a rate of the latency total is its relative error).
fn neural(e: &mut Exposition, model: &hive_neural::SharedModel) {
    let (totals, weights) = (model.totals(), model.weights());
    let families: [(&str, Kind, &str, f64); 8] = [
        (
            "hive_neural_trained",
            Kind::Gauge,
            "Attempts the routing model learned from, ever (kept across restarts).",
            weights.trained as f64,
        ),
        (
            "hive_neural_ready",
            Kind::Gauge,
            "1 once the routing model's predictions are used.",
            f64::from(u8::from(weights.ready())),
        ),
        (
            "hive_neural_predicted_total",
            Kind::Counter,
            "Attempts whose latency the routing model predicted before learning from them.",
            totals.predicted as f64,
        ),
        (
            "hive_neural_absolute_error_ms_total",
            Kind::Counter,
            "Sum of the absolute errors of those predictions, ms.",
            totals.absolute_error_ms,
        ),
        (
            "hive_neural_actual_ms_total",
            Kind::Counter,
            "Sum of those attempts' actual latencies, ms.",
            totals.actual_ms,
        ),
        (
            "hive_neural_training_steps_total",
            Kind::Counter,
            "Adam steps the routing model's trainer took since the hub started.",
            totals.steps as f64,
        ),
        (
            "hive_neural_training_loss",
            Kind::Gauge,
            "The loss of the trainer's last batch (squared log-latency error plus cross-entropy).",
            f64::from(totals.loss),
        ),
        (
            "hive_neural_dropped_total",
            Kind::Counter,
            "Attempts the routing model could not learn from: its trainer had fallen behind.",
            model.dropped() as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        e.family(name, kind, help).sample(name, &[], value);
    }
}

/// LLM providers: requests, tokens and cost by provider, model and capability. Absent without
/// providers.
fn llm(e: &mut Exposition, usage: &std::collections::BTreeMap<String, LlmUsage>) {
    if usage.is_empty() {
        return;
    }
    /// A family's samples for one model: its own label (if any) and value.
    type Series = fn(&LlmUsage) -> Vec<(Option<(&'static str, &'static str)>, f64)>;
    let families: [(&str, &str, Series); 3] = [
        (
            "hive_llm_requests_total",
            "Requests to LLM providers, by result.",
            |u| {
                vec![
                    (Some(("result", "ok")), u.requests as f64),
                    (Some(("result", "failed")), u.failed_requests as f64),
                ]
            },
        ),
        (
            "hive_llm_tokens_total",
            "Tokens LLM providers counted, by kind (prompt, completion).",
            |u| {
                vec![
                    (Some(("kind", "prompt")), u.prompt_tokens as f64),
                    (Some(("kind", "completion")), u.completion_tokens as f64),
                ]
            },
        ),
        (
            "hive_llm_cost_total",
            "What the tokens cost at the configured prices (models with prices only).",
            |u| u.cost.map(|cost| (None, cost)).into_iter().collect(),
        ),
    ];
    for (name, help, series) in families {
        e.family(name, Kind::Counter, help);
        for (capability, u) in usage {
            for (label, value) in series(u) {
                let mut labels = vec![
                    ("provider", u.provider.as_str()),
                    ("model", u.model.as_str()),
                    ("capability", capability.as_str()),
                ];
                labels.extend(label);
                e.sample(name, &labels, value);
            }
        }
    }
}

/// The read replicas: in rotation or not, their lag, the queries they answered.
fn replicas(e: &mut Exposition, replicas: &[hive_store::postgres::ReplicaStats]) {
    if replicas.is_empty() {
        return;
    }
    e.family(
        "hive_store_replica_in_rotation",
        Kind::Gauge,
        "1 while the read replica answers reads, 0 while it is out (unreachable, promoted, or lagging past store.replica_max_lag_ms).",
    );
    for r in replicas {
        let up = if r.in_rotation { 1.0 } else { 0.0 };
        e.sample(
            "hive_store_replica_in_rotation",
            &[("replica", &r.label)],
            up,
        );
    }
    e.family(
        "hive_store_replica_lag_seconds",
        Kind::Gauge,
        "How far the read replica was behind the primary at its last check (0 when it had replayed all the primary had written).",
    );
    for r in replicas {
        if let Some(lag) = r.lag_seconds {
            e.sample(
                "hive_store_replica_lag_seconds",
                &[("replica", &r.label)],
                lag,
            );
        }
    }
    e.family(
        "hive_store_replica_queries_total",
        Kind::Counter,
        "Queries sent to the read replica, by whether it answered (a failed one is answered by the primary).",
    );
    for r in replicas {
        for (result, n) in [("answered", r.reads), ("failed", r.failures)] {
            e.sample(
                "hive_store_replica_queries_total",
                &[("replica", &r.label), ("result", result)],
                n as f64,
            );
        }
    }
}
