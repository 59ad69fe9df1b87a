//! `routing`: the same swarm, the same offered load and the same random seed through each routing
//! policy, one fresh hub per policy (nothing learned carries over), and one table; two
//! scenarios ([`Scenario`]).
//!
//! [`Scenario::Shifting`]: the pool ([`pool::shifting`]) is twelve agents of one capability; tasks arrive open loop (Poisson, from
//! the seed; those of each 5 ms go in one request) at [`LOAD_SHARE`] of the pool's capacity,
//! measured first on a hub of its own: the rate of successful results while tasks are offered at
//! the nominal capacity, so that every slot is busy. (The nominal capacity, from the latencies alone, is higher: each attempt also waits
//! for its assignment and its result to travel and be committed, which for the 1 ms agents is as
//! long as the work.) Halfway through, the first fast
//! agent becomes [`SLOWDOWN`] times slower; at three quarters it recovers. Per policy: completion
//! time (submit to the end of the successful attempt, retries and their backoff included; the
//! result's trip back to the hub, the same for every policy, is not), failed attempts,
//! throughput, and how long the policy took to move traffic off the slowed agent and back
//! ([`adaptation`]).
//!
//! [`Scenario::Crossover`]: eight agents ([`pool::crossover`]), half quick on small payloads and
//! slow on large ones, half the reverse; each task's payload is padded to a size drawn evenly
//! between [`pool::SMALL_BYTES`] and [`pool::LARGE_BYTES`]. Every agent is as fast as any other
//! on average, so a policy that keeps one estimate per agent cannot do better than chance; one
//! that reads the task (`neural`) can.

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
/// The scenarios, each with its pool and the policies it compares (in the table's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    Shifting,
    Crossover,
}

impl Scenario {
    pub fn pool(self) -> Vec<Profile> {
        match self {
            Scenario::Shifting => pool::shifting(),
            Scenario::Crossover => pool::crossover(),
        }
    }

    pub fn policies(self) -> &'static [&'static str] {
        match self {
            Scenario::Shifting => &["least_loaded", "p2c_ewma", "learned", "neural"],
            Scenario::Crossover => &["least_loaded", "learned", "neural"],
        }
    }

    /// Whether an agent is slowed down halfway through.
    fn slows_down(self) -> bool {
        self == Scenario::Shifting
    }

    /// Whether payloads are padded to sizes between the two the latencies are given at.
    fn sized(self) -> bool {
        self == Scenario::Crossover
    }
}
/// How long tasks still running at the end may take to finish (retries back off 1-2 s).
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, serde::Serialize)]
pub struct RoutingRun {
    pub scenario: Scenario,
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
    /// Share of attempts that ran on an agent quicker on that task's payload than its own
    /// average (the crossover scenario: how often the task went to the right kind of agent; a
    /// policy blind to the task is near 50%).
    pub quick_side: f64,
    /// Share of assignments per agent (pool order) per [`pool::BUCKET_MS`] bucket, from the
    /// pool's start to the end of the offered period.
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
    scenario: Scenario,
    bar: &ProgressBar,
) -> anyhow::Result<RoutingRun> {
    let profiles = scenario.pool();
    let nominal = pool::capacity_per_sec(&profiles, options.slots);
    // The order the agents join in (the least-loaded policy breaks ties by it): shuffled by the
    // seed, the same for every policy.
    let mut order: Vec<usize> = (0..profiles.len()).collect();
    let mut rng = Rng::seeded(options.seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    bar.set_message("measuring the pool's capacity");
    // On a hub with a policy that never holds work, so the offered load does not depend on a
    // policy under test (saturated, all agents work under any policy).
    let config = tempfile::NamedTempFile::new()?;
    std::fs::write(config.path(), "[routing]\npolicy = \"least_loaded\"\n")?;
    let hub = HubUnderTest::spawn(options.hive, Some(config.path()), None).await?;
    let capacity = measure_capacity(
        &hub.target.url,
        &profiles,
        &order,
        nominal,
        scenario,
        options,
    )
    .await;
    hub.stop().await;
    let capacity = capacity?;
    let rate = capacity * LOAD_SHARE;
    let mut policies = Vec::new();
    for &policy in scenario.policies() {
        bar.set_message(format!("{policy}: starting a hub"));
        let config = tempfile::NamedTempFile::new()?;
        std::fs::write(
            config.path(),
            format!(
                "[routing]\npolicy = \"{policy}\"\nseed = {}\n",
                options.seed
            ),
        )?;
        let hub = HubUnderTest::spawn(options.hive, Some(config.path()), None).await?;
        let run = PolicyOptions {
            policy,
            scenario,
            profiles: &profiles,
            order: &order,
            rate,
        };
        let outcome = run_policy(&hub.target.url, &run, options, bar).await;
        hub.stop().await;
        policies.push(outcome?);
    }
    Ok(RoutingRun {
        scenario,
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

/// Successful results per second while tasks are offered open loop at the nominal capacity, the
/// way the comparison offers them: every slot stays busy, and the hub carries the same kind of
/// request load. Counted over [`CAPACITY_WINDOW`] after [`CAPACITY_WARM_UP`].
async fn measure_capacity(
    url: &str,
    profiles: &[Profile],
    order: &[usize],
    nominal: f64,
    scenario: Scenario,
    options: &RoutingOptions<'_>,
) -> anyhow::Result<f64> {
    let pool = Pool::connect(url, profiles, order, options.slots, options.seed).await?;
    let observed = pool.observed.clone();
    let measure = async {
        tokio::time::sleep(CAPACITY_WARM_UP).await;
        let before = observed.succeeded.load(Ordering::Relaxed);
        tokio::time::sleep(CAPACITY_WINDOW).await;
        observed.succeeded.load(Ordering::Relaxed) - before
    };
    let offered = Offer {
        rate: nominal,
        start_us: observed.now_us(),
        duration_us: (CAPACITY_WARM_UP + CAPACITY_WINDOW).as_micros() as u64,
        seed: options.seed,
        sized: scenario.sized(),
    };
    let (done, _) = tokio::join!(measure, offered.run(url, &observed, |_| {}));
    pool.stop().await;
    Ok(done as f64 / CAPACITY_WINDOW.as_secs_f64())
}

const CAPACITY_WARM_UP: Duration = Duration::from_secs(2);
const CAPACITY_WINDOW: Duration = Duration::from_secs(5);

/// Tasks submitted open loop: Poisson arrivals at `rate` per second (gaps drawn from `seed`) from
/// `start_us` (on the pool's clock) for `duration_us`. The tasks that arrived in the same
/// [`TICK`] go in one request (`POST /tasks/batch`): on two shared cores a request per task
/// made the hub's request handling, not the pool, the limit, and its noise the result's.
struct Offer {
    rate: f64,
    start_us: u64,
    duration_us: u64,
    seed: u64,
    /// Pad each payload to a size drawn from the seed (see [`Scenario::sized`]).
    sized: bool,
}

/// How often the arrivals due are sent.
const TICK: Duration = Duration::from_millis(5);

impl Offer {
    /// Calls `tick` with the time before each round of sends; returns (submitted, refused).
    async fn run(
        &self,
        url: &str,
        observed: &Arc<pool::Observed>,
        mut tick: impl FnMut(u64),
    ) -> (u64, u64) {
        let client = HubClient::new(url);
        let errors = Arc::new(AtomicU64::new(0));
        let mut arrivals = Rng::seeded(self.seed.wrapping_add(1));
        let mut sizes = Rng::seeded(self.seed.wrapping_add(2));
        let end_us = self.start_us + self.duration_us;
        let mut next_us = self.start_us as f64;
        let mut submitted = 0u64;
        let mut handles = tokio::task::JoinSet::new();
        let mut round_us = self.start_us;
        while (next_us as u64) < end_us {
            round_us += TICK.as_micros() as u64;
            tokio::time::sleep_until((observed.origin + Duration::from_micros(round_us)).into())
                .await;
            let now = observed.now_us();
            tick(now);
            let mut due = 0;
            while next_us as u64 <= now && (next_us as u64) < end_us {
                // Exponential gaps with mean 1/rate.
                next_us += -(1.0 - arrivals.uniform()).ln() / self.rate * 1e6;
                due += 1;
            }
            if due == 0 {
                continue;
            }
            submitted += due;
            let pads: Vec<usize> = (0..due)
                .map(|_| {
                    if self.sized {
                        let span = pool::LARGE_BYTES - pool::SMALL_BYTES;
                        pool::SMALL_BYTES + sizes.below(span + 1)
                    } else {
                        0
                    }
                })
                .collect();
            let (client, errors, observed) = (client.clone(), errors.clone(), observed.clone());
            handles.spawn(async move {
                // Completion counts from the request: the stamp is taken as it leaves.
                let t = observed.now_us();
                let tasks = pads
                    .into_iter()
                    .map(|size| NewTask {
                        payload: RawValue::from_string(stamped(t, size)).ok(),
                        ..NewTask::new(pool::CAPABILITY)
                    })
                    .collect();
                if client.submit_batch(tasks).await.is_err() {
                    errors.fetch_add(due, Ordering::Relaxed);
                }
            });
            while handles.try_join_next().is_some() {}
        }
        while handles.join_next().await.is_some() {}
        (submitted, errors.load(Ordering::Relaxed))
    }
}

/// The payload `{"t": <stamp>, "pad": "xx..."}`, padded to `size` bytes where it is longer
/// than the stamp alone.
fn stamped(t: u64, size: usize) -> String {
    let bare = format!(r#"{{"t":{t}}}"#);
    let frame = bare.len() + r#","pad":"""#.len();
    if size <= frame {
        return bare;
    }
    format!(r#"{{"t":{t},"pad":"{}"}}"#, "x".repeat(size - frame))
}

/// One policy's run of a scenario.
struct PolicyOptions<'a> {
    policy: &'a str,
    scenario: Scenario,
    profiles: &'a [Profile],
    order: &'a [usize],
    rate: f64,
}

async fn run_policy(
    url: &str,
    run: &PolicyOptions<'_>,
    options: &RoutingOptions<'_>,
    bar: &ProgressBar,
) -> anyhow::Result<PolicyRun> {
    let PolicyOptions {
        policy,
        scenario,
        profiles,
        order,
        rate,
    } = *run;
    let pool = Pool::connect(url, profiles, order, options.slots, options.seed).await?;
    let observed = pool.observed.clone();
    let duration_us = options.duration.as_micros() as u64;
    let start_us = observed.now_us() + 10_000;
    let (slow_at, back_at) = (start_us + duration_us / 2, start_us + duration_us * 3 / 4);
    let slowed = 0; // the first fast agent, in pool order
    let normal_latency = profiles[slowed].latency_us;
    let offer = Offer {
        rate,
        start_us,
        duration_us,
        seed: options.seed,
        sized: scenario.sized(),
    };
    // Without a slow-down the phases never change.
    let mut phase = if scenario.slows_down() { 0 } else { 2 };
    let mut last_shown = 0;
    let (submitted, errors) = offer
        .run(url, &observed, |now| {
            if phase == 0 && now >= slow_at {
                observed.latency_us[slowed].store(normal_latency * SLOWDOWN, Ordering::Relaxed);
                phase = 1;
            } else if phase == 1 && now >= back_at {
                observed.latency_us[slowed].store(normal_latency, Ordering::Relaxed);
                phase = 2;
            }
            let second = (now - start_us.min(now)) / 1_000_000;
            if second > last_shown {
                last_shown = second;
                bar.set_message(format!("{policy}: {second} s of load at {rate:.0}/s"));
            }
        })
        .await;
    let accepted = submitted - errors;
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
    let (moved_away_ms, moved_back_ms) = if scenario.slows_down() {
        adaptation::times(&shares, &change)
    } else {
        (None, None)
    };
    // The drain's last retries after the offered period are not traffic worth a share.
    let mut shares = shares;
    shares.truncate(change.end);
    let succeeded = observed.succeeded.load(Ordering::Relaxed);
    Ok(PolicyRun {
        policy: policy.to_string(),
        submitted,
        succeeded,
        errors,
        failed_attempts: observed.failed_attempts.load(Ordering::Relaxed),
        throughput_per_sec: succeeded as f64 / options.duration.as_secs_f64(),
        completion_mean_ms: completion.mean() / 1e3,
        completion_ms: Percentiles::of(&completion),
        moved_away_ms,
        moved_back_ms,
        quick_side: observed.quick_side.load(Ordering::Relaxed) as f64
            / observed.attempts.load(Ordering::Relaxed).max(1) as f64,
        shares,
    })
}
