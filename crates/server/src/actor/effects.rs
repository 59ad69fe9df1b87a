//! What happens once a batch is durable, on the writer thread: assignments go out (one frame per
//! agent per batch), cancels and drains are sent, long-poll waiters wake, the metrics count it,
//! the event stream publishes it, and the requests that waited for the commit get their answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::HashMap;

use hive_core::{AgentId, Change, TaskEnd, TaskId, TaskSpec, Timestamp};
use hive_proto::RawValue;
use hive_proto::protocol::HubMessage;
use hive_store::StoreError;

use crate::assign_frame::Assigned;
use crate::connections::{Connections, Outbound};
use crate::events::Events;
use crate::metrics::HubMetrics;
use crate::waiters::Waiters;

pub type DeferredReply = Box<dyn FnOnce(&Result<(), StoreError>) + Send>;

pub struct Effects {
    pub connections: Arc<Connections>,
    pub waiters: Arc<Waiters>,
    pub metrics: Arc<HubMetrics>,
    pub events: Arc<Events>,
    /// Number of the last batch whose callback ran.
    pub committed_seq: AtomicU64,
    /// The generation of the newest batch whose commit failed (0: none has).
    failed_generation: AtomicU64,
    /// The generation of the newest batch committed.
    last_ok_generation: AtomicU64,
    /// Wakes the actor when a commit fails.
    pub commit_failed: tokio::sync::Notify,
}

impl Effects {
    pub fn new(
        connections: Arc<Connections>,
        waiters: Arc<Waiters>,
        metrics: Arc<HubMetrics>,
        events: Arc<Events>,
    ) -> Self {
        Effects {
            connections,
            waiters,
            metrics,
            events,
            committed_seq: AtomicU64::new(0),
            failed_generation: AtomicU64::new(0),
            last_ok_generation: AtomicU64::new(0),
            commit_failed: tokio::sync::Notify::new(),
        }
    }

    pub fn failed_generation(&self) -> u64 {
        self.failed_generation.load(Ordering::Acquire)
    }

    pub fn last_ok_generation(&self) -> u64 {
        self.last_ok_generation.load(Ordering::Acquire)
    }

    pub fn after_commit(
        &self,
        seq: u64,
        generation: u64,
        outcome: Result<(), StoreError>,
        changes: Vec<Change>,
        replies: Vec<DeferredReply>,
    ) {
        // On a failed commit nothing is announced, the requests are answered with the error, and
        // the actor rebuilds its scheduler from the store (`rebuild`), so that nothing the store
        // refused runs.
        if outcome.is_ok() {
            self.last_ok_generation
                .fetch_max(generation, Ordering::AcqRel);
            // Before the assignments go out: an agent may report progress at once.
            self.events.progress.follow(&changes);
            self.announce(&changes);
            self.metrics.observe(&changes);
            self.events.publish(&changes);
        } else {
            self.failed_generation
                .fetch_max(generation, Ordering::AcqRel);
            self.events.progress.clear();
            self.commit_failed.notify_one();
        }
        self.committed_seq.fetch_max(seq, Ordering::AcqRel);
        for reply in replies {
            reply(&outcome);
        }
    }

    fn announce(&self, changes: &[Change]) {
        let mut assignments: Vec<(AgentId, AssignFrames)> = Vec::new();
        for change in changes {
            match change {
                Change::AttemptStarted {
                    spec,
                    attempt,
                    agent,
                    inputs,
                    lease_until,
                    ..
                } => {
                    let assignment = assignment(spec, *attempt, *lease_until, inputs);
                    match assignments.iter_mut().find(|(a, _)| a == agent) {
                        Some((_, frames)) => frames.push(assignment),
                        None => {
                            let mut frames = AssignFrames::default();
                            frames.push(assignment);
                            assignments.push((*agent, frames));
                        }
                    }
                }
                Change::SendCancel {
                    agent,
                    task,
                    attempt,
                } => {
                    let cancel = HubMessage::Cancel {
                        task_id: task.to_string(),
                        attempt: *attempt,
                    };
                    self.connections.send(*agent, Outbound::Message(cancel));
                }
                Change::SendDrain { agent } => {
                    self.connections
                        .send(*agent, Outbound::Message(HubMessage::Drain));
                }
                Change::SendResume { agent } => {
                    self.connections
                        .send(*agent, Outbound::Message(HubMessage::Resume));
                }
                Change::CloseAgent { agent } => {
                    self.connections.send(*agent, Outbound::Close(None));
                }
                _ => {}
            }
            if let Some((task, _)) = change.terminal() {
                self.waiters.notify(task);
            }
        }
        for (agent, frames) in assignments {
            for tasks in frames.done {
                // An agent gone meanwhile is fine: the lease runs out and the task is offered
                // again.
                self.connections.send(agent, Outbound::Assign(tasks));
            }
        }
    }
}

/// The bytes of assignments one `assign` frame carries before the next begins, so that a batch
/// of large payloads or inputs stays far below what a worker reads (64 MiB for the Rust worker;
/// one assignment larger than this goes alone).
const ASSIGN_FRAME_BYTES: usize = 8 << 20;

/// One agent's assignments of a batch, cut into frames of at most [`ASSIGN_FRAME_BYTES`].
#[derive(Default)]
struct AssignFrames {
    done: Vec<Vec<Assigned>>,
    bytes: usize,
}

impl AssignFrames {
    fn push(&mut self, assignment: Assigned) {
        let size = assignment.size();
        match self.done.last_mut() {
            Some(frame) if self.bytes + size <= ASSIGN_FRAME_BYTES => frame.push(assignment),
            _ => {
                self.done.push(vec![assignment]);
                self.bytes = 0;
            }
        }
        self.bytes += size;
    }
}

fn assignment(
    spec: &Arc<TaskSpec>,
    attempt: u32,
    lease_until: Timestamp,
    inputs: &[(TaskId, TaskEnd)],
) -> Assigned {
    let (inputs, failed_inputs) = if spec.depends_on.is_empty() {
        (None, Vec::new())
    } else {
        let (inputs, failed) = render_inputs(&spec.depends_on, inputs);
        (Some(inputs), failed)
    };
    Assigned {
        spec: spec.clone(),
        attempt,
        lease_until,
        inputs,
        failed_inputs,
    }
}

/// The `inputs` object (parent id -> result, or `{"status", "error"}` for a parent that did not
/// succeed), in the order of `depends_on`, and the ids of the parents that did not succeed.
fn render_inputs(
    depends_on: &[TaskId],
    inputs: &[(TaskId, TaskEnd)],
) -> (Box<RawValue>, Vec<String>) {
    let position: HashMap<TaskId, usize> = depends_on
        .iter()
        .enumerate()
        .rev()
        .map(|(i, id)| (*id, i))
        .collect();
    let mut ordered: Vec<&(TaskId, TaskEnd)> = inputs.iter().collect();
    ordered.sort_by_key(|(id, _)| position.get(id).copied().unwrap_or(usize::MAX));
    let failed = ordered
        .iter()
        .filter(|(_, end)| matches!(end, TaskEnd::Unsuccessful { .. }))
        .map(|(id, _)| id.to_string())
        .collect();
    let object = |value: &dyn Fn(&str) -> String| {
        let mut text = String::from("{");
        for (i, (parent, end)) in ordered.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push('"');
            text.push_str(&parent.to_string());
            text.push_str("\":");
            match end {
                TaskEnd::Succeeded(output) => text.push_str(&value(output)),
                TaskEnd::Unsuccessful { status, error } => text.push_str(
                    &serde_json::json!({ "status": status.as_str(), "error": &**error })
                        .to_string(),
                ),
            }
        }
        text.push('}');
        text
    };
    // Outputs were checked to be JSON when they arrived, so one parse of the whole suffices;
    // should the store have handed back something else, that output alone reads `null`.
    let inputs = RawValue::from_string(object(&|output| output.to_string())).unwrap_or_else(|_| {
        let checked = object(&|output| crate::views::raw(output).get().to_string());
        RawValue::from_string(checked).expect("an object of JSON values is JSON")
    });
    (inputs, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(bytes: usize) -> Assigned {
        let payload = format!("\"{}\"", "x".repeat(bytes));
        Assigned {
            spec: crate::assign_frame::tests::spec(1, "c", &payload),
            attempt: 1,
            lease_until: Timestamp(1),
            inputs: None,
            failed_inputs: Vec::new(),
        }
    }

    #[test]
    fn large_assignments_are_cut_into_frames_small_ones_share_one() {
        let mut frames = AssignFrames::default();
        for _ in 0..100 {
            frames.push(sized(10));
        }
        assert_eq!(frames.done.len(), 1);
        let mut frames = AssignFrames::default();
        for _ in 0..3 {
            frames.push(sized(5 << 20));
        }
        frames.push(sized(10));
        let sizes: Vec<usize> = frames.done.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            vec![1, 1, 2],
            "each large one alone, a small one joins the last"
        );
    }
}
