//! `hive bench`: a real hub, real workers, real sockets, and the plan's success-metrics table
//! from what was measured.
//!
//! Without `--hub`, the hub is a `hive serve` child process with a temporary data directory, so
//! its memory and CPU are read from `/proc` apart from the load generator. Workers and load
//! generators are tasks inside this process that speak the real protocols over loopback; they
//! share the machine's cores with the hub, as the targets require.
//!
//! # Layout
//! - [`hub`]: the hub under test, read through `hive_metrics::procfs`; [`target`]: how the
//!   bench's clients reach it (URL, token, TLS trust).
//! - [`load`]: no-op workers and task bodies; [`recorder`]: histograms and counters.
//! - [`workloads`], [`swarm`], [`cpu`], [`overload`]: the measured runs; [`timeline`]: throughput
//!   and latency over time.
//! - [`routing`]: the routing policies compared on one simulated swarm, a hub per policy.
//! - [`report`]: the table and the JSON; [`plot`]: the SVG.

pub mod consensus;
pub mod cpu;
pub mod hub;
pub mod load;
pub mod machine;
pub mod neural;
pub mod overload;
pub mod plot;
pub mod pool;
pub mod recorder;
pub mod report;
pub mod routing;
pub mod swarm;
pub mod target;
pub mod timeline;
pub mod workloads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hive_metrics::procfs as process;
use hive_proto::codec::FrameFormat;
use indicatif::{ProgressBar, ProgressStyle};

use hub::HubUnderTest;
use load::Workers;
use recorder::{Percentiles, Recorder};
pub use report::Report;
use target::Target;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// An external hub to measure instead of spawning one, with its token and trust.
    pub hub: Option<target::Target>,
    /// The `hive` executable to spawn as the hub.
    pub hive: PathBuf,
    /// How long each workload runs.
    pub duration: Duration,
    pub workers: usize,
    pub slots: u32,
    pub batch: usize,
    /// Offered rate of the open-loop latency workloads, tasks per second; `None`: a quarter of the
    /// single-task capacity measured in the same run.
    pub rate: Option<u64>,
    /// Tasks left queued by the `queued` workload (memory per queued task).
    pub queued_tasks: u64,
    /// Tasks processed by the `soak` workload (memory growth under steady load).
    pub soak_tasks: u64,
    /// Which workloads to run (a warm-up always runs first).
    pub workloads: Vec<Workload>,
    /// The frames the workers and swarm members ask for.
    pub format: FrameFormat,
    /// Concurrent broadcasters in the swarm workload.
    pub broadcasters: usize,
    /// Passed to the spawned hub as `--config`.
    pub hub_config: Option<PathBuf>,
    /// A PostgreSQL server for the spawned hubs (each on a new schema): `--store`, or the
    /// `[store] url` of `--hub-config`; `None`: SQLite.
    pub store: Option<String>,
    /// Hubs started on the one schema (with `store`): workers spread across them, load sent
    /// to the first unless `spread`.
    pub hubs: usize,
    /// With several hubs: the submitters spread over all of them, as behind a load balancer
    /// (each submitter keeps to one hub), instead of all submitting to the first.
    pub spread: bool,
    /// Seeds the routing workload's arrivals, failures, join order and policies.
    pub seed: u64,
    /// Slots of each agent in the routing workload's pool.
    pub routing_slots: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Batched,
    Single,
    Agents,
    Swarm,
    Latency,
    Queued,
    /// Not in the default set: ten million tasks take minutes.
    Soak,
    /// API latency while the built-in executors saturate the CPU pool.
    Cpu,
    /// Not in the default set: open loop at 50-300% of the measured capacity, four durations.
    Overload,
    /// Not in the default set: the routing policies on a simulated swarm, a hub per policy.
    Routing,
    /// Not in the default set: plain against 3-replica consensus tasks, on a hub of its own.
    Consensus,
    /// Not in the default set: the neural routing model's forward pass and training, in this
    /// process (no hub).
    Neural,
}

impl Workload {
    pub const ALL: [Workload; 12] = [
        Workload::Batched,
        Workload::Single,
        Workload::Agents,
        Workload::Swarm,
        Workload::Latency,
        Workload::Queued,
        Workload::Soak,
        Workload::Cpu,
        Workload::Overload,
        Workload::Routing,
        Workload::Consensus,
        Workload::Neural,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Batched => "batched",
            Workload::Single => "single",
            Workload::Agents => "agents",
            Workload::Swarm => "swarm",
            Workload::Latency => "latency",
            Workload::Queued => "queued",
            Workload::Soak => "soak",
            Workload::Cpu => "cpu",
            Workload::Overload => "overload",
            Workload::Routing => "routing",
            Workload::Consensus => "consensus",
            Workload::Neural => "neural",
        }
    }

    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// Runs on hubs of its own, not the shared one.
    pub fn own_hub(self) -> bool {
        matches!(
            self,
            Workload::Routing | Workload::Consensus | Workload::Neural
        )
    }
}

fn phase_bar(name: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:>10} {elapsed:>4} {msg}")
            .expect("valid template"),
    );
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub async fn run(options: BenchOptions) -> anyhow::Result<Report> {
    // The machine first: no hub is writing to the disk its fsync timing uses.
    let database = machine::Database::of(&options);
    let postgres = machine::measured_postgres(&options).map(str::to_string);
    let machine =
        tokio::task::spawn_blocking(move || machine::Machine::read(database, postgres.as_deref()))
            .await?;
    // The routing workload starts a hub of its own per policy; it runs first, apart.
    let (routing, routing_crossover) = if options.workloads.contains(&Workload::Routing) {
        if options.hub.is_some() {
            anyhow::bail!(
                "the routing workload starts its own hubs (one per policy): leave out --hub"
            );
        }
        let bar = phase_bar("routing");
        let routing_options = routing::RoutingOptions {
            hive: &options.hive,
            duration: options.duration,
            slots: options.routing_slots,
            seed: options.seed,
        };
        let shifting =
            routing::compare(&routing_options, routing::Scenario::Shifting, &bar).await?;
        let crossover =
            routing::compare(&routing_options, routing::Scenario::Crossover, &bar).await?;
        bar.finish_and_clear();
        (Some(shifting), Some(crossover))
    } else {
        (None, None)
    };
    // So does the consensus workload (its agents must be the only ones of their capability).
    let consensus = if options.workloads.contains(&Workload::Consensus) {
        if options.hub.is_some() {
            anyhow::bail!("the consensus workload starts its own hub: leave out --hub");
        }
        let bar = phase_bar("consensus");
        let run = consensus::measure(&options.hive, options.duration, &bar).await?;
        bar.finish_and_clear();
        Some(run)
    } else {
        None
    };
    let neural = if options.workloads.contains(&Workload::Neural) {
        let bar = phase_bar("neural");
        bar.set_message("forward pass and training, on the CPU");
        let run = tokio::task::spawn_blocking(neural::measure).await?;
        bar.finish_and_clear();
        Some(run)
    } else {
        None
    };
    if options.workloads.iter().all(|w| w.own_hub()) {
        return Ok(Report {
            neural,
            routing,
            routing_crossover,
            consensus,
            ..Report::empty(&options, machine)
        });
    }
    let mut report = run_on_one_hub(&options, machine).await?;
    report.routing = routing;
    report.routing_crossover = routing_crossover;
    report.consensus = consensus;
    report.neural = neural;
    Ok(report)
}

async fn run_on_one_hub(
    options: &BenchOptions,
    machine: machine::Machine,
) -> anyhow::Result<Report> {
    let hubs = match &options.hub {
        Some(target) => vec![HubUnderTest::external(target.clone())],
        None => {
            HubUnderTest::spawn_several(
                &options.hive,
                options.hub_config.as_deref(),
                options.store.as_deref(),
                options.hubs.max(1),
            )
            .await?
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hub = &hubs[0];
    let idle = hub.sample();
    let recorder = Arc::new(Recorder::default());
    let timeline = timeline::Timeline::start(recorder.clone());
    // The workers are spread over the hubs (3, 3, 2 of 8 on three), named in one sequence.
    let mut named = 0;
    let workers: Vec<Workers> = hubs
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let count =
                options.workers / hubs.len() + usize::from(i < options.workers % hubs.len());
            named += count;
            Workers::spawn(
                &h.target,
                named - count,
                count,
                options.slots,
                options.format,
                recorder.clone(),
            )
        })
        .collect();
    // Where the tasks are submitted: the first hub, or each of them as behind a load balancer.
    let fronts: Vec<Target> = if options.spread {
        hubs.iter().map(|h| h.target.clone()).collect()
    } else {
        vec![hub.target.clone()]
    };
    let outcome = measure(options, &hubs, &fronts, &recorder, &timeline, machine).await;
    for w in workers {
        w.stop().await;
    }
    let points = timeline.stop().await;
    for h in hubs {
        h.stop().await;
    }
    let mut report = outcome?;
    report.idle_rss_bytes = idle.map(|s| s.rss_bytes);
    report.timeline = points;
    Ok(report)
}

async fn measure(
    options: &BenchOptions,
    hubs: &[HubUnderTest],
    fronts: &[Target],
    recorder: &Arc<Recorder>,
    timeline: &timeline::Timeline,
    machine: machine::Machine,
) -> anyhow::Result<Report> {
    let hub = &hubs[0];
    let target = &hub.target;
    let run = |w: Workload| options.workloads.contains(&w);
    let duration = options.duration;

    let pool_before = pool::read(target).await;
    timeline.phase("warm-up");
    let bar = phase_bar("warm-up");
    let short = duration.min(Duration::from_secs(2));
    workloads::tasks_end_to_end(fronts, recorder, short, options.batch, 4, &bar).await?;
    bar.finish_and_clear();
    let warm = hub.sample();
    let warm_cpu = cpu_us(hubs);

    let mut batched = None;
    let mut after_batched = None;
    let mut after_batched_cpu = None;
    if run(Workload::Batched) {
        timeline.phase("batched");
        let bar = phase_bar("batched");
        let r =
            workloads::tasks_end_to_end(fronts, recorder, duration, options.batch, 4, &bar).await?;
        bar.finish_with_message(format!("{:.0} tasks/s end to end", r.end_to_end_per_sec));
        batched = Some(r);
        after_batched = hub.sample();
        after_batched_cpu = cpu_us(hubs);
    }

    let mut single = None;
    let mut cpu_single = None;
    if run(Workload::Single) {
        timeline.phase("single");
        let bar = phase_bar("single");
        let before = cpu_us(hubs);
        let r = workloads::tasks_end_to_end(fronts, recorder, duration, 1, 64, &bar).await?;
        bar.finish_with_message(format!("{:.0} tasks/s end to end", r.end_to_end_per_sec));
        cpu_single = cpu_per_task(before, cpu_us(hubs), r.tasks);
        single = Some(r);
    }

    let mut agents = None;
    if run(Workload::Agents) {
        timeline.phase("agents");
        let bar = phase_bar("agents");
        let r = workloads::agent_ops(target, duration, 32, &bar).await?;
        bar.finish_with_message(format!("{:.0} agent ops/s", r.ops_per_sec));
        agents = Some(r);
    }

    let mut swarm = None;
    if run(Workload::Swarm) {
        timeline.phase("swarm");
        let bar = phase_bar("swarm");
        let r = swarm::fan_out(
            target,
            100,
            duration,
            options.broadcasters.max(1),
            options.format,
            &bar,
        )
        .await?;
        bar.finish_with_message(format!(
            "{:.0} deliveries/s to 100 agents",
            r.deliveries_per_sec
        ));
        swarm = Some(r);
    }

    // The single-task capacity on this machine: the open-loop rates are shares of it.
    let needs_capacity = options.rate.is_none() && (run(Workload::Latency) || run(Workload::Cpu))
        || run(Workload::Overload);
    let capacity = match (single, needs_capacity) {
        (Some(r), _) => Some(r.end_to_end_per_sec),
        (None, true) => {
            timeline.phase("capacity");
            let bar = phase_bar("capacity");
            let r = workloads::tasks_end_to_end(fronts, recorder, short, 1, 64, &bar).await?;
            bar.finish_with_message(format!("{:.0} tasks/s single", r.end_to_end_per_sec));
            Some(r.end_to_end_per_sec)
        }
        (None, false) => None,
    };
    let rate = options
        .rate
        .or_else(|| capacity.map(|c| (c * LATENCY_SHARE).round() as u64))
        .unwrap_or(1)
        .max(1);

    let mut open = None;
    if run(Workload::Latency) {
        timeline.phase("open-loop");
        let bar = phase_bar("open loop");
        let r = workloads::open_loop(fronts, recorder, duration, rate, 50, &bar).await?;
        bar.finish_with_message(format!("{} tasks offered at {rate}/s", r.sent));
        open = Some(r);
    }
    let load_avg = process::load_avg();

    let mut cpu = None;
    if run(Workload::Cpu) {
        timeline.phase("cpu");
        let bar = phase_bar("cpu pool");
        cpu = cpu::saturated_pool(target, duration, rate, || hub.sample(), &bar).await?;
        bar.finish_with_message(match &cpu {
            Some(r) => format!(
                "result p99 {:.2} ms idle pool, {:.2} ms saturated ({:.0} digests/s)",
                r.result_latency_idle_pool_ms.p99,
                r.result_latency_saturated_pool_ms.p99,
                r.digests_per_sec
            ),
            None => "skipped: the hub has no built-in executors (executors.threads = 0)".into(),
        });
    }

    let mut soak = None;
    if run(Workload::Soak) {
        timeline.phase("soak");
        let bar = phase_bar("soak");
        let every = (options.soak_tasks / 10).max(1);
        let r = workloads::soak(
            target,
            recorder,
            options.soak_tasks,
            every,
            || hub.sample(),
            &bar,
        )
        .await?;
        bar.finish_with_message(format!("{} tasks in {:.0} s", r.tasks, r.seconds));
        soak = Some(r);
    }

    let mut overload = None;
    if let (true, Some(capacity)) = (run(Workload::Overload), capacity) {
        timeline.phase("overload");
        let bar = phase_bar("overload");
        let r = overload::overload(target, capacity, duration, || hub.sample(), &bar).await?;
        let last = r.steps.last();
        bar.finish_with_message(format!(
            "at {:.0}% of {capacity:.0}/s: goodput {:.0}/s",
            last.map_or(0.0, |s| s.share * 100.0),
            last.map_or(0.0, |s| s.goodput_per_sec)
        ));
        overload = Some(r);
    }

    // Last: it leaves its tasks queued in the hub.
    let mut queued = None;
    if run(Workload::Queued) {
        timeline.phase("queued");
        let bar = phase_bar("queued");
        let r =
            workloads::queued_memory(target, options.queued_tasks, || hub.sample(), &bar).await?;
        bar.finish_with_message(format!("{} tasks queued", r.tasks));
        queued = Some(r);
    }
    let end = hub.sample();

    let requests = batched.map_or(0, |r| r.tasks / options.batch.max(1) as u64)
        + single.map_or(0, |r| r.tasks)
        + agents.map_or(0, |r| r.ops)
        + swarm.map_or(0, |r| r.messages)
        + open.map_or(0, |r| r.sent)
        + overload.as_ref().map_or(0, |r| {
            r.steps
                .iter()
                .map(|s| s.accepted + s.rejected + s.failed)
                .sum()
        });
    let errors = batched.map_or(0, |r| r.errors)
        + single.map_or(0, |r| r.errors)
        + agents.map_or(0, |r| r.errors)
        + swarm.map_or(0, |r| r.errors)
        + open.map_or(0, |r| r.errors)
        + queued.map_or(0, |r| r.errors)
        + cpu.map_or(0, |r| r.errors)
        + soak.as_ref().map_or(0, |r| r.errors)
        + overload
            .as_ref()
            .map_or(0, |r| r.steps.iter().map(|s| s.failed).sum());
    let store_pool_wait = pool::between(pool_before, pool::read(target).await);
    let percentiles = |h: &std::sync::Mutex<hdrhistogram::Histogram<u64>>| {
        open.map(|_| Percentiles::of(&h.lock().unwrap_or_else(|p| p.into_inner())))
    };
    Ok(Report {
        task_ops_per_sec: batched.map(|r| r.end_to_end_per_sec),
        task_ops_single_per_sec: single.map(|r| r.end_to_end_per_sec),
        agent_ops_per_sec: agents.map(|r| r.ops_per_sec),
        swarm_deliveries_per_sec: swarm.map(|r| r.deliveries_per_sec),
        assign_latency_ms: percentiles(&recorder.assign_us),
        result_latency_ms: percentiles(&recorder.result_us),
        schedule_lag_ms: percentiles(&recorder.schedule_lag_us),
        idle_rss_bytes: None,
        peak_rss_bytes: end.map(|s| s.peak_rss_bytes),
        // One hub's growth per task: with several, the first hub's memory is known but not
        // its share of the tasks.
        rss_growth_bytes_per_million_tasks: match (warm, after_batched, batched) {
            (Some(w), Some(a), Some(b)) if hubs.len() == 1 => {
                Some((a.rss_bytes as f64 - w.rss_bytes as f64) / b.tasks.max(1) as f64 * 1e6)
            }
            _ => None,
        },
        cpu_us_per_task: batched.and_then(|b| cpu_per_task(warm_cpu, after_batched_cpu, b.tasks)),
        cpu_us_per_task_single: cpu_single,
        load_avg,
        error_rate: errors as f64 / requests.max(1) as f64,
        timeout_rate: open.map_or(0.0, |r| r.timeouts as f64 / r.sampled.max(1) as f64),
        batched,
        single,
        agents,
        swarm,
        open_loop: open,
        rss_per_queued_task_bytes: queued.and_then(|r| r.rss_per_queued_task_bytes),
        rss_growth_bytes_over_soak: soak.as_ref().and_then(|r| r.rss_growth_bytes),
        soak,
        queued,
        cpu,
        overload,
        routing: None,
        routing_crossover: None,
        consensus: None,
        neural: None,
        store_pool_wait,
        settings: report::Settings::new(options, rate),
        machine,
        timeline: Vec::new(),
    })
}

/// The open-loop latency workloads offer this share of the measured single-task capacity by
/// default: loaded, but with room, so the latency is the hub's and not a queue's.
pub const LATENCY_SHARE: f64 = 0.25;

fn cpu_per_task(before: Option<u64>, after: Option<u64>, tasks: u64) -> Option<f64> {
    Some((after? - before?) as f64 / tasks.max(1) as f64)
}

/// The CPU time of every hub started for the run (with `--hubs`, all of them: the tasks are
/// spread over them); `None` for an external hub.
fn cpu_us(hubs: &[HubUnderTest]) -> Option<u64> {
    hubs.iter().map(|h| h.sample().map(|s| s.cpu_us)).sum()
}
