//! `consensus`: what agreement costs. On a hub of its own, [`VOTERS`] agents of distinct names
//! (in-process workers over real sockets, answering at once) serve closed-loop clients that
//! submit a task and wait for its result, again and again: first plain tasks, then consensus
//! tasks of 3 replicas and quorum 2 voting on `/answer`, each for the run's duration. Per kind:
//! tasks per second and the latency from submit to the result (the client's wait answered),
//! mean / p50 / p99, and attempts per task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive_client::worker::{Executor, Outcome, run_worker};
use hive_client::{HubClient, WorkerOptions};
use hive_proto::RawValue;
use hive_proto::api::{NewTask, TaskStatus};
use hive_proto::protocol::Assignment;
use indicatif::ProgressBar;

use crate::hub::HubUnderTest;
use crate::recorder::{Percentiles, histogram};

/// Agents, each of its own name: replicas go to distinct identities.
pub const VOTERS: usize = 5;
/// Closed-loop clients, each with one task in flight.
pub const CLIENTS: usize = 16;
/// Slots of each agent: more than the clients could fill.
const SLOTS: u32 = 16;
const CAPABILITY: &str = "bench.vote";
/// The consensus asked for: replicas, quorum.
pub const REPLICAS: u32 = 3;
pub const QUORUM: u32 = 2;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsensusRun {
    pub agents: usize,
    pub clients: usize,
    pub duration_s: f64,
    pub plain: KindRun,
    pub consensus: KindRun,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KindRun {
    pub succeeded: u64,
    pub per_sec: f64,
    pub latency_mean_ms: f64,
    pub latency_ms: Percentiles,
    /// Attempts started per task that succeeded (consensus: the replicas, cancelled ones too).
    pub attempts_per_task: f64,
    /// Tasks that ended other than succeeded, and requests that failed.
    pub failed: u64,
    pub errors: u64,
}

/// Answers `{"answer": <payload mod 7>, "by": <its name>}`: the whole results differ between
/// agents, the answers agree.
fn voter(name: String) -> impl Executor {
    move |task: Assignment| {
        let name = name.clone();
        async move {
            let n: u64 = task.payload.get().parse().unwrap_or(0);
            let result = serde_json::json!({ "answer": n % 7, "by": name }).to_string();
            Outcome::Success(RawValue::from_string(result).expect("JSON"))
        }
    }
}

pub async fn measure(
    hive: &std::path::Path,
    duration: Duration,
    bar: &ProgressBar,
) -> anyhow::Result<ConsensusRun> {
    let hub = HubUnderTest::spawn(hive, None, None).await?;
    let outcome = run(&hub.target.url, duration, bar).await;
    hub.stop().await;
    outcome
}

async fn run(url: &str, duration: Duration, bar: &ProgressBar) -> anyhow::Result<ConsensusRun> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut voters = Vec::new();
    for i in 0..VOTERS {
        let mut options = WorkerOptions::new(url, &[CAPABILITY], SLOTS);
        options.name = format!("voter-{i}");
        let executor = Arc::new(voter(options.name.clone()));
        let mut stopped = stopped.clone();
        voters.push(tokio::spawn(run_worker(options, executor, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })));
    }
    let client = HubClient::new(url);
    let joined = Instant::now() + Duration::from_secs(30);
    while client.agents().await?.len() < VOTERS {
        anyhow::ensure!(Instant::now() < joined, "the voters did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.set_message("plain tasks");
    let plain = closed_loop(url, None, duration).await;
    bar.set_message(format!("{REPLICAS} replicas, quorum {QUORUM}"));
    let consensus = closed_loop(url, Some((REPLICAS, QUORUM)), duration).await;
    let _ = stop.send(true);
    for voter in voters {
        let _ = voter.await;
    }
    Ok(ConsensusRun {
        agents: VOTERS,
        clients: CLIENTS,
        duration_s: duration.as_secs_f64(),
        plain: plain?,
        consensus: consensus?,
    })
}

async fn closed_loop(
    url: &str,
    consensus: Option<(u32, u32)>,
    duration: Duration,
) -> anyhow::Result<KindRun> {
    let latencies = Arc::new(Mutex::new(histogram()));
    let counts = Arc::new([(); 4].map(|_| AtomicU64::new(0)));
    let [succeeded, attempts, failed, errors] = [0, 1, 2, 3];
    let started = Instant::now();
    let deadline = started + duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, latencies, counts, next) = (
            HubClient::new(url),
            latencies.clone(),
            counts.clone(),
            next.clone(),
        );
        clients.spawn(async move {
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let task = NewTask {
                    payload: Some(RawValue::from_string(n.to_string()).expect("JSON")),
                    replicas: consensus.map(|(r, _)| r),
                    quorum: consensus.map(|(_, q)| q),
                    vote: consensus.map(|_| "/answer".to_string()),
                    ..NewTask::new(CAPABILITY)
                };
                let sent = Instant::now();
                let done = match client.submit(&task).await {
                    Ok(created) => client.wait(&created.id, Duration::from_secs(30)).await,
                    Err(e) => Err(e),
                };
                match done {
                    Ok(task) if task.status == TaskStatus::Succeeded => {
                        let us = sent.elapsed().as_micros() as u64;
                        let _ = latencies
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .record(us.max(1));
                        counts[succeeded].fetch_add(1, Ordering::Relaxed);
                        counts[attempts].fetch_add(task.attempts.len() as u64, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        counts[failed].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        counts[errors].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while let Some(joined) = clients.join_next().await {
        joined?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let latencies = latencies.lock().unwrap_or_else(|p| p.into_inner());
    let done = counts[succeeded].load(Ordering::Relaxed);
    Ok(KindRun {
        succeeded: done,
        per_sec: done as f64 / seconds,
        latency_mean_ms: latencies.mean() / 1000.0,
        latency_ms: Percentiles::of(&latencies),
        attempts_per_task: counts[attempts].load(Ordering::Relaxed) as f64 / done.max(1) as f64,
        failed: counts[failed].load(Ordering::Relaxed),
        errors: counts[errors].load(Ordering::Relaxed),
    })
}

/// The run's rows in the bench table.
pub fn rows(run: &ConsensusRun) -> Vec<[String; 4]> {
    let row = |what: String, kind: &KindRun| {
        [
            what,
            "-".into(),
            "-".into(),
            format!(
                "{:.0}/s, {:.2} / {:.2} / {:.1} ms, {:.2} attempts per task ({} failed, {} errors)",
                kind.per_sec,
                kind.latency_mean_ms,
                kind.latency_ms.p50,
                kind.latency_ms.p99,
                kind.attempts_per_task,
                kind.failed,
                kind.errors
            ),
        ]
    };
    vec![
        row(
            format!(
                "consensus: plain tasks, {} clients closed loop on {} agents: tasks/s, \
                 submit -> result mean / p50 / p99",
                run.clients, run.agents
            ),
            &run.plain,
        ),
        row(
            format!("consensus: {REPLICAS} replicas, quorum {QUORUM}, vote /answer: the same"),
            &run.consensus,
        ),
    ]
}
