//! What the scheduler tells the outside world: the [`Change`]s it decided (to persist, then carry
//! out) and the errors of its operations.

use std::sync::Arc;

use super::LearnedEstimate;
use crate::agent::AgentSnapshot;
use crate::ids::{AgentId, TaskId};
use crate::task::{AttemptOutcome, Capability, TaskEnd, TaskSpec, TaskStatus};
use crate::time::Timestamp;

/// One decision of the scheduler. The runtime persists changes in the order they were emitted and
/// only then acts on them (sends frames, answers clients), so nothing is announced that a crash
/// could take back.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new task; `status` is `waiting`, `queued`, or `failed` when a dependency already failed.
    TaskCreated {
        spec: Arc<TaskSpec>,
        status: TaskStatus,
        error: Option<String>,
    },
    /// A waiting task whose dependencies all succeeded is now queued.
    TaskReady {
        task: TaskId,
        capability: Capability,
        at: Timestamp,
    },
    /// An attempt began on an agent; the runtime sends the assignment.
    AttemptStarted {
        spec: Arc<TaskSpec>,
        attempt: u32,
        agent: AgentId,
        started_at: Timestamp,
        lease_until: Timestamp,
        /// How long the task waited in its ready queue for this attempt (0: an agent was free).
        queued_ms: u64,
        /// How its parents (`depends_on`) ended, in the order they ended; empty without any.
        inputs: Vec<(TaskId, TaskEnd)>,
        /// A consensus task's replica: the identity asked (the agent's name), kept with the
        /// attempt so that a restart knows who voted even if the agent is forgotten.
        identity: Option<Arc<str>>,
    },
    /// An attempt ended; `next` says what became of the task.
    AttemptEnded {
        task: TaskId,
        capability: Capability,
        attempt: u32,
        agent: Option<AgentId>,
        /// When the task was created and when this attempt began, for the hub's measurements.
        created_at: Timestamp,
        started_at: Timestamp,
        ended_at: Timestamp,
        outcome: AttemptOutcome,
        /// The output (JSON text) of a successful attempt.
        output: Option<Arc<str>>,
        error: Option<String>,
        next: NextStatus,
    },
    /// A running attempt whose agent was lost (a hub restart, a dropped connection) is bound to
    /// the agent that reconnected holding it: its result counts, and it runs nowhere else.
    AttemptReattached {
        task: TaskId,
        attempt: u32,
        agent: AgentId,
    },
    /// A task ended other than by an attempt of its own: cancelled, failed because a dependency
    /// did (or its inputs are too large), or a consensus task decided (agreed, or agreement
    /// became impossible).
    TaskFinished {
        task: TaskId,
        capability: Capability,
        status: TaskStatus,
        error: Option<String>,
        /// The agreed value of a consensus task that succeeded.
        result: Option<Arc<str>>,
        at: Timestamp,
    },
    /// A queued task handed to the shared pool for another hub to claim (several hubs on one
    /// database): it left this scheduler's memory.
    TaskReleased {
        task: TaskId,
        capability: Capability,
        priority: u8,
        created_at: Timestamp,
        /// Its place in the ready queue it left (`queue::queue_key`: readiness less priority
        /// times the aging period): the pool hands tasks out in this order, so priorities age
        /// across hubs as in one hub's queue.
        rank: i64,
    },
    /// A waiting task whose parents include one another hub holds (a new one, just created) or
    /// one this hub let go of (`release_excess`, a parent no agent here serves): stored with no
    /// hub, and taken over by a hub once every parent ended. Not in memory here.
    TaskParked { task: TaskId, parents: Vec<TaskId> },
    /// An agent connected, started draining, or went offline.
    AgentChanged(AgentSnapshot),
    /// What routing believes of an agent identity on a capability changed (once per turn at
    /// most); the store keeps the latest, so it survives reconnects and restarts.
    Learned(LearnedEstimate),
    /// An offline agent no longer remembered (past [`MAX_OFFLINE_AGENTS`](super::MAX_OFFLINE_AGENTS)):
    /// the store lets go of its row too.
    AgentForgotten { agent: AgentId },
    /// Tell the agent to stop working on an attempt.
    SendCancel {
        agent: AgentId,
        task: TaskId,
        attempt: u32,
    },
    /// Tell the agent to take no more work.
    SendDrain { agent: AgentId },
    /// Tell the agent its drain was undone: it takes work again.
    SendResume { agent: AgentId },
    /// Close the agent's connection: it missed its heartbeats.
    CloseAgent { agent: AgentId },
}

impl Change {
    /// The task and its final status, when this change ends a task.
    pub fn terminal(&self) -> Option<(TaskId, TaskStatus)> {
        match self {
            Change::TaskCreated { spec, status, .. } if status.is_terminal() => {
                Some((spec.id, *status))
            }
            Change::AttemptEnded { task, next, .. } => next.terminal_status().map(|s| (*task, s)),
            Change::TaskFinished { task, status, .. } => Some((*task, *status)),
            _ => None,
        }
    }

    /// The task and how it ended, when this change ends a task: what its dependents are told.
    pub fn ended(&self) -> Option<(TaskId, TaskEnd)> {
        let (task, status) = self.terminal()?;
        let end = match self {
            Change::AttemptEnded { output, .. } | Change::TaskFinished { result: output, .. }
                if status == TaskStatus::Succeeded =>
            {
                TaskEnd::Succeeded(output.clone().unwrap_or_else(|| "null".into()))
            }
            Change::TaskCreated { error, .. }
            | Change::AttemptEnded { error, .. }
            | Change::TaskFinished { error, .. } => TaskEnd::Unsuccessful {
                status,
                error: error.as_deref().unwrap_or(status.as_str()).into(),
            },
            _ => return None,
        };
        Some((task, end))
    }
}

/// What a task becomes when an attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStatus {
    /// Queued again, eligible from `not_before`.
    Retry {
        not_before: Timestamp,
    },
    /// A replica of a consensus task ended; the task still counts its votes (running).
    Voting,
    Succeeded,
    Failed,
    Cancelled,
}

impl NextStatus {
    pub fn status(self) -> TaskStatus {
        match self {
            NextStatus::Retry { .. } => TaskStatus::Queued,
            NextStatus::Voting => TaskStatus::Running,
            NextStatus::Succeeded => TaskStatus::Succeeded,
            NextStatus::Failed => TaskStatus::Failed,
            NextStatus::Cancelled => TaskStatus::Cancelled,
        }
    }

    pub fn terminal_status(self) -> Option<TaskStatus> {
        Some(self.status()).filter(|s| s.is_terminal())
    }
}

/// What an agent reports for an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Success {
        output: String,
    },
    Failure {
        error: String,
        retryable: bool,
    },
    /// A failure worth retrying once a pause has passed: the agent's own dependency said when
    /// (an LLM provider's `429` with `Retry-After`). The next attempt waits `retry_after_ms`,
    /// or its backoff when that is longer.
    Throttled {
        error: String,
        retry_after_ms: u64,
    },
    /// The agent did not start the attempt and will not (it is stopping). Taken as such only
    /// from a draining agent, so that no agent can hand a task around for ever; from any other
    /// it is a failure worth retrying.
    Released,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("dependency {0} does not exist")]
    UnknownDependency(TaskId),
    #[error("task {0} already exists")]
    DuplicateId(TaskId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("task {0} is not active (finished, cancelled or unknown)")]
    UnknownTask(TaskId),
    #[error("attempt {attempt} of task {task} is stale; the current attempt is {current}")]
    StaleAttempt {
        task: TaskId,
        attempt: u32,
        current: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    #[error("task {0} is not active")]
    NotActive(TaskId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    #[error("agent {0} does not exist")]
    UnknownAgent(AgentId),
    #[error("agent {0} is offline")]
    Offline(AgentId),
}
