//! `routing`: the same swarm, the same offered load and the same random seed through each routing
//! policy, one fresh hub per policy (nothing learned carries over), and one table.
//!
//! The pool ([`pool`]) is twelve agents of one capability; tasks arrive open loop (Poisson, from
//! the seed) at [`LOAD_SHARE`] of the pool's capacity, measured first on a hub of its own: the
//! rate of successful results while a backlog keeps every slot busy. (Its nominal capacity, from
//! the latencies alone, is higher: each attempt also waits for its assignment and its result to
//! travel and be committed, which for the 1 ms agents is as long as the work.) Halfway through, the first fast
//! agent becomes [`SLOWDOWN`] times slower; at three quarters it recovers. Per policy: completion
//! time (submit to the end of the successful attempt, retries and their backoff included; the
//! result's trip back to the hub, the same for every policy, is not), failed attempts,
//! throughput, and how long the policy took to move traffic off the slowed agent and back
//! ([`adaptation`]).

pub mod adaptation;
pub mod plot;
pub mod pool;
pub mod table;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hive_client::HubClient;
use hive_core::random::Rng;
use hive_proto::RawValue;
use hive_proto::api::NewTask;
use indicatif::ProgressBar;

use crate::hub::HubUnderTest;
use crate::recorder::Percentiles;
use pool::{Pool, Profile};

/// Offered load as a share of the pool's nominal capacity.
pub const LOAD_SHARE: f64 = 0.7;
/// How much slower the slowed agent becomes.
pub const SLOWDOWN: u64 = 20;
/// The policies compared, in the table's order.
pub const POLICIES: [&str; 3] = ["least_loaded", "p2c_ewma", "learned"];
/// How long tasks still running at the end may take to finish (retries back off 1-2 s).
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, serde::Serialize)]
pub struct RoutingRun {
    pub seed: u64,
    pub slots: u32,
    pub pool: Vec<Profile>,
    /// Attempts per second the pool would run at full use from its latencies and slots alone.
    pub nominal_capacity_per_sec: f64,
    /// Successful results per second measured with every slot busy (a backlog queued).
    pub capacity_per_sec: f64,
    pub offered_per_sec: f64,
    pub duration_s: f64,
    pub policies: Vec<PolicyRun>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyRun {
    pub policy: String,
    pub submitted: u64,
    pub succeeded: u64,
    /// Submits the hub did not accept.
    pub errors: u64,
    pub failed_attempts: u64,
    /// Tasks that succeeded per second of the offered period.
    pub throughput_per_sec: f64,
    pub completion_mean_ms: f64,
    pub completion_ms: Percentiles,
    /// From the slow-down to the traffic moved off the slowed agent, and from its recovery to
    /// the traffic back (see [`adaptation`]); `None`: not within the run.
    pub moved_away_ms: Option<f64>,
    pub moved_back_ms: Option<f64>,
    /// Share of assignments per agent (pool order) per [`pool::BUCKET_MS`] bucket.
    pub shares: Vec<Vec<f64>>,
}

pub struct RoutingOptions<'a> {
    pub hive: &'a std::path::Path,
    pub duration: Duration,
    pub slots: u32,
    pub seed: u64,
}

pub async fn compare(
    options: &RoutingOptions<'_>,
    bar: &ProgressBar,
) -> anyhow::Result<RoutingRun> {
    let profiles = pool::profiles();
    let nominal = pool::capacity_per_sec(&profiles, options.slots);
    // The order the agents join in (the least-loaded policy breaks ties by it): shuffled by the
    // seed, the same for every policy.
    let mut order: Vec<usize> = (0..profiles.len()).collect();
    let mut rng = Rng::seeded(options.seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    bar.set_message("measuring the pool's capacity");
    let hub = HubUnderTest::spawn(options.hive, None).await?;
    let capacity = measure_capacity(&hub.url, &profiles, &order, nominal, options).await;
    hub.stop().await;
    let capacity = capacity?;
    let rate = capacity * LOAD_SHARE;
    let mut policies = Vec::new();
    for policy in POLICIES {
        bar.set_message(format!("{policy}: starting a hub"));
        let config = tempfile::NamedTempFile::new()?;
        std::fs::write(
            config.path(),
            format!(
                "[routing]\npolicy = \"{policy}\"\nseed = {}\n",
                options.seed
            ),
        )?;
        let hub = HubUnderTest::spawn(options.hive, Some(config.path())).await?;
        let outcome = run_policy(&hub.url, policy, &profiles, &order, rate, options, bar).await;
        hub.stop().await;
        policies.push(outcome?);
    }
    Ok(RoutingRun {
        seed: options.seed,
        slots: options.slots,
        pool: profiles,
        nominal_capacity_per_sec: nominal,
        capacity_per_sec: capacity,
        offered_per_sec: rate,
        duration_s: options.duration.as_secs_f64(),
        policies,
    })
}

/// Successful results per second while a backlog of [`BACKLOG_S`] of nominal work keeps every
/// slot busy, counted over [`CAPACITY_WINDOW`] after a second of warm-up.
async fn measure_capacity(
    url: &str,
    profiles: &[Profile],
    order: &[usize],
    nominal: f64,
    options: &RoutingOptions<'_>,
) -> anyhow::Result<f64> {
    let pool = Pool::connect(url, profiles, order, options.slots, options.seed).await?;
    let client = HubClient::new(url);
    let backlog = (nominal * BACKLOG_S) as usize;
    let task = NewTask::new(pool::CAPABILITY);
    for start in (0..backlog).step_by(10_000) {
        let chunk = vec![task.clone(); (backlog - start).min(10_000)];
        client.submit_batch(chunk).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = pool.observed.succeeded.load(Ordering::Relaxed);
    tokio::time::sleep(CAPACITY_WINDOW).await;
    let done = pool.observed.succeeded.load(Ordering::Relaxed) - before;
    pool.stop().await;
    if done as f64 >= backlog as f64 * 0.9 {
        anyhow::bail!("the capacity backlog ran out: the pool is faster than its nominal capacity");
    }
    Ok(done as f64 / CAPACITY_WINDOW.as_secs_f64())
}

/// Seconds of nominal work queued to measure the capacity; counted over the window after one.
const BACKLOG_S: f64 = 5.0;
const CAPACITY_WINDOW: Duration = Duration::from_secs(3);

async fn run_policy(
    url: &str,
    policy: &str,
    profiles: &[Profile],
    order: &[usize],
    rate: f64,
    options: &RoutingOptions<'_>,
    bar: &ProgressBar,
) -> anyhow::Result<PolicyRun> {
    let pool = Pool::connect(url, profiles, order, options.slots, options.seed).await?;
    let observed = pool.observed.clone();
    let client = HubClient::new(url);
    let errors = Arc::new(AtomicU64::new(0));
    let mut arrivals = Rng::seeded(options.seed.wrapping_add(1));
    let duration_us = options.duration.as_micros() as u64;
    let start_us = observed.now_us() + 10_000;
    let (slow_at, back_at) = (start_us + duration_us / 2, start_us + duration_us * 3 / 4);
    let slowed = 0; // the first fast agent, in pool order
    let normal_latency = profiles[slowed].latency_us;
    let mut next_us = start_us as f64;
    let mut submitted = 0u64;
    let mut handles = tokio::task::JoinSet::new();
    let mut phase = 0;
    while (next_us as u64) < start_us + duration_us {
        tokio::time::sleep_until((observed.origin + Duration::from_micros(next_us as u64)).into())
            .await;
        let now = observed.now_us();
        if phase == 0 && now >= slow_at {
            observed.latency_us[slowed].store(normal_latency * SLOWDOWN, Ordering::Relaxed);
            phase = 1;
        } else if phase == 1 && now >= back_at {
            observed.latency_us[slowed].store(normal_latency, Ordering::Relaxed);
            phase = 2;
        }
        while next_us as u64 <= now && (next_us as u64) < start_us + duration_us {
            // Poisson arrivals: exponential gaps with mean 1/rate.
            next_us += -(1.0 - arrivals.uniform()).ln() / rate * 1e6;
            submitted += 1;
            let (client, errors, observed) = (client.clone(), errors.clone(), observed.clone());
            handles.spawn(async move {
                let task = NewTask {
                    payload: RawValue::from_string(format!(r#"{{"t":{}}}"#, observed.now_us()))
                        .ok(),
                    ..NewTask::new(pool::CAPABILITY)
                };
                if client.submit(&task).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while handles.try_join_next().is_some() {}
        if submitted.is_multiple_of(500) {
            bar.set_message(format!(
                "{policy}: {submitted} tasks offered at {rate:.0}/s"
            ));
        }
    }
    while handles.join_next().await.is_some() {}
    let accepted = submitted - errors.load(Ordering::Relaxed);
    let drained = tokio::time::Instant::now() + DRAIN;
    while observed.succeeded.load(Ordering::Relaxed) < accepted
        && tokio::time::Instant::now() < drained
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.stop().await;
    let completion = observed
        .completion_us
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let shares = adaptation::shares(
        &observed
            .assignments
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    let bucket = |us: u64| (us / 1_000 / pool::BUCKET_MS) as usize;
    let change = adaptation::Change {
        agent: slowed,
        before_from: bucket(start_us.max(slow_at.saturating_sub(duration_us / 4))),
        slowed: bucket(slow_at),
        recovered: bucket(back_at),
        end: bucket(start_us + duration_us),
    };
    let (moved_away_ms, moved_back_ms) = adaptation::times(&shares, &change);
    let succeeded = observed.succeeded.load(Ordering::Relaxed);
    Ok(PolicyRun {
        policy: policy.to_string(),
        submitted,
        succeeded,
        errors: errors.load(Ordering::Relaxed),
        failed_attempts: observed.failed_attempts.load(Ordering::Relaxed),
        throughput_per_sec: succeeded as f64 / options.duration.as_secs_f64(),
        completion_mean_ms: completion.mean() / 1e3,
        completion_ms: Percentiles::of(&completion),
        moved_away_ms,
        moved_back_ms,
        shares,
    })
}
