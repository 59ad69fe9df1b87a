//! The event stream's source: after each commit, the changes that matter to an observer (task
//! status, agent state) become [`Event`]s, published to the `/ws/events` subscribers as one
//! batch; running attempts' progress ([`crate::progress`]) is published as it comes. Nothing is
//! built while nobody listens.

use std::sync::Arc;

use hive_core::{AgentId, AttemptOutcome, Capability, Change, TaskId, TaskStatus, Timestamp};
use hive_proto::events::Event;
use tokio::sync::broadcast;

use crate::views::{self, rfc3339};

/// Batches a subscriber may fall behind by before it skips some.
const BUFFER: usize = 64;

pub type Batch = Arc<Vec<Event>>;

pub struct Events {
    stream: broadcast::Sender<Batch>,
    /// Running attempts' progress, passed on to the stream as agents report it.
    pub progress: crate::progress::ProgressBoard,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            stream: broadcast::channel(BUFFER).0,
            progress: Default::default(),
        }
    }
}

impl Events {
    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.stream.subscribe()
    }

    pub fn publish_one(&self, event: Event) {
        if self.stream.receiver_count() > 0 {
            let _ = self.stream.send(Arc::new(vec![event]));
        }
    }

    pub fn publish(&self, changes: &[Change]) {
        if self.stream.receiver_count() == 0 {
            return;
        }
        let events: Vec<Event> = changes.iter().filter_map(event).collect();
        if !events.is_empty() {
            let _ = self.stream.send(Arc::new(events));
        }
    }
}

/// A task's change, before it becomes the wire's strings.
struct TaskChange<'a> {
    id: TaskId,
    capability: &'a Capability,
    status: TaskStatus,
    at: Timestamp,
    attempt: Option<u32>,
    agent: Option<AgentId>,
    outcome: Option<AttemptOutcome>,
    error: Option<&'a str>,
}

impl<'a> TaskChange<'a> {
    fn new(id: TaskId, capability: &'a Capability, status: TaskStatus, at: Timestamp) -> Self {
        TaskChange {
            id,
            capability,
            status,
            at,
            attempt: None,
            agent: None,
            outcome: None,
            error: None,
        }
    }

    fn event(self) -> Event {
        Event::Task {
            task_id: self.id.to_string(),
            capability: self.capability.to_string(),
            status: views::task_status(self.status),
            attempt: self.attempt,
            agent_id: self.agent.map(|a| a.to_string()),
            outcome: self.outcome.map(views::attempt_outcome),
            error: self.error.map(Into::into),
            at: rfc3339(self.at),
        }
    }
}

fn event(change: &Change) -> Option<Event> {
    let task = match change {
        Change::TaskCreated {
            spec,
            status,
            error,
        } => TaskChange {
            error: error.as_deref(),
            ..TaskChange::new(spec.id, &spec.capability, *status, spec.created_at)
        },
        Change::TaskReady {
            task,
            capability,
            at,
        } => TaskChange::new(*task, capability, TaskStatus::Queued, *at),
        Change::AttemptStarted {
            spec,
            attempt,
            agent,
            started_at,
            ..
        } => TaskChange {
            attempt: Some(*attempt),
            agent: Some(*agent),
            ..TaskChange::new(spec.id, &spec.capability, TaskStatus::Running, *started_at)
        },
        Change::AttemptEnded {
            task,
            capability,
            attempt,
            agent,
            ended_at,
            outcome,
            error,
            next,
            ..
        } => TaskChange {
            attempt: Some(*attempt),
            agent: *agent,
            outcome: Some(*outcome),
            error: error.as_deref(),
            ..TaskChange::new(*task, capability, next.status(), *ended_at)
        },
        Change::TaskFinished {
            task,
            capability,
            status,
            error,
            at,
            ..
        } => TaskChange {
            error: error.as_deref(),
            ..TaskChange::new(*task, capability, *status, *at)
        },
        Change::AgentChanged(agent) => {
            return Some(Event::Agent {
                agent_id: agent.id.to_string(),
                name: agent.spec.name.clone(),
                state: views::agent_state(agent.state),
                capabilities: agent
                    .spec
                    .capabilities
                    .iter()
                    .map(|(c, _)| c.to_string())
                    .collect(),
            });
        }
        Change::AttemptReattached { .. }
        | Change::AgentForgotten { .. }
        | Change::TaskReleased { .. }
        | Change::TaskParked { .. }
        | Change::Learned(_)
        | Change::SendCancel { .. }
        | Change::SendDrain { .. }
        | Change::SendResume { .. }
        | Change::CloseAgent { .. } => {
            return None;
        }
    };
    Some(task.event())
}
