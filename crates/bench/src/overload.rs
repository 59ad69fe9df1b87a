//! `overload`: how the hub behaves past its capacity.
//!
//! The hub's capacity is the single-task rate it completes end to end, closed loop (the `single`
//! workload's figure when that ran in the same bench, else measured here the same way). Then single
//! tasks are offered open loop at 50%, 100%, 150% and 300% of it, each for the workload's
//! duration, through a client that does not retry (a 503 or 429 is counted, not waited out). Per
//! step: what was offered and what the generator managed to send (it shares the cores with the
//! hub, so at 300% it may fall short, and the report says so), accepted, rejected and failed
//! requests, goodput (tasks that succeeded during the step, per second), the latency of accepted
//! requests (request to its 201) and of rejections, and the hub's RSS at the step's end. After a
//! step the backlog is left to drain (bounded); an accepted task that never succeeds is lost.
//!
//! Offered load is a share of the capacity measured on this machine, so the table means the same
//! on a faster or slower one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hive_client::ClientError;
use indicatif::ProgressBar;

use crate::load;
use crate::recorder::{Percentiles, histogram};
use crate::target::Target;
use crate::workloads::succeeded;

/// The shares of capacity offered, in order.
pub const SHARES: [f64; 4] = [0.5, 1.0, 1.5, 3.0];

/// Requests the generator keeps open at once: four times the closed-loop clients that measure
/// the capacity. Fewer than the hub admits by default (1,024 submits in flight), so with default
/// bounds this, not the hub, limits what reaches it; a hub configured with a lower bound (BENCHMARKS.md
/// runs one with 128) shows its admission control at work.
pub const CONNECTIONS: usize = 256;

#[derive(Debug, Clone, serde::Serialize)]
pub struct OverloadStep {
    /// Offered load as a share of the capacity.
    pub share: f64,
    pub offered_per_sec: f64,
    /// What the generator actually sent during the step (a request due while all its
    /// connections were busy is sent later, or after the step).
    pub sent_per_sec: f64,
    pub accepted: u64,
    /// Answered 503 or 429 (refused at once, nothing accepted).
    pub rejected: u64,
    /// Any other error: a client-side failure or an unexpected answer.
    pub failed: u64,
    /// Tasks that succeeded during the step, per second.
    pub goodput_per_sec: f64,
    /// From sending the request to its answer: the hub's side.
    pub accepted_latency_ms: Percentiles,
    pub rejected_latency_ms: Option<Percentiles>,
    /// From when a request was due to when it was sent: the generator's own wait for one of
    /// its [`CONNECTIONS`] (it shares the cores with the hub). Counted apart, not hidden.
    pub generator_wait_ms: Percentiles,
    /// The hub's RSS, the larger of its value at the step's end and once every request due in
    /// the step was answered.
    pub rss_bytes: Option<u64>,
    /// Accepted tasks that had not succeeded when the backlog stopped draining (60 s at most).
    pub lost: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OverloadRun {
    pub capacity_per_sec: f64,
    pub steps: Vec<OverloadStep>,
}

pub async fn overload(
    hub: &Target,
    capacity_per_sec: f64,
    duration: Duration,
    sample: impl Fn() -> Option<hive_metrics::procfs::ProcessSample>,
    bar: &ProgressBar,
) -> anyhow::Result<OverloadRun> {
    let mut steps = Vec::new();
    for share in SHARES {
        let rate = (capacity_per_sec * share).max(1.0);
        bar.set_message(format!("{:.0}% of capacity: {rate:.0}/s", share * 100.0));
        steps.push(step(hub, share, rate, duration, &sample).await?);
    }
    Ok(OverloadRun {
        capacity_per_sec,
        steps,
    })
}

async fn step(
    hub: &Target,
    share: f64,
    rate: f64,
    duration: Duration,
    sample: &impl Fn() -> Option<hive_metrics::procfs::ProcessSample>,
) -> anyhow::Result<OverloadStep> {
    // Rejections are what this measures: counted, not waited out.
    let client = hub.client().with_busy_budget(Duration::ZERO);
    let before = succeeded(&client).await?;
    let accepted_us = Arc::new(Mutex::new(histogram()));
    let waited_us = Arc::new(Mutex::new(histogram()));
    let rejected_us = Arc::new(Mutex::new(histogram()));
    let (accepted, rejected, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    // At most this many requests open at once, as wrk2 or k6 hold a fixed set of connections: a
    // generator that opened a connection per late request would spend the shared cores on
    // handshakes, and measure its own collapse. A request due while all are busy waits for one;
    // that wait is reported apart (`generator_wait_ms`).
    let connections = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let end = start + duration;
    let mut next = start;
    let sent = Arc::new(AtomicU64::new(0));
    let mut handles = tokio::task::JoinSet::new();
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        // Open loop: everything due by now goes, however slowly the answers come back.
        while next <= now && next < end {
            next += interval;
            let due = next - interval;
            let sent = sent.clone();
            let client = client.clone();
            let connections = connections.clone();
            let (accepted_us, rejected_us) = (accepted_us.clone(), rejected_us.clone());
            let waited_us = waited_us.clone();
            let (accepted, rejected, failed) = (accepted.clone(), rejected.clone(), failed.clone());
            handles.spawn(async move {
                let _connection = connections.acquire_owned().await;
                let t0 = Instant::now();
                if t0 < end {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                let record = |h: &Mutex<Histogram<u64>>, us: u64| {
                    let _ = h
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(us.max(1));
                };
                record(&waited_us, t0.duration_since(due).as_micros() as u64);
                let outcome = client.submit(&load::task(0)).await;
                let us = t0.elapsed().as_micros() as u64;
                match outcome {
                    Ok(_) => {
                        record(&accepted_us, us);
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(ClientError::Api { status, .. })
                        if status.as_u16() == 503 || status.as_u16() == 429 =>
                    {
                        record(&rejected_us, us);
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while handles.try_join_next().is_some() {}
    }
    let window = start.elapsed().as_secs_f64();
    let done_in_window = succeeded(&client).await?.saturating_sub(before);
    let rss_at_end = sample().map(|s| s.rss_bytes);
    while handles.join_next().await.is_some() {}
    let rss_bytes = rss_at_end.max(sample().map(|s| s.rss_bytes));
    let accepted = accepted.load(Ordering::Relaxed);
    // The backlog drains before the next step; what never succeeds is lost.
    let drain_until = Instant::now() + Duration::from_secs(60);
    let mut finished = succeeded(&client).await?.saturating_sub(before);
    while finished < accepted && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        finished = succeeded(&client).await?.saturating_sub(before);
    }
    let percentiles =
        |h: &Mutex<Histogram<u64>>| Percentiles::of(&h.lock().unwrap_or_else(|p| p.into_inner()));
    let rejected = rejected.load(Ordering::Relaxed);
    Ok(OverloadStep {
        share,
        offered_per_sec: rate,
        sent_per_sec: sent.load(Ordering::Relaxed) as f64 / window,
        accepted,
        rejected,
        failed: failed.load(Ordering::Relaxed),
        goodput_per_sec: done_in_window as f64 / window,
        accepted_latency_ms: percentiles(&accepted_us),
        rejected_latency_ms: (rejected > 0).then(|| percentiles(&rejected_us)),
        generator_wait_ms: percentiles(&waited_us),
        rss_bytes,
        lost: accepted.saturating_sub(finished),
    })
}
