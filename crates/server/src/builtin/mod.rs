//! Built-in executors: work the hub does itself, with no worker process, on its CPU pool
//! ([`pool`]). They form one [local agent](crate::local_agent), `builtin`, registered at start
//! like any other. Capabilities: [`sha256::CAPABILITY`].

pub mod pool;
pub mod sha256;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hive_core::{AgentId, AgentSpec, Capability, Report, TaskId};
use hive_proto::protocol::{Assignment, Progress};
use tokio::task::JoinHandle;

use crate::local_agent::{self, HubStopped, LocalAgent, Work};
use crate::state::AppState;
use pool::CpuPool;

/// Why a job produced no output.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The payload is unusable; trying again cannot help.
    BadPayload(String),
    Cancelled,
}

/// What a running job looks at and tells.
pub struct Job<'a> {
    /// Set when the attempt is cancelled or the hub stops; a job looks every millisecond or so.
    pub cancelled: &'a AtomicBool,
    /// Reports the fraction done (0.0-1.0) as the attempt's progress (docs/protocol.md,
    /// "progress"); a job calls it at most once a second or so.
    pub progress: &'a dyn Fn(f64),
}

type Executor = fn(&str, &Job) -> Result<String, Stopped>;

const EXECUTORS: [(&str, Executor); 1] = [(sha256::CAPABILITY, sha256::run)];

/// The attempts queued or running on the pool, and what tells their jobs the hub is stopping.
#[derive(Default)]
struct Jobs {
    /// Cancel flags of the attempts queued or running on the pool.
    running: Mutex<HashMap<(TaskId, u32), Arc<AtomicBool>>>,
    /// Set when the hub stops: a job not yet begun gives its attempt back unstarted.
    stopping: AtomicBool,
    /// Woken as each job ends, for the agent waiting to leave.
    ended: tokio::sync::Notify,
}

impl Jobs {
    /// Stops every job (those not begun give their attempts back, those running stop and report
    /// it) and waits until each has reported.
    async fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            {
                let running = lock(&self.running);
                if running.is_empty() {
                    return;
                }
                for flag in running.values() {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            ended.await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("cannot start the CPU pool: {0}")]
    Pool(#[from] std::io::Error),
    #[error("the hub stopped before the built-in agent registered")]
    Stopped,
}

/// Starts the pool (`threads` threads) and registers the `builtin` agent; it runs until the hub
/// closes its connections, and the task returned ends once the agent has left (the hub waits for
/// it, see [`local_agent`]). Two slots per thread, so each thread has its next job at hand.
pub async fn start(state: &AppState, threads: usize) -> Result<JoinHandle<()>, BuiltinError> {
    let pool = CpuPool::new(threads)?;
    let spec = AgentSpec {
        name: "builtin".into(),
        capabilities: EXECUTORS
            .iter()
            .map(|(name, _)| {
                (
                    Capability::parse(name, "capabilities").expect("valid name"),
                    1.0,
                )
            })
            .collect(),
        slots: (pool.size() * 2) as u32,
    };
    let local = LocalAgent::register(state, spec)
        .await
        .map_err(|HubStopped| BuiltinError::Stopped)?;
    let agent = local.id;
    let jobs: Arc<Jobs> = Arc::default();
    let serving = jobs.clone();
    let serving_state = state.clone();
    let agent_task = tokio::spawn(async move {
        let leaving = local
            .serve(serving_state.clone(), |work| match work {
                Work::Assign(task) => dispatch(&serving_state, agent, &pool, &serving, task),
                Work::Cancel { task, attempt } => {
                    if let Some(flag) = lock(&serving.running).get(&(task, attempt)) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
            })
            .await;
        jobs.stop().await;
        leaving.leave().await;
    });
    tracing::info!(%agent, threads = threads.max(1), "built-in executors ready");
    Ok(agent_task)
}

fn dispatch(state: &AppState, agent: AgentId, pool: &CpuPool, jobs: &Arc<Jobs>, task: Assignment) {
    let Ok(id) = task.task_id.parse::<TaskId>() else {
        return;
    };
    let attempt = task.attempt;
    let executor = EXECUTORS
        .iter()
        .find(|(name, _)| *name == task.capability)
        .map(|(_, run)| *run);
    let cancelled = Arc::new(AtomicBool::new(false));
    lock(&jobs.running).insert((id, attempt), cancelled.clone());
    let (state, jobs) = (state.clone(), jobs.clone());
    pool.spawn(move || {
        let report = if jobs.stopping.load(Ordering::Relaxed) {
            // Queued behind others when the hub began to stop: never begun.
            Some(Report::Released)
        } else {
            let progress = |fraction: f64| {
                let progress = Progress {
                    task_id: task.task_id.clone(),
                    attempt,
                    fraction: Some(fraction),
                    message: None,
                    output: None,
                };
                // Nothing in it can be too large.
                let _ = crate::progress::pass_on(&state, agent, progress);
            };
            let job = Job {
                cancelled: &cancelled,
                progress: &progress,
            };
            let outcome = match executor {
                Some(run) => run(task.payload.get(), &job),
                None => Err(Stopped::BadPayload(format!(
                    "no built-in executor for capability {:?}",
                    task.capability
                ))),
            };
            match outcome {
                Ok(output) => Some(Report::Success { output }),
                Err(Stopped::BadPayload(error)) => Some(Report::Failure {
                    error,
                    retryable: false,
                }),
                Err(Stopped::Cancelled) if jobs.stopping.load(Ordering::Relaxed) => {
                    Some(local_agent::stopped_by_the_hub())
                }
                // The scheduler already ended the attempt.
                Err(Stopped::Cancelled) => None,
            }
        };
        if let Some(report) = report {
            // A plain thread, not the runtime: blocking here is what it is for.
            let _ = state
                .commands
                .blocking_send(local_agent::report(agent, id, attempt, report));
        }
        // Only after its report: an agent leaving counts on every report being sent once no
        // job is left.
        lock(&jobs.running).remove(&(id, attempt));
        jobs.ended.notify_waiters();
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
