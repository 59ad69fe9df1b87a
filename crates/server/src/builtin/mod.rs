//! Built-in executors: work the hub does itself, with no worker process, on its CPU pool
//! ([`pool`]). They form one [local agent](crate::local_agent), `builtin`, registered at start
//! like any other. Capabilities: [`sha256::CAPABILITY`].

pub mod pool;
pub mod sha256;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hive_core::{AgentId, AgentSpec, Capability, Report, TaskId};
use hive_proto::protocol::Assignment;

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

type Executor = fn(&str, &AtomicBool) -> Result<String, Stopped>;

const EXECUTORS: [(&str, Executor); 1] = [(sha256::CAPABILITY, sha256::run)];

/// Cancel flags of the attempts queued or running on the pool.
type Running = Arc<Mutex<HashMap<(TaskId, u32), Arc<AtomicBool>>>>;

#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("cannot start the CPU pool: {0}")]
    Pool(#[from] std::io::Error),
    #[error("the hub stopped before the built-in agent registered")]
    Stopped,
}

/// Starts the pool (`threads` threads) and registers the `builtin` agent; it runs until the hub
/// closes its connections. Two slots per thread, so each thread has its next job at hand.
pub async fn start(state: &AppState, threads: usize) -> Result<AgentId, BuiltinError> {
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
    let running: Running = Arc::default();
    let serving = running.clone();
    let serving_state = state.clone();
    tokio::spawn(async move {
        local
            .serve(serving_state.clone(), |work| match work {
                Work::Assign(task) => dispatch(&serving_state, agent, &pool, &serving, task),
                Work::Cancel { task, attempt } => {
                    if let Some(flag) = lock(&serving).get(&(task, attempt)) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
            })
            .await;
        // The hub is stopping: abandon what the pool still has (the leases bring it back later).
        for flag in lock(&running).values() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    tracing::info!(%agent, threads = threads.max(1), "built-in executors ready");
    Ok(agent)
}

fn dispatch(state: &AppState, agent: AgentId, pool: &CpuPool, running: &Running, task: Assignment) {
    let Ok(id) = task.task_id.parse::<TaskId>() else {
        return;
    };
    let attempt = task.attempt;
    let executor = EXECUTORS
        .iter()
        .find(|(name, _)| *name == task.capability)
        .map(|(_, run)| *run);
    let cancelled = Arc::new(AtomicBool::new(false));
    lock(running).insert((id, attempt), cancelled.clone());
    let (commands, running) = (state.commands.clone(), running.clone());
    pool.spawn(move || {
        let outcome = match executor {
            Some(run) => run(task.payload.get(), &cancelled),
            None => Err(Stopped::BadPayload(format!(
                "no built-in executor for capability {:?}",
                task.capability
            ))),
        };
        lock(&running).remove(&(id, attempt));
        let report = match outcome {
            Ok(output) => Report::Success { output },
            Err(Stopped::BadPayload(error)) => Report::Failure {
                error,
                retryable: false,
            },
            // The scheduler already ended the attempt.
            Err(Stopped::Cancelled) => return,
        };
        // A plain thread, not the runtime: blocking here is what it is for.
        let _ = commands.blocking_send(local_agent::report(agent, id, attempt, report));
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
