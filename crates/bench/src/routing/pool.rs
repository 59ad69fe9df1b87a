//! The routing benchmark's pools, run in this process over real sockets (the hub sees ordinary
//! workers): [`shifting`], twelve agents of one capability that differ the way a real swarm
//! does, and [`crossover`], two kinds of agent whose speed crosses over with the payload's size.
//!
//! Each attempt sleeps the agent's latency on a blocking thread (`std::thread::sleep`, accurate
//! to tens of microseconds, where a tokio timer rounds up to the next millisecond): that sleep is
//! the simulated agent's work, the quantity the benchmark is about. The latency goes linearly
//! from the agent's `latency_us` at a payload of [`SMALL_BYTES`] to its `large_latency_us` at
//! [`LARGE_BYTES`], times a seeded noise factor. The flaky agent fails its attempts by a seeded
//! draw, so every policy meets the same sequence of failures and noise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hive_client::WorkerOptions;
use hive_client::worker::{Outcome, WorkerError, WorkerExit, run_worker};
use hive_core::random::Rng;
use hive_proto::RawValue;
use hive_proto::protocol::Assignment;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::recorder::histogram;

pub const CAPABILITY: &str = "routing-bench";

/// Share-of-traffic buckets, ms.
pub const BUCKET_MS: u64 = 100;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Profile {
    pub name: String,
    /// At a payload of [`SMALL_BYTES`] and of [`LARGE_BYTES`].
    pub latency_us: u64,
    pub large_latency_us: u64,
    /// Each attempt's latency is scaled by a factor drawn uniformly from 1 ± this.
    pub noise: f64,
    /// Share of attempts that fail (retryable).
    pub failure_rate: f64,
}

/// The payload sizes the latencies are given at (a task's size is between them).
pub const SMALL_BYTES: usize = 64;
pub const LARGE_BYTES: usize = 16_384;

impl Profile {
    fn new(name: String, latency_ms: f64, large_latency_ms: f64, failure_rate: f64) -> Profile {
        Profile {
            name,
            latency_us: (latency_ms * 1e3) as u64,
            large_latency_us: (large_latency_ms * 1e3) as u64,
            noise: 0.0,
            failure_rate,
        }
    }

    /// Its latency on a payload of `bytes` when its latency at [`SMALL_BYTES`] is `small_us`
    /// (the benchmark may have slowed it down), before noise.
    fn latency_us(&self, small_us: u64, bytes: usize) -> f64 {
        let share = (bytes.saturating_sub(SMALL_BYTES) as f64 / (LARGE_BYTES - SMALL_BYTES) as f64)
            .min(1.0);
        let scale = small_us as f64 / self.latency_us.max(1) as f64;
        let large = self.large_latency_us as f64 * scale;
        small_us as f64 + (large - small_us as f64) * share
    }

    /// Mean latency over payload sizes spread evenly between the two, µs.
    pub fn mean_latency_us(&self) -> f64 {
        (self.latency_us + self.large_latency_us) as f64 / 2.0
    }
}

/// 3 fast (1 ms), 6 medium (5 ms), 2 slow (25 ms), 1 flaky (5 ms, fails 20%), whatever the
/// payload. The first fast one is the agent the benchmark slows down.
pub fn shifting() -> Vec<Profile> {
    let mut pool = Vec::new();
    let mut add = |kind: &str, n: usize, latency_ms: f64, failure_rate: f64| {
        for i in 1..=n {
            let name = format!("{kind}-{i}");
            pool.push(Profile::new(name, latency_ms, latency_ms, failure_rate));
        }
    };
    add("fast", 3, 1.0, 0.0);
    add("medium", 6, 5.0, 0.0);
    add("slow", 2, 25.0, 0.0);
    add("flaky", 1, 5.0, 0.2);
    pool
}

/// 4 `short` agents (1 ms on the smallest payload, 20 ms on the largest) and 4 `long` ones (the
/// reverse), ±20% noise: on average every agent is as fast as any other, and what is fast
/// depends on the task and the agent together.
pub fn crossover() -> Vec<Profile> {
    let mut pool = Vec::new();
    for i in 1..=4 {
        for (kind, small, large) in [("short", 1.0, 20.0), ("long", 20.0, 1.0)] {
            let mut p = Profile::new(format!("{kind}-{i}"), small, large, 0.0);
            p.noise = 0.2;
            pool.push(p);
        }
    }
    pool
}

/// Attempts the pool can run per second with `slots` each, tasks' sizes spread evenly: its
/// nominal capacity.
pub fn capacity_per_sec(pool: &[Profile], slots: u32) -> f64 {
    pool.iter()
        .map(|p| f64::from(slots) * 1e6 / p.mean_latency_us())
        .sum()
}

#[derive(serde::Deserialize)]
struct Stamp {
    t: u64,
}

/// What the pool measured.
pub struct Observed {
    pub origin: Instant,
    /// Submit (the payload's stamp) to the end of the successful attempt, µs.
    pub completion_us: Mutex<Histogram<u64>>,
    pub succeeded: AtomicU64,
    pub failed_attempts: AtomicU64,
    /// Attempts, and those on a payload the agent runs quicker than its own average.
    pub attempts: AtomicU64,
    pub quick_side: AtomicU64,
    /// Assignments per [`BUCKET_MS`] bucket since `origin`, per agent (pool order).
    pub assignments: Mutex<Vec<Vec<u32>>>,
    /// Each agent's current latency, µs (the benchmark slows one down and back).
    pub latency_us: Vec<AtomicU64>,
}

impl Observed {
    fn new(pool: &[Profile]) -> Arc<Observed> {
        Arc::new(Observed {
            origin: Instant::now(),
            completion_us: Mutex::new(histogram()),
            succeeded: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            quick_side: AtomicU64::new(0),
            assignments: Mutex::new(Vec::new()),
            latency_us: pool.iter().map(|p| AtomicU64::new(p.latency_us)).collect(),
        })
    }

    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn assigned(&self, agent: usize, agents: usize) {
        let bucket = (self.origin.elapsed().as_millis() as u64 / BUCKET_MS) as usize;
        let mut all = self.assignments.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() <= bucket {
            all.resize(bucket + 1, vec![0; agents]);
        }
        all[bucket][agent] += 1;
    }
}

pub struct Pool {
    pub observed: Arc<Observed>,
    stops: Vec<oneshot::Sender<()>>,
    handles: Vec<JoinHandle<Result<WorkerExit, WorkerError>>>,
}

impl Pool {
    /// Connects the agents one by one in `order` (indices into `pool`), so the hub registers
    /// them in that order in every run.
    pub async fn connect(
        url: &str,
        pool: &[Profile],
        order: &[usize],
        slots: u32,
        seed: u64,
    ) -> anyhow::Result<Pool> {
        let observed = Observed::new(pool);
        let client = hive_client::HubClient::new(url);
        let null = RawValue::from_string("null".into()).expect("valid JSON");
        let mut stops = Vec::new();
        let mut handles = Vec::new();
        for (connected, &i) in order.iter().enumerate() {
            let profile = pool[i].clone();
            let (observed, null) = (observed.clone(), null.clone());
            let draws = Arc::new(Mutex::new(Rng::seeded(seed ^ (i as u64 + 1))));
            let agents = pool.len();
            let executor = Arc::new(move |task: Assignment| {
                observed.assigned(i, agents);
                let small_us = observed.latency_us[i].load(Ordering::Relaxed);
                let latency = profile.latency_us(small_us, task.payload.get().len());
                observed.attempts.fetch_add(1, Ordering::Relaxed);
                if latency < profile.mean_latency_us() {
                    observed.quick_side.fetch_add(1, Ordering::Relaxed);
                }
                let (fails, noise) = {
                    let mut draws = draws.lock().unwrap_or_else(|p| p.into_inner());
                    let fails =
                        profile.failure_rate > 0.0 && draws.uniform() < profile.failure_rate;
                    let noise = if profile.noise > 0.0 {
                        1.0 + profile.noise * (2.0 * draws.uniform() - 1.0)
                    } else {
                        1.0
                    };
                    (fails, noise)
                };
                let stamp = serde_json::from_str::<Stamp>(task.payload.get()).ok();
                let (observed, null) = (observed.clone(), null.clone());
                async move {
                    let work = Duration::from_micros((latency * noise) as u64);
                    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(work)).await;
                    if fails {
                        observed.failed_attempts.fetch_add(1, Ordering::Relaxed);
                        return Outcome::failure("simulated failure", true);
                    }
                    if let Some(stamp) = stamp {
                        let us = observed.now_us().saturating_sub(stamp.t).max(1);
                        let _ = observed
                            .completion_us
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .record(us);
                    }
                    observed.succeeded.fetch_add(1, Ordering::Relaxed);
                    Outcome::Success(null)
                }
            });
            let mut options = WorkerOptions::new(url, &[CAPABILITY], slots);
            options.name = pool[i].name.clone();
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            handles.push(tokio::spawn(run_worker(options, executor, async move {
                let _ = stopped.await;
            })));
            wait_for_agents(&client, connected + 1).await?;
        }
        Ok(Pool {
            observed,
            stops,
            handles,
        })
    }

    pub async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

async fn wait_for_agents(client: &hive_client::HubClient, count: usize) -> anyhow::Result<()> {
    for _ in 0..400 {
        if client.agents().await.is_ok_and(|a| a.len() >= count) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("agent {count} of the pool did not register")
}
