//! The workloads. Each runs for the configured duration and returns what it measured.
//!
//! - [`tasks_end_to_end`]: closed-loop submitters (batches, or one task per request), counted
//!   from the first submit until the hub has committed every result.
//! - [`agent_ops`]: register (WebSocket hello/welcome), get, drain, list; each a round trip.
//! - [`open_loop`]: single tasks at a fixed offered rate, sent on schedule whether or not earlier
//!   requests came back (so a stall shows up as latency, not as a lower rate). Latencies are
//!   measured from the moment each request is sent; the sender's lateness against its schedule
//!   is reported apart (`schedule_lag_ms`), so neither hides the other.

use hive_proto::api::TaskStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hive_client::HubClient;
use indicatif::ProgressBar;
use tokio_tungstenite::tungstenite::Message;

use crate::load;
use crate::recorder::Recorder;
use crate::target::Target;

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TaskRun {
    pub tasks: u64,
    /// Accepted per second while submitting.
    pub submit_per_sec: f64,
    /// Tasks per second from the first submit until every result was committed.
    pub end_to_end_per_sec: f64,
    pub seconds: f64,
    pub errors: u64,
}

/// Tasks the hub has seen succeed, all told.
pub(crate) async fn succeeded(client: &HubClient) -> anyhow::Result<u64> {
    Ok(client
        .status()
        .await?
        .tasks
        .get("succeeded")
        .copied()
        .unwrap_or(0))
}

/// Shows `counter` and its rate on the bar until `deadline`, then waits for the workers.
pub(crate) async fn watch(
    started: Instant,
    deadline: Instant,
    counter: &AtomicU64,
    what: &str,
    bar: &ProgressBar,
    workers: Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = counter.load(Ordering::Relaxed);
        let rate = n as f64 / started.elapsed().as_secs_f64();
        bar.set_message(format!("{n} {what}, {rate:.0}/s"));
    }
    for worker in workers {
        worker.await?;
    }
    Ok(())
}

/// Closed-loop submitters: `batch` tasks per request (1: the single-task endpoint). Submitter
/// `i` submits to `fronts[i % fronts.len()]` (several hubs behind a load balancer, or one);
/// the counts are read from the first, which on a shared store are every hub's.
pub async fn tasks_end_to_end(
    fronts: &[Target],
    recorder: &Arc<Recorder>,
    duration: Duration,
    batch: usize,
    submitters: usize,
    bar: &ProgressBar,
) -> anyhow::Result<TaskRun> {
    let client = fronts[0].client();
    let before = succeeded(&client).await?;
    let executed_before = recorder.executed.load(Ordering::Relaxed);
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for i in 0..submitters {
        let (client, recorder) = (fronts[i % fronts.len()].client(), recorder.clone());
        let (accepted, errors) = (accepted.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let outcome = if batch == 1 {
                    client
                        .submit(&load::task(recorder.now_us()))
                        .await
                        .map(|_| 1)
                } else {
                    let tasks = (0..batch).map(|_| load::task(recorder.now_us())).collect();
                    client.submit_batch(tasks).await.map(|ids| ids.len() as u64)
                };
                match outcome {
                    Ok(n) => accepted.fetch_add(n, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    watch(started, deadline, &accepted, "accepted", bar, handles).await?;
    let submitted_in = started.elapsed();
    let tasks = accepted.load(Ordering::Relaxed);
    // Wait on the workers' own count first: polling the hub's status (a count over every task)
    // in a tight loop would load the very process being measured. Then confirm the commits.
    let give_up = started + duration * 20 + Duration::from_secs(60);
    loop {
        let executed = recorder.executed.load(Ordering::Relaxed) - executed_before;
        bar.set_message(format!("draining: {executed} of {tasks} executed"));
        if executed >= tasks {
            break;
        }
        if Instant::now() > give_up {
            anyhow::bail!("only {executed} of {tasks} tasks were executed");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        let done = succeeded(&client).await? - before;
        if done >= tasks {
            break;
        }
        if Instant::now() > give_up {
            anyhow::bail!("only {done} of {tasks} results were committed");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(TaskRun {
        tasks,
        submit_per_sec: tasks as f64 / submitted_in.as_secs_f64(),
        end_to_end_per_sec: tasks as f64 / seconds,
        seconds,
        errors: errors.load(Ordering::Relaxed),
    })
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct AgentRun {
    pub ops: u64,
    pub ops_per_sec: f64,
    pub errors: u64,
}

/// Register, get, drain, disconnect; a list every tenth round. Each counted op is a round trip.
pub async fn agent_ops(
    hub: &Target,
    duration: Duration,
    concurrency: usize,
    bar: &ProgressBar,
) -> anyhow::Result<AgentRun> {
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for c in 0..concurrency {
        let (client, hub) = (hub.client(), hub.clone());
        let (ops, errors) = (ops.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let mut round = 0u64;
            while Instant::now() < deadline {
                round += 1;
                match agent_round(&client, &hub, c, round.is_multiple_of(10)).await {
                    Ok(n) => ops.fetch_add(n, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    watch(started, deadline, &ops, "agent ops", bar, handles).await?;
    let n = ops.load(Ordering::Relaxed);
    Ok(AgentRun {
        ops: n,
        ops_per_sec: n as f64 / started.elapsed().as_secs_f64(),
        errors: errors.load(Ordering::Relaxed),
    })
}

async fn agent_round(
    client: &HubClient,
    hub: &Target,
    c: usize,
    list: bool,
) -> anyhow::Result<u64> {
    let mut socket = hub.agent_socket().await?;
    let hello = format!(
        r#"{{"type":"hello","name":"agent-op-{c}","capabilities":["agent-ops"],"slots":1}}"#
    );
    socket.send(Message::Text(hello.into())).await?;
    let welcome = loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(_)) => continue,
            _ => anyhow::bail!("closed before welcome"),
        }
    };
    let welcome: serde_json::Value = serde_json::from_str(&welcome)?;
    let id = welcome["agent_id"].as_str().unwrap_or_default().to_string();
    let mut ops = 1;
    client.agent(&id).await?;
    client.drain(&id).await?;
    ops += 2;
    if list {
        // Read to the end and its JSON syntax checked, not built into a thousand agents: that
        // was 40% of the generator's CPU, on the cores it shares with the hub.
        client
            .get::<serde::de::IgnoredAny>("/api/v1/agents")
            .await?;
        ops += 1;
    }
    let _ = socket.close(None).await;
    Ok(ops)
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct OpenLoopRun {
    pub offered_per_sec: f64,
    pub sent: u64,
    pub errors: u64,
    /// Sampled waits for a result that did not see the task finish.
    pub timeouts: u64,
    pub sampled: u64,
}

/// Single tasks at `rate` per second; every `sample_every`-th is followed to its result. The
/// requests go to `fronts` in turn (one hub, or several behind a load balancer); a followed
/// task is waited for on the hub it was submitted to.
pub async fn open_loop(
    fronts: &[Target],
    recorder: &Arc<Recorder>,
    duration: Duration,
    rate: u64,
    sample_every: u64,
    bar: &ProgressBar,
) -> anyhow::Result<OpenLoopRun> {
    let clients: Vec<HubClient> = fronts.iter().map(Target::client).collect();
    let errors = Arc::new(AtomicU64::new(0));
    let timeouts = Arc::new(AtomicU64::new(0));
    let interval_us = (1_000_000 / rate.max(1)).max(1);
    let start_us = recorder.now_us() + 10_000;
    let end_us = start_us + duration.as_micros() as u64;
    recorder.recording.store(true, Ordering::Relaxed);
    let mut handles = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    let mut sampled = 0u64;
    let mut next_us = start_us;
    while next_us < end_us {
        tokio::time::sleep_until(recorder.at(next_us).into()).await;
        let now_us = recorder.now_us();
        // Open loop: send everything due by now, however late the previous sends came back.
        while next_us <= now_us && next_us < end_us {
            let intended = next_us;
            next_us += interval_us;
            sent += 1;
            let follow = sent.is_multiple_of(sample_every);
            sampled += u64::from(follow);
            // The hubs in turn, and the followed requests in turn among themselves: every
            // `sample_every`-th request alone would fall on one hub whenever the hubs' count
            // divides it.
            let turn = if follow { sampled } else { sent };
            let client = clients[turn as usize % clients.len()].clone();
            let recorder = recorder.clone();
            let (errors, timeouts) = (errors.clone(), timeouts.clone());
            handles.spawn(async move {
                // Latency counts from the moment the request leaves; how late that is against the
                // schedule (timer granularity, a starved generator) is recorded apart.
                let sent = recorder.now_us();
                recorder.record_value(&recorder.schedule_lag_us, sent.saturating_sub(intended));
                match client.submit(&load::task(sent)).await {
                    Ok(task) if follow => {
                        match client.wait(&task.id, Duration::from_secs(30)).await {
                            Ok(done) if done.status == TaskStatus::Succeeded => {
                                recorder.record(&recorder.result_us, sent)
                            }
                            _ => {
                                timeouts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while handles.try_join_next().is_some() {}
        if sent.is_multiple_of(1000) {
            bar.set_message(format!(
                "{sent} sent at {rate}/s, {} in flight",
                handles.len()
            ));
        }
    }
    while handles.join_next().await.is_some() {}
    // Let the last assignments reach the workers before recording stops.
    tokio::time::sleep(Duration::from_millis(200)).await;
    recorder.recording.store(false, Ordering::Relaxed);
    Ok(OpenLoopRun {
        offered_per_sec: rate as f64,
        sent,
        errors: errors.load(Ordering::Relaxed),
        timeouts: timeouts.load(Ordering::Relaxed),
        sampled,
    })
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct QueuedRun {
    pub tasks: u64,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    pub rss_per_queued_task_bytes: Option<f64>,
    pub errors: u64,
}

/// `count` tasks for a capability no worker has, so they all stay queued in the hub's memory;
/// the hub's RSS before and after, per task.
pub async fn queued_memory(
    hub: &Target,
    count: u64,
    sample: impl Fn() -> Option<hive_metrics::procfs::ProcessSample>,
    bar: &ProgressBar,
) -> anyhow::Result<QueuedRun> {
    let before = sample();
    let submitted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let batch = 1_000u64;
    let mut handles = Vec::new();
    for _ in 0..4 {
        let client = hub.client();
        let (submitted, errors) = (submitted.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let from = submitted.fetch_add(batch, Ordering::Relaxed);
                if from >= count {
                    break;
                }
                let n = batch.min(count - from);
                let tasks = (0..n)
                    .map(|_| hive_proto::api::NewTask::new("bench-queued"))
                    .collect();
                if client.submit_batch(tasks).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    submitted.fetch_sub(n, Ordering::Relaxed);
                }
            }
        }));
    }
    while handles.iter().any(|h| !h.is_finished()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        bar.set_message(format!(
            "{} of {count} queued",
            submitted.load(Ordering::Relaxed).min(count)
        ));
    }
    for handle in handles {
        handle.await?;
    }
    // Let the last commits and their buffers settle before reading memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = sample();
    let per_task = match (before, after) {
        (Some(b), Some(a)) => Some((a.rss_bytes as f64 - b.rss_bytes as f64) / count.max(1) as f64),
        _ => None,
    };
    Ok(QueuedRun {
        tasks: count,
        rss_before_bytes: before.map(|s| s.rss_bytes),
        rss_after_bytes: after.map(|s| s.rss_bytes),
        rss_per_queued_task_bytes: per_task,
        errors: errors.load(Ordering::Relaxed),
    })
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SoakRun {
    pub tasks: u64,
    pub seconds: f64,
    /// (tasks executed, hub RSS in bytes), every `sample_every` tasks.
    pub rss_samples: Vec<(u64, u64)>,
    /// Hub RSS at the end minus at the first sample (after the first `sample_every` tasks, when
    /// caches are warm): what steady processing leaves behind.
    pub rss_growth_bytes: Option<i64>,
    pub errors: u64,
}

/// Batched submitters that never let more than `max_backlog` tasks wait for a worker, so memory
/// measures what processing leaves behind, not a queue.
pub async fn soak(
    hub: &Target,
    recorder: &Arc<Recorder>,
    total: u64,
    sample_every: u64,
    sample: impl Fn() -> Option<hive_metrics::procfs::ProcessSample>,
    bar: &ProgressBar,
) -> anyhow::Result<SoakRun> {
    const BATCH: u64 = 100;
    const MAX_BACKLOG: u64 = 20_000;
    let started = Instant::now();
    let executed_before = recorder.executed.load(Ordering::Relaxed);
    let executed = {
        let recorder = recorder.clone();
        move || recorder.executed.load(Ordering::Relaxed) - executed_before
    };
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (client, recorder) = (hub.client(), recorder.clone());
        let (accepted, errors, executed) = (accepted.clone(), errors.clone(), executed.clone());
        handles.push(tokio::spawn(async move {
            while accepted.load(Ordering::Relaxed) < total {
                if accepted.load(Ordering::Relaxed).saturating_sub(executed()) > MAX_BACKLOG {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let tasks = (0..BATCH).map(|_| load::task(recorder.now_us())).collect();
                match client.submit_batch(tasks).await {
                    Ok(ids) => accepted.fetch_add(ids.len() as u64, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let mut samples = Vec::new();
    let mut next_sample = sample_every;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let done = executed();
        while done >= next_sample {
            if let Some(s) = sample() {
                samples.push((next_sample, s.rss_bytes));
            }
            next_sample += sample_every;
        }
        bar.set_message(format!(
            "{done} of {total} executed, {:.0}/s",
            done as f64 / started.elapsed().as_secs_f64()
        ));
        if handles.iter().all(|h| h.is_finished()) && done >= accepted.load(Ordering::Relaxed) {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!("the soak did not finish within an hour");
        }
    }
    for handle in handles {
        handle.await?;
    }
    // The last results' commits, then the final reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let end = sample();
    if let Some(s) = end {
        samples.push((executed(), s.rss_bytes));
    }
    let growth = match (samples.first(), end) {
        (Some(first), Some(end)) if samples.len() > 1 => {
            Some(end.rss_bytes as i64 - first.1 as i64)
        }
        _ => None,
    };
    Ok(SoakRun {
        tasks: accepted.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        rss_samples: samples,
        rss_growth_bytes: growth,
        errors: errors.load(Ordering::Relaxed),
    })
}
