//! Rebuilding the scheduler's memory from the store after a restart.

use std::sync::Arc;

use foldhash::HashMap;

use super::{Change, Phase, Scheduler, Timer, dependency_error, distinct, runs_after};
use crate::ids::TaskId;
use crate::routing::RoutingPolicy;
use crate::task::{TaskEnd, TaskSpec, TaskStatus};
use crate::time::Timestamp;

/// An active task as the store last saw it.
#[derive(Debug, Clone)]
pub struct RecoveredTask {
    pub spec: TaskSpec,
    /// `waiting`, `queued` or `running`; terminal tasks are not recovered.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempt: u32,
    /// For a running task: when its lease ends.
    pub lease_until: Option<Timestamp>,
    /// For a queued task backing off: when it may run.
    pub not_before: Option<Timestamp>,
}

impl<P: RoutingPolicy> Scheduler<P> {
    /// Loads the active tasks found in the store. Emits no `TaskCreated` (they are stored
    /// already). A running task keeps its lease, since its agent may still be at work; call
    /// [`advance`](Scheduler::advance) afterwards to re-queue those whose lease has expired. A
    /// waiting task whose dependency failed or is missing fails now. `resolve` answers how a
    /// dependency that is not active ended (each is asked once), for the inputs of its dependents.
    pub fn restore(
        &mut self,
        tasks: Vec<RecoveredTask>,
        now: Timestamp,
        resolve: &mut dyn FnMut(TaskId) -> Option<TaskEnd>,
    ) {
        // One answer per parent, shared by all its children (a fan-out shares one output).
        let mut ended: HashMap<TaskId, Option<TaskEnd>> = HashMap::default();
        let mut resolve = |dep: TaskId| ended.entry(dep).or_insert_with(|| resolve(dep)).clone();
        let mut started = Vec::new();
        let mut waiting = Vec::new();
        let mut ready = Vec::new();
        for recovered in tasks {
            if recovered.status.is_terminal() {
                continue;
            }
            let spec = Arc::new(recovered.spec);
            let id = spec.id;
            let attempt = recovered.attempt;
            let phase = match recovered.status {
                TaskStatus::Running => {
                    // Its agent is unknown now: no result can match it, only the lease ends it.
                    let lease_until = recovered.lease_until.unwrap_or(now);
                    self.timers
                        .insert((lease_until, Timer::Lease { task: id, attempt }));
                    Phase::Running {
                        started_at: now,
                        lease_until,
                        agent: None,
                    }
                }
                TaskStatus::Queued => match recovered.not_before {
                    Some(until) if until > now => {
                        self.timers.insert((until, Timer::Backoff(id)));
                        Phase::Backoff { until }
                    }
                    _ => {
                        // Made ready below, once every task is loaded.
                        ready.push(id);
                        Phase::Waiting
                    }
                },
                _ => {
                    waiting.push(id);
                    Phase::Waiting
                }
            };
            if recovered.status != TaskStatus::Waiting {
                started.push(id);
            }
            self.insert_task(spec, attempt, phase);
        }

        // Tasks past waiting had every parent ended: they get their inputs back.
        for id in started {
            for dep in distinct(&self.tasks[&id].spec.depends_on) {
                if let Some(end) = resolve(dep)
                    && runs_after(&self.tasks[&id].spec, &end)
                {
                    self.add_input(id, dep, end);
                }
            }
        }

        // Link every waiting task to its active dependencies before failing any, so a failure
        // reaches tasks further down the chain.
        let mut failed = Vec::new();
        let mut unblocked = Vec::new();
        for id in waiting {
            let deps = distinct(&self.tasks[&id].spec.depends_on);
            let mut pending = 0;
            let mut failed_dep = None;
            for dep in deps {
                if self.tasks.contains_key(&dep) {
                    pending += 1;
                    self.dependents.entry(dep).or_default().push(id);
                    continue;
                }
                match resolve(dep) {
                    Some(end) if runs_after(&self.tasks[&id].spec, &end) => {
                        self.add_input(id, dep, end);
                    }
                    Some(end) => {
                        failed_dep.get_or_insert(dependency_error(dep, end.status()));
                    }
                    None => {
                        failed_dep.get_or_insert(format!("dependency {dep} is missing"));
                    }
                }
            }
            match failed_dep {
                Some(error) => failed.push((id, error)),
                None if pending == 0 => unblocked.push(id),
                None => {
                    self.pending_deps.insert(id, pending);
                }
            }
        }
        for (id, error) in failed {
            self.finish_unstarted(id, TaskStatus::Failed, Some(error), now);
        }
        for id in unblocked {
            let inputs = self.inputs.get(&id).map_or(&[][..], Vec::as_slice);
            if let Some(error) = self.inputs_refusal(inputs) {
                self.finish_unstarted(id, TaskStatus::Failed, Some(error), now);
                continue;
            }
            if self.active_status(id) == Some(TaskStatus::Waiting) {
                let capability = self.tasks[&id].spec.capability.clone();
                self.changes.push(Change::TaskReady {
                    task: id,
                    capability,
                    at: now,
                });
                self.make_ready(id, now);
            }
        }
        for id in ready {
            self.make_ready(id, now);
        }
    }

    /// Checks the scheduler's internal consistency; for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut running_per_agent = std::collections::HashMap::new();
        let mut keyed = 0;
        for (id, task) in &self.tasks {
            match task.phase {
                Phase::Running {
                    agent, lease_until, ..
                } => {
                    if let Some(agent) = agent {
                        *running_per_agent.entry(agent).or_insert(0u32) += 1;
                    }
                    let attempt = task.attempt;
                    let timer = (lease_until, Timer::Lease { task: *id, attempt });
                    if !self.timers.contains(&timer) {
                        return Err(format!("running task {id} has no lease timer"));
                    }
                }
                Phase::Ready { rank } => {
                    keyed += 1;
                    let queue = self.queues.get(&task.spec.capability);
                    if !queue.is_some_and(|q| q.contains(&(rank, *id))) {
                        return Err(format!("queued task {id} is not in its queue"));
                    }
                }
                Phase::Backoff { until } => {
                    if !self.timers.contains(&(until, Timer::Backoff(*id))) {
                        return Err(format!("backing-off task {id} has no timer"));
                    }
                }
                Phase::Waiting => {
                    if self.pending_deps.get(id).copied().unwrap_or(0) == 0 {
                        return Err(format!("waiting task {id} waits for nothing"));
                    }
                }
            }
        }
        if let Some(id) = self.inputs.keys().find(|id| !self.tasks.contains_key(id)) {
            return Err(format!("inputs kept for task {id}, which is not active"));
        }
        let bytes: usize = self
            .tasks
            .values()
            .map(|t| t.spec.payload.len())
            .sum::<usize>()
            + self
                .inputs
                .values()
                .flatten()
                .map(|(_, e)| e.text_len())
                .sum::<usize>();
        if bytes != self.payload_bytes {
            return Err(format!(
                "{} payload bytes counted, {bytes} held",
                self.payload_bytes
            ));
        }
        let mut queued_by_capability: std::collections::HashMap<&crate::task::Capability, usize> =
            std::collections::HashMap::new();
        for task in self.tasks.values().filter(|t| t.phase.queued()) {
            *queued_by_capability
                .entry(&task.spec.capability)
                .or_default() += 1;
        }
        if queued_by_capability.len() != self.queued.len()
            || queued_by_capability
                .iter()
                .any(|(c, n)| self.queued.get(*c) != Some(n))
        {
            return Err(format!(
                "queued counts {:?} but tasks say {queued_by_capability:?}",
                self.queued
            ));
        }
        let queued: usize = self.queues.values().map(|q| q.len()).sum();
        if queued != keyed {
            return Err(format!("{queued} queue entries for {keyed} ready tasks"));
        }
        for (id, agent) in &self.agents {
            let running = running_per_agent.get(id).copied().unwrap_or(0);
            if running != agent.running {
                return Err(format!(
                    "agent {id} counts {} running, has {running}",
                    agent.running
                ));
            }
            if agent.running > agent.spec.slots {
                return Err(format!(
                    "agent {id} runs {} in {} slots",
                    agent.running, agent.spec.slots
                ));
            }
            if agent.accepting() {
                for (capability, _) in &agent.spec.capabilities {
                    let queued = self.queues.get(capability).is_some_and(|q| !q.is_empty());
                    // A holding policy may keep tasks queued for a busy agent (placement.rs).
                    let held_for_busy = self.policy.weighs_busy_agents()
                        && self.agents_by_capability[capability].iter().any(|(a, _)| {
                            let other = &self.agents[a];
                            other.connected && !other.draining && !other.accepting()
                        });
                    if queued && !held_for_busy {
                        return Err(format!("agent {id} is free while {capability} tasks queue"));
                    }
                }
            }
        }
        Ok(())
    }
}
