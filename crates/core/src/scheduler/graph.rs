//! The task graph: how a task's end reaches the tasks that depend on it. A parent that
//! succeeds (or ends in any way, for a child with `on_parent_failure: run`) becomes one of the
//! child's inputs; the child is made ready when its last parent has ended, and fails when a
//! parent failed (by default) or its inputs pass `max_inputs_bytes`; a failure goes on down the
//! chain.

use foldhash::HashMap;

use super::{Change, Scheduler, count_queued};
use crate::ids::TaskId;
use crate::routing::RoutingPolicy;
use crate::task::{OnParentFailure, TaskEnd, TaskSpec, TaskStatus};
use crate::time::Timestamp;

impl<P: RoutingPolicy> Scheduler<P> {
    /// Why a task cannot run on these inputs, if it cannot: they are over the limit.
    pub(super) fn inputs_refusal(&self, inputs: &[(TaskId, TaskEnd)]) -> Option<String> {
        let bytes: usize = inputs.iter().map(|(_, end)| end.text_len()).sum();
        let limit = self.config.max_inputs_bytes;
        (bytes > limit).then(|| {
            format!(
                "its parents' results total {bytes} bytes, over the limit of {limit} bytes \
                 (tasks.max_inputs_bytes)"
            )
        })
    }

    /// Records how a parent of an active task ended.
    pub(super) fn add_input(&mut self, task: TaskId, parent: TaskId, end: TaskEnd) {
        self.payload_bytes += end.text_len();
        self.inputs.entry(task).or_default().push((parent, end));
    }

    /// Removes a task that ended and carries how it ended to the tasks waiting on it.
    pub(super) fn settle(&mut self, id: TaskId, end: TaskEnd, now: Timestamp) {
        let mut ended = vec![(id, end)];
        while let Some((id, end)) = ended.pop() {
            if let Some(task) = self.tasks.remove(&id) {
                self.payload_bytes -= task.spec.payload.len();
                count_queued(
                    &mut self.queued,
                    &task.spec.capability,
                    task.phase.queued(),
                    false,
                );
                if !task.spec.depends_on.is_empty()
                    && let Some(inputs) = self.inputs.remove(&id)
                {
                    self.payload_bytes -= inputs.iter().map(|(_, e)| e.text_len()).sum::<usize>();
                }
            }
            self.pending_deps.remove(&id);
            for child in self.dependents.remove(&id).unwrap_or_default() {
                if self.active_status(child) != Some(TaskStatus::Waiting) {
                    continue;
                }
                let spec = &self.tasks[&child].spec;
                let capability = spec.capability.clone();
                let refusal = if runs_after(spec, &end) {
                    self.add_input(child, id, end.clone());
                    let left = self.pending_deps.get_mut(&child).expect("waiting task");
                    *left -= 1;
                    let ready = *left == 0;
                    // Inputs only grow while it waits: past the limit now, it fails now.
                    let refusal = self.inputs_refusal(&self.inputs[&child]);
                    if ready && refusal.is_none() {
                        self.pending_deps.remove(&child);
                        self.changes.push(Change::TaskReady {
                            task: child,
                            capability: capability.clone(),
                            at: now,
                        });
                        self.make_ready(child, now);
                    }
                    refusal
                } else {
                    Some(dependency_error(id, end.status()))
                };
                if let Some(error) = refusal {
                    let child_end = TaskEnd::Unsuccessful {
                        status: TaskStatus::Failed,
                        error: error.as_str().into(),
                    };
                    self.changes.push(Change::TaskFinished {
                        task: child,
                        capability,
                        status: TaskStatus::Failed,
                        error: Some(error),
                        result: None,
                        at: now,
                    });
                    ended.push((child, child_end));
                }
            }
        }
    }
}

pub(super) fn dependency_error(dep: TaskId, status: TaskStatus) -> String {
    format!("dependency {dep} {status}")
}

/// What an attempt of the task is given of its parents.
pub(super) fn inputs_of(
    inputs: &HashMap<TaskId, Vec<(TaskId, TaskEnd)>>,
    spec: &TaskSpec,
) -> Vec<(TaskId, TaskEnd)> {
    if spec.depends_on.is_empty() {
        return Vec::new();
    }
    inputs.get(&spec.id).cloned().unwrap_or_default()
}

/// A task's dependencies, each once, in order of id.
pub(super) fn distinct(depends_on: &[TaskId]) -> Vec<TaskId> {
    let mut deps = depends_on.to_vec();
    deps.sort_unstable();
    deps.dedup();
    deps
}

/// Whether a task still runs after its parent ended this way (and receives it as an input).
pub(super) fn runs_after(spec: &TaskSpec, parent: &TaskEnd) -> bool {
    matches!(parent, TaskEnd::Succeeded(_)) || spec.on_parent_failure == OnParentFailure::Run
}
