//! An agent that lives inside the hub (the built-in executors, each LLM provider): registered
//! like a worker, so the scheduler leases, times out, retries and cancels its attempts the same
//! way; its assignments and cancels arrive through [`Connections`](crate::connections) as a
//! worker's would, only without a socket, and it heartbeats like one.
//!
//! When the hub stops, a local agent leaves the way `hive worker` does on SIGTERM, while the
//! scheduler still listens (the hub waits for it, [`crate::hub::Hub::shutdown`]): it drains,
//! gives back unstarted what it had not begun (not counted against the task) and reports what it
//! had to stop as a failure worth retrying, so that none of it waits out its lease after a
//! restart: a local agent, unlike a worker, cannot take an attempt back when the hub returns.

use std::time::Duration;

use hive_core::{AgentId, AgentSpec, Report, TaskId};
use hive_proto::protocol::{Assignment, HubMessage};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::actor::Command;
use crate::connections::Outbound;
use crate::state::AppState;

/// What the hub asks of a local agent.
pub enum Work {
    Assign(Assignment),
    /// Stop this attempt: the scheduler has ended it already.
    Cancel {
        task: TaskId,
        attempt: u32,
    },
}

/// The hub stopped before the agent was registered.
#[derive(Debug)]
pub struct HubStopped;

/// A registered local agent, until [`LocalAgent::serve`] ends.
pub struct LocalAgent {
    pub id: AgentId,
    queue: mpsc::Receiver<Outbound>,
}

impl LocalAgent {
    pub async fn register(state: &AppState, spec: AgentSpec) -> Result<LocalAgent, HubStopped> {
        let id = AgentId(Uuid::now_v7());
        let (outbound, queue) = crate::connections::outbound();
        state.connections.insert(id, outbound);
        let (registered, is_registered) = oneshot::channel();
        let register = Command::Register {
            agent: id,
            spec,
            held: Vec::new(),
            registered,
        };
        if state.commands.send(register).await.is_err() || is_registered.await.is_err() {
            state.connections.remove(id);
            return Err(HubStopped);
        }
        Ok(LocalAgent { id, queue })
    }

    /// Hands each assignment and cancel to `work`, and heartbeats, until the hub closes its
    /// connections; then drains the agent, and returns what is left to do to leave.
    pub async fn serve(mut self, state: AppState, mut work: impl FnMut(Work)) -> Leaving {
        let agent = self.id;
        let every = Duration::from_millis(state.config.heartbeat_interval_ms());
        let mut heartbeat = tokio::time::interval(every);
        loop {
            tokio::select! {
                item = self.queue.recv() => match item {
                    Some(Outbound::Assign(tasks)) => {
                        tasks.iter().for_each(|task| work(Work::Assign(task.assignment())));
                    }
                    Some(Outbound::Message(HubMessage::Cancel { task_id, attempt })) => {
                        if let Ok(task) = task_id.parse::<TaskId>() {
                            work(Work::Cancel { task, attempt });
                        }
                    }
                    Some(Outbound::Close(_)) | None => break,
                    // Drain needs nothing (no new assignments come); no local agent joins a swarm.
                    Some(_) => {}
                },
                _ = heartbeat.tick() => {
                    let _ = state.commands.send(Command::Heartbeat { agent }).await;
                }
            }
        }
        // Draining first: what it then gives back unstarted does not count against the task.
        let (reply, _) = oneshot::channel();
        let drain = Command::Drain {
            agent,
            undo: false,
            reply,
        };
        let _ = state.commands.send(drain).await;
        Leaving { agent, state }
    }
}

/// A local agent on its way out: its owner reports what it still holds, then [`leave`]s.
///
/// [`leave`]: Leaving::leave
pub struct Leaving {
    agent: AgentId,
    state: AppState,
}

impl Leaving {
    /// Reports an attempt the agent held as it stopped.
    pub async fn report(&self, task: TaskId, attempt: u32, report: Report) {
        let _ = self
            .state
            .commands
            .send(self::report(self.agent, task, attempt, report))
            .await;
    }

    /// Disconnects the agent; after what it reported, in the scheduler's order.
    pub async fn leave(self) {
        self.state.connections.remove(self.agent);
        let agent = self.agent;
        let _ = self
            .state
            .commands
            .send(Command::Disconnected { agent })
            .await;
    }
}

/// The failure of an attempt a local agent stopped because the hub did: worth retrying at once.
pub fn stopped_by_the_hub() -> Report {
    Report::Failure {
        error: "stopped: the hub shut down while it ran".into(),
        retryable: true,
    }
}

/// A local agent's result for an attempt, as the scheduler's report.
pub fn report(agent: AgentId, task: TaskId, attempt: u32, report: Report) -> Command {
    Command::Report {
        agent,
        task,
        attempt,
        report,
    }
}
