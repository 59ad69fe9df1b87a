//! The `cpu` workload: does the API keep its latency while the hub's CPU pool is saturated?
//!
//! Two halves of the duration, the same open-loop load of no-op tasks (at `--rate`) in both:
//! first alone, then while closed-loop clients keep the built-in `hive.sha256` executor busy
//! (two digests in flight per pool slot, so the pool never waits). Each half reports its own
//! submit-to-result latency; the second also how many digests the pool finished and how much of
//! the machine the hub used.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hive_proto::RawValue;
use hive_proto::api::{NewTask, TaskStatus};
use indicatif::ProgressBar;

use crate::recorder::{Percentiles, Recorder};
use crate::target::Target;
use crate::workloads;
use hive_metrics::procfs::ProcessSample;

/// Rounds of SHA-256 per digest: a few milliseconds of one core.
pub const ROUNDS: u64 = 20_000;

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuRun {
    pub pool_slots: u32,
    pub rounds_per_digest: u64,
    pub digests: u64,
    pub digests_per_sec: f64,
    /// Hub CPU over the saturated half, as a share of all cores (1.0: every core busy).
    pub hub_cpu_share: Option<f64>,
    /// Submit-to-result latency of the open-loop tasks, without and with the pool saturated.
    pub result_latency_idle_pool_ms: Percentiles,
    pub result_latency_saturated_pool_ms: Percentiles,
    pub errors: u64,
}

fn digest_task(n: u64) -> NewTask {
    let payload = format!(r#"{{"data":"bench-{n}","rounds":{ROUNDS}}}"#);
    NewTask {
        payload: Some(RawValue::from_string(payload).expect("valid JSON")),
        ..NewTask::new("hive.sha256")
    }
}

async fn latency(
    hub: &Target,
    duration: Duration,
    rate: u64,
    bar: &ProgressBar,
) -> anyhow::Result<(Percentiles, u64)> {
    let recorder = Arc::new(Recorder::default());
    // Every tenth task followed to its result: enough samples for a p99 in a few seconds.
    let run = workloads::open_loop(
        std::slice::from_ref(hub),
        &recorder,
        duration,
        rate,
        10,
        bar,
    )
    .await?;
    let result = Percentiles::of(&recorder.result_us.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((result, run.errors + run.timeouts))
}

/// `None` when the hub has no built-in executors (`executors.threads = 0`): nothing to saturate.
pub async fn saturated_pool(
    hub: &Target,
    duration: Duration,
    rate: u64,
    sample: impl Fn() -> Option<ProcessSample>,
    bar: &ProgressBar,
) -> anyhow::Result<Option<CpuRun>> {
    let client = hub.client();
    let Some(slots) = client
        .agents()
        .await?
        .iter()
        .find(|a| a.name == "builtin" && a.capabilities.contains_key("hive.sha256"))
        .map(|a| a.slots)
    else {
        return Ok(None);
    };
    let half = duration / 2;
    let (idle_pool, idle_errors) = latency(hub, half, rate, bar).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let digests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for c in 0..u64::from(slots) * 2 {
        let client = client.clone();
        let (stop, digests, errors) = (stop.clone(), digests.clone(), errors.clone());
        loops.push(tokio::spawn(async move {
            let mut n = c << 32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let done = match client.submit(&digest_task(n)).await {
                    Ok(task) => client.wait(&task.id, Duration::from_secs(60)).await,
                    Err(e) => Err(e),
                };
                match done {
                    Ok(task) if task.status == TaskStatus::Succeeded => {
                        digests.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Let the pool fill before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (before, started, counted) = (sample(), Instant::now(), digests.load(Ordering::Relaxed));
    let (saturated, saturated_errors) = latency(hub, half, rate, bar).await?;
    let (after, seconds) = (sample(), started.elapsed().as_secs_f64());
    let finished = digests.load(Ordering::Relaxed) - counted;
    stop.store(true, Ordering::Relaxed);
    for handle in loops {
        handle.await?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Ok(Some(CpuRun {
        pool_slots: slots,
        rounds_per_digest: ROUNDS,
        digests: finished,
        digests_per_sec: finished as f64 / seconds,
        hub_cpu_share: match (before, after) {
            (Some(b), Some(a)) => Some((a.cpu_us - b.cpu_us) as f64 / 1e6 / seconds / cores),
            _ => None,
        },
        result_latency_idle_pool_ms: idle_pool,
        result_latency_saturated_pool_ms: saturated,
        errors: idle_errors + saturated_errors + errors.load(Ordering::Relaxed),
    }))
}
