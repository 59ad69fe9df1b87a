//! `hive bench`: a real hub, real workers, real sockets, and the plan's success-metrics table
//! from what was measured.
//!
//! Without `--hub`, the hub is a `hive serve` child process with a temporary data directory, so
//! its memory and CPU are read from `/proc` apart from the load generator. Workers and load
//! generators are tasks inside this process that speak the real protocols over loopback; they
//! share the machine's cores with the hub, as the targets require.
//!
//! # Layout
//! - [`hub`]: the hub under test; [`process`]: `/proc` readings.
//! - [`load`]: no-op workers and task bodies; [`recorder`]: histograms and counters.
//! - [`workloads`], [`swarm`]: the measured runs; [`timeline`]: throughput and latency over time.
//! - [`report`]: the table and the JSON; [`plot`]: the SVG.

pub mod hub;
pub mod load;
pub mod plot;
pub mod process;
pub mod recorder;
pub mod report;
pub mod swarm;
pub mod timeline;
pub mod workloads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use hub::HubUnderTest;
use load::Workers;
use recorder::{Percentiles, Recorder};
pub use report::Report;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// An external hub to measure instead of spawning one.
    pub hub: Option<String>,
    /// The `hive` executable to spawn as the hub.
    pub hive: PathBuf,
    /// How long each workload runs.
    pub duration: Duration,
    pub workers: usize,
    pub slots: u32,
    pub batch: usize,
    /// Offered rate of the open-loop latency workload, tasks per second.
    pub rate: u64,
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
    let hub = match &options.hub {
        Some(url) => HubUnderTest::external(url),
        None => HubUnderTest::spawn(&options.hive).await?,
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = hub.sample();
    let recorder = Arc::new(Recorder::default());
    let timeline = timeline::Timeline::start(recorder.clone());
    let workers = Workers::spawn(&hub.url, options.workers, options.slots, recorder.clone());
    let outcome = measure(&options, &hub, &recorder, &timeline).await;
    workers.stop().await;
    let points = timeline.stop().await;
    hub.stop().await;
    let mut report = outcome?;
    report.idle_rss_bytes = idle.map(|s| s.rss_bytes);
    report.timeline = points;
    Ok(report)
}

async fn measure(
    options: &BenchOptions,
    hub: &HubUnderTest,
    recorder: &Arc<Recorder>,
    timeline: &timeline::Timeline,
) -> anyhow::Result<Report> {
    let url = hub.url.as_str();
    let short = options.duration.min(Duration::from_secs(2));

    timeline.phase("warm-up");
    let bar = phase_bar("warm-up");
    workloads::tasks_end_to_end(url, recorder, short, options.batch, 4, &bar).await?;
    bar.finish_and_clear();
    let warm = hub.sample();

    timeline.phase("batched");
    let bar = phase_bar("batched");
    let batched =
        workloads::tasks_end_to_end(url, recorder, options.duration, options.batch, 4, &bar)
            .await?;
    bar.finish_with_message(format!(
        "{:.0} tasks/s end to end",
        batched.end_to_end_per_sec
    ));
    let after_batched = hub.sample();

    timeline.phase("single");
    let bar = phase_bar("single");
    let single = workloads::tasks_end_to_end(url, recorder, options.duration, 1, 64, &bar).await?;
    bar.finish_with_message(format!(
        "{:.0} tasks/s end to end",
        single.end_to_end_per_sec
    ));
    let after_single = hub.sample();

    timeline.phase("agents");
    let bar = phase_bar("agents");
    let agents = workloads::agent_ops(url, options.duration, 8, &bar).await?;
    bar.finish_with_message(format!("{:.0} agent ops/s", agents.ops_per_sec));

    timeline.phase("swarm");
    let bar = phase_bar("swarm");
    let swarm = swarm::fan_out(url, 100, options.duration, 8, &bar).await?;
    bar.finish_with_message(format!(
        "{:.0} deliveries/s to 100 agents",
        swarm.deliveries_per_sec
    ));

    timeline.phase("open-loop");
    let bar = phase_bar("open loop");
    let open =
        workloads::open_loop(url, recorder, options.duration, options.rate, 50, &bar).await?;
    bar.finish_with_message(format!("{} tasks offered at {}/s", open.sent, options.rate));
    let load_avg = process::load_avg();
    let end = hub.sample();

    let cpu_per_task = |before: Option<process::ProcessSample>,
                        after: Option<process::ProcessSample>,
                        tasks: u64| {
        Some((after?.cpu_us - before?.cpu_us) as f64 / tasks.max(1) as f64)
    };
    let requests = batched.tasks / options.batch.max(1) as u64
        + single.tasks
        + agents.ops
        + swarm.messages
        + open.sent;
    let errors = batched.errors + single.errors + agents.errors + swarm.errors + open.errors;
    Ok(Report {
        task_ops_per_sec: batched.end_to_end_per_sec,
        task_ops_single_per_sec: single.end_to_end_per_sec,
        agent_ops_per_sec: agents.ops_per_sec,
        swarm_deliveries_per_sec: Some(swarm.deliveries_per_sec),
        assign_latency_ms: Percentiles::of(&recorder.assign_us.lock().expect("not poisoned")),
        result_latency_ms: Percentiles::of(&recorder.result_us.lock().expect("not poisoned")),
        schedule_lag_ms: Percentiles::of(&recorder.schedule_lag_us.lock().expect("not poisoned")),
        idle_rss_bytes: None,
        peak_rss_bytes: end.map(|s| s.peak_rss_bytes),
        rss_growth_bytes_per_million_tasks: match (warm, after_batched) {
            (Some(w), Some(a)) => {
                Some((a.rss_bytes as f64 - w.rss_bytes as f64) / batched.tasks.max(1) as f64 * 1e6)
            }
            _ => None,
        },
        cpu_us_per_task: cpu_per_task(warm, after_batched, batched.tasks),
        cpu_us_per_task_single: cpu_per_task(after_batched, after_single, single.tasks),
        load_avg,
        error_rate: errors as f64 / requests.max(1) as f64,
        timeout_rate: open.timeouts as f64 / open.sampled.max(1) as f64,
        batched,
        single,
        agents,
        swarm,
        open_loop: open,
        settings: report::Settings::from(options),
        machine: report::Machine::read(),
        timeline: Vec::new(),
    })
}
