//! The report: the JSON document (`--json`) and the plan's success-metrics table with our
//! measured column.

use hive_proto::codec::FrameFormat;

use crate::BenchOptions;
use crate::consensus::ConsensusRun;
use crate::cpu::CpuRun;
use crate::machine::Machine;
use crate::overload::OverloadRun;
use crate::recorder::Percentiles;
use crate::routing::RoutingRun;
use crate::swarm::SwarmRun;
use crate::timeline::Point;
use crate::workloads::{AgentRun, OpenLoopRun, QueuedRun, SoakRun, TaskRun};

/// Everything measured. Latencies in milliseconds, memory in bytes; `null` when not measured
/// (a workload left out with `--workloads`; memory and CPU of an external hub).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub task_ops_per_sec: Option<f64>,
    pub task_ops_single_per_sec: Option<f64>,
    pub agent_ops_per_sec: Option<f64>,
    pub swarm_deliveries_per_sec: Option<f64>,
    pub assign_latency_ms: Option<Percentiles>,
    pub result_latency_ms: Option<Percentiles>,
    /// How late the open-loop sender was against its schedule (not hub latency).
    pub schedule_lag_ms: Option<Percentiles>,
    pub idle_rss_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
    pub rss_growth_bytes_per_million_tasks: Option<f64>,
    /// CPU time (user and system) of the hub per task, of all of them with `--hubs`: the
    /// database server's is not counted.
    pub cpu_us_per_task: Option<f64>,
    pub cpu_us_per_task_single: Option<f64>,
    pub load_avg: Option<f64>,
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub batched: Option<TaskRun>,
    pub single: Option<TaskRun>,
    pub agents: Option<AgentRun>,
    pub swarm: Option<SwarmRun>,
    pub open_loop: Option<OpenLoopRun>,
    /// Hub RSS growth per task left queued (the `queued` workload).
    pub rss_per_queued_task_bytes: Option<f64>,
    pub queued: Option<QueuedRun>,
    /// Hub RSS growth over the `soak` workload, after its first tenth (warm caches).
    pub rss_growth_bytes_over_soak: Option<i64>,
    pub soak: Option<SoakRun>,
    /// The open-loop latency with the CPU pool idle and saturated (the `cpu` workload).
    pub cpu: Option<CpuRun>,
    /// Offered load at shares of the measured capacity (the `overload` workload).
    pub overload: Option<OverloadRun>,
    /// The routing policies compared (the `routing` workload).
    pub routing: Option<RoutingRun>,
    /// The same on the crossover scenario (latency depends on the task and the agent together).
    pub routing_crossover: Option<RoutingRun>,
    /// Plain and consensus tasks compared (the `consensus` workload).
    pub consensus: Option<ConsensusRun>,
    /// The neural routing model's own costs (the `neural` workload).
    pub neural: Option<crate::neural::NeuralRun>,
    /// What the first hub's requests waited for a PostgreSQL connection over the run (none on
    /// SQLite).
    pub store_pool_wait: Option<crate::pool::PoolWait>,
    pub settings: Settings,
    pub machine: Machine,
    pub timeline: Vec<Point>,
}

impl Report {
    /// Nothing measured yet: the start of a report of workloads that need no shared hub.
    pub fn empty(options: &BenchOptions, machine: Machine) -> Report {
        Report {
            task_ops_per_sec: None,
            task_ops_single_per_sec: None,
            agent_ops_per_sec: None,
            swarm_deliveries_per_sec: None,
            assign_latency_ms: None,
            result_latency_ms: None,
            schedule_lag_ms: None,
            idle_rss_bytes: None,
            peak_rss_bytes: None,
            rss_growth_bytes_per_million_tasks: None,
            cpu_us_per_task: None,
            cpu_us_per_task_single: None,
            load_avg: None,
            error_rate: 0.0,
            timeout_rate: 0.0,
            batched: None,
            single: None,
            agents: None,
            swarm: None,
            open_loop: None,
            rss_per_queued_task_bytes: None,
            queued: None,
            rss_growth_bytes_over_soak: None,
            soak: None,
            cpu: None,
            overload: None,
            routing: None,
            routing_crossover: None,
            consensus: None,
            neural: None,
            store_pool_wait: None,
            settings: Settings::new(options, 0),
            machine,
            timeline: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    pub duration_s: f64,
    pub workers: usize,
    pub slots: u32,
    pub batch: usize,
    /// The open-loop rate used, tasks per second.
    pub rate: u64,
    /// True when `rate` was a share of the capacity measured in this run (no `--rate`).
    pub rate_from_capacity: bool,
    pub queued_tasks: u64,
    pub soak_tasks: u64,
    pub external_hub: bool,
    pub workloads: Vec<&'static str>,
    pub frames: FrameFormat,
    pub broadcasters: usize,
    pub hub_config: Option<String>,
    /// `sqlite`, or the PostgreSQL server's URL without its password.
    pub store: String,
}

impl Settings {
    pub fn new(o: &BenchOptions, rate: u64) -> Self {
        Settings {
            duration_s: o.duration.as_secs_f64(),
            workers: o.workers,
            slots: o.slots,
            batch: o.batch,
            rate,
            rate_from_capacity: o.rate.is_none(),
            queued_tasks: o.queued_tasks,
            soak_tasks: o.soak_tasks,
            external_hub: o.hub.is_some(),
            workloads: o.workloads.iter().map(|w| w.name()).collect(),
            frames: o.format,
            broadcasters: o.broadcasters,
            hub_config: o.hub_config.as_ref().map(|p| p.display().to_string()),
            store: match o.store.as_deref() {
                None => "sqlite".into(),
                Some(url) if o.hubs > 1 => format!(
                    "{} hubs on {}, tasks submitted to {}",
                    o.hubs,
                    hive_store::postgres::redact(url),
                    if o.spread { "every hub" } else { "the first" }
                ),
                Some(url) => hive_store::postgres::redact(url),
            },
        }
    }
}

fn rate(v: Option<f64>) -> String {
    v.map_or("not run".into(), |v| format!("{v:.0}/s"))
}

/// Two percentiles of a latency, or "not run".
fn pair(p: &Option<Percentiles>, pick: fn(&Percentiles) -> (f64, f64)) -> String {
    p.as_ref().map_or("not run".into(), |p| {
        let (a, b) = pick(p);
        format!("{a:.2} / {b:.2} ms")
    })
}

fn mib(v: Option<u64>) -> String {
    v.map_or("n/a".into(), |b| format!("{:.1} MB", b as f64 / 1e6))
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.1}{unit}"))
}

impl Report {
    /// The plan's success metrics with its target, ours, and the measured value.
    pub fn table(&self) -> String {
        // The plan's rows need the shared hub; a run of workloads with hubs of their own has none.
        let own_hubs_only = self
            .settings
            .workloads
            .iter()
            .all(|w| crate::Workload::parse(w).is_some_and(crate::Workload::own_hub));
        let plan: Vec<[String; 4]> = vec![
            [
                "task ops, batched, end to end".into(),
                "800/s".into(),
                ">= 100000/s".into(),
                rate(self.task_ops_per_sec),
            ],
            [
                "task ops, one per request".into(),
                "800/s".into(),
                ">= 30000/s".into(),
                rate(self.task_ops_single_per_sec),
            ],
            [
                "agent ops".into(),
                "800/s".into(),
                ">= 50000/s".into(),
                rate(self.agent_ops_per_sec),
            ],
            [
                format!(
                    "swarm deliveries (100 agents, {} in flight)",
                    self.settings.broadcasters
                ),
                "700/s".into(),
                ">= 500000/s".into(),
                rate(self.swarm_deliveries_per_sec),
            ],
            [
                format!("submit->assign p50 / p99 @{}/s", self.settings.rate),
                "p95 < 100 ms".into(),
                "0.2 / 2 ms".into(),
                pair(&self.assign_latency_ms, |p| (p.p50, p.p99)),
            ],
            [
                format!("submit->result p99 / max @{}/s", self.settings.rate),
                "p99 < 200 ms".into(),
                "5 / 50 ms".into(),
                pair(&self.result_latency_ms, |p| (p.p99, p.max)),
            ],
            [
                "load generator lag p50 / p99".into(),
                "-".into(),
                "-".into(),
                pair(&self.schedule_lag_ms, |p| (p.p50, p.p99)),
            ],
            [
                format!(
                    "submit->result p99, CPU pool idle / saturated @{}/s",
                    self.settings.rate
                ),
                "-".into(),
                "p99 <= 5 ms".into(),
                self.cpu.as_ref().map_or("not run".into(), |c| {
                    format!(
                        "{:.2} / {:.2} ms ({:.0} digests/s)",
                        c.result_latency_idle_pool_ms.p99,
                        c.result_latency_saturated_pool_ms.p99,
                        c.digests_per_sec
                    )
                }),
            ],
            [
                "idle RSS after start".into(),
                "35 MB".into(),
                "<= 8 MB".into(),
                mib(self.idle_rss_bytes),
            ],
            [
                format!(
                    "RSS per queued task ({} queued)",
                    self.settings.queued_tasks
                ),
                "-".into(),
                "<= 400 B (1M)".into(),
                self.rss_per_queued_task_bytes
                    .map_or("not run".into(), |b| format!("{b:.0} B")),
            ],
            [
                format!(
                    "RSS growth over the soak ({} tasks)",
                    self.settings.soak_tasks
                ),
                "< 2 MB/hour".into(),
                "<= 1 MB / 10M".into(),
                self.rss_growth_bytes_over_soak
                    .map_or("not run".into(), |b| format!("{:.2} MB", b as f64 / 1e6)),
            ],
            [
                "peak RSS".into(),
                "-".into(),
                "-".into(),
                mib(self.peak_rss_bytes),
            ],
            [
                "RSS growth per 1M tasks".into(),
                "< 2 MB/hour".into(),
                "<= 1 MB / 10M".into(),
                self.rss_growth_bytes_per_million_tasks
                    .map_or("n/a".into(), |b| format!("{:.2} MB", b / 1e6)),
            ],
            [
                "hub CPU per task, batched".into(),
                "-".into(),
                "<= 5 us".into(),
                opt(self.cpu_us_per_task, " us"),
            ],
            [
                "hub CPU per task, single".into(),
                "-".into(),
                "<= 20 us".into(),
                opt(self.cpu_us_per_task_single, " us"),
            ],
            [
                "load average (1 min)".into(),
                "< 3.0".into(),
                "-".into(),
                opt(self.load_avg, ""),
            ],
            [
                "error rate".into(),
                "< 0.5%".into(),
                "0".into(),
                format!("{:.3}%", self.error_rate * 100.0),
            ],
            [
                "timeout rate (sampled waits)".into(),
                "-".into(),
                "-".into(),
                format!("{:.3}%", self.timeout_rate * 100.0),
            ],
        ];
        let mut rows = if own_hubs_only { Vec::new() } else { plan };
        if let Some(run) = &self.overload {
            rows.extend(overload_rows(run));
        }
        if let Some(run) = &self.routing {
            rows.extend(crate::routing::table::rows(run));
        }
        if let Some(run) = &self.routing_crossover {
            rows.extend(crate::routing::table::crossover_rows(
                run,
                self.routing.as_ref(),
            ));
        }
        if let Some(run) = &self.consensus {
            rows.extend(crate::consensus::rows(run));
        }
        if let Some(run) = &self.neural {
            rows.extend(crate::neural::rows(run));
        }
        let headers = ["metric", "plan target", "our target", "measured"];
        let mut widths = headers.map(str::len);
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.len());
            }
        }
        let line = |cells: [&str; 4]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(headers);
        out.push_str(&line(
            widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str),
        ));
        for row in &rows {
            out.push_str(&line(row.each_ref().map(String::as_str)));
        }
        out.push_str(&format!(
            "\n{}\nstore {}; {} workers x {} slots; batch {}; {} s per workload; assign latency from {} tasks, result latency from {} sampled waits\n",
            self.machine.describe(), self.settings.store, self.settings.workers, self.settings.slots,
            self.settings.batch, self.settings.duration_s,
            self.assign_latency_ms.map_or(0, |p| p.count),
            self.result_latency_ms.map_or(0, |p| p.count),
        ));
        if let Some(pool) = self.store_pool_wait {
            out.push_str(&format!(
                "store pool (first hub): {} connections handed out, {:.3} ms waited for one on average\n",
                pool.acquired, pool.mean_wait_ms
            ));
        }
        out
    }
}

/// One row per offered share; the targets apply at 300% (`our target`), RSS against 100%.
fn overload_rows(run: &OverloadRun) -> Vec<[String; 4]> {
    let at_capacity = run
        .steps
        .iter()
        .find(|s| s.share == 1.0)
        .and_then(|s| s.rss_bytes);
    let mut rows = vec![[
        "overload: capacity (single, closed loop)".into(),
        "-".into(),
        "-".into(),
        format!("{:.0}/s", run.capacity_per_sec),
    ]];
    for s in &run.steps {
        let target = if s.share >= 3.0 {
            "goodput >= 90%, p99 <= 50 ms, refusals < 5 ms, RSS < 2x, 0 lost"
        } else {
            "0 lost"
        };
        let rejected = s
            .rejected_latency_ms
            .map_or("-".into(), |p| format!("{:.2} ms", p.p99));
        let rss = match (s.rss_bytes, at_capacity) {
            (Some(now), Some(base)) => format!(
                "{:.1} MB ({:.2}x)",
                now as f64 / 1e6,
                now as f64 / base.max(1) as f64
            ),
            (Some(now), None) => format!("{:.1} MB", now as f64 / 1e6),
            _ => "n/a".into(),
        };
        rows.push([
            format!(
                "overload {:.0}% (sent {:.0}/s): goodput, accepted p99, refused {} p99, RSS, lost, \
                 generator wait p99",
                s.share * 100.0,
                s.sent_per_sec,
                s.rejected
            ),
            "-".into(),
            target.into(),
            format!(
                "{:.0}/s ({:.0}%), {:.2} ms, {rejected}, {rss}, {}, {:.1} ms",
                s.goodput_per_sec,
                s.goodput_per_sec / run.capacity_per_sec.max(1.0) * 100.0,
                s.accepted_latency_ms.p99,
                s.lost,
                s.generator_wait_ms.p99
            ),
        ]);
    }
    rows
}
