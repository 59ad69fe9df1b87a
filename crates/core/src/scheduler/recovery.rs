//! Rebuilding the scheduler's memory from the store after a restart.

use std::sync::Arc;

use foldhash::{HashMap, HashSet};

use super::consensus::{Ballot, ReplicaRun, Vote};
use super::{Change, Phase, Scheduler, Timer, dependency_error, distinct, runs_after};
use crate::consensus::vote_of;
use crate::ids::TaskId;
use crate::routing::RoutingPolicy;
use crate::task::AttemptOutcome;
use crate::task::{Capability, TaskEnd, TaskSpec, TaskStatus};
use crate::time::Timestamp;

/// An active task as the store last saw it.
#[derive(Debug, Clone)]
pub struct RecoveredTask {
    pub spec: TaskSpec,
    /// `waiting`, `queued` or `running`; terminal tasks are not recovered.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempt: u32,
    /// Of those, attempts a stopping agent gave back unstarted (not counted toward
    /// `max_attempts`): the `released` rows of its attempt log.
    pub released: u32,
    /// For a running task: when its lease ends.
    pub lease_until: Option<Timestamp>,
    /// For a queued task backing off: when it may run.
    pub not_before: Option<Timestamp>,
    /// For a consensus task: the attempts of its replicas so far.
    pub replicas: Vec<RecoveredReplica>,
}

/// A replica's attempt as the store last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredReplica {
    pub attempt: u32,
    /// The name of the agent it ran on: the identity that was asked.
    pub identity: Arc<str>,
    pub started_at: Timestamp,
    /// `None` while it runs.
    pub outcome: Option<AttemptOutcome>,
    pub output: Option<Arc<str>>,
    pub error: Option<String>,
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
        let mut voting = Vec::new();
        // One copy of each capability's name for its tasks, as `submit` shares its queue's.
        let mut names: HashSet<Capability> = HashSet::default();
        for recovered in tasks {
            if recovered.status.is_terminal() {
                continue;
            }
            let mut spec = recovered.spec;
            match names.get(&spec.capability) {
                Some(name) => spec.capability = name.clone(),
                None => {
                    names.insert(spec.capability.clone());
                }
            }
            let spec = Arc::new(spec);
            let id = spec.id;
            let attempt = recovered.attempt;
            let phase = match recovered.status {
                TaskStatus::Queued | TaskStatus::Running if spec.consensus.is_some() => {
                    let ballot = self.recover_ballot(&spec, attempt, recovered.replicas);
                    self.ballots.insert(id, Box::new(ballot));
                    voting.push(id);
                    Phase::Voting
                }
                TaskStatus::Running => {
                    // Its agent is unknown now: no result can match it, only the lease ends it.
                    let lease_until = recovered.lease_until.unwrap_or(now);
                    self.timers
                        .insert((lease_until, Timer::Lease { task: id, attempt }));
                    Phase::Running {
                        started_at: now,
                        lease_until,
                        agent: None,
                        others_running: super::UNKNOWN_LOAD,
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
            self.insert_task(spec, attempt, recovered.released, phase);
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
        // reaches tasks further down the chain. A task that fails here is not linked: a parent
        // failed before it would otherwise find a waiting child with nothing pending.
        let mut failed = Vec::new();
        let mut unblocked = Vec::new();
        for id in waiting {
            let deps = distinct(&self.tasks[&id].spec.depends_on);
            let mut active = Vec::new();
            let mut failed_dep = None;
            for dep in deps {
                if self.tasks.contains_key(&dep) {
                    active.push(dep);
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
            let inputs = self.inputs.get(&id).map_or(&[][..], Vec::as_slice);
            match failed_dep.or_else(|| self.inputs_refusal(inputs)) {
                Some(error) => failed.push((id, error)),
                None if active.is_empty() => unblocked.push(id),
                None => {
                    self.pending_deps.insert(id, active.len());
                    for dep in active {
                        self.dependents.entry(dep).or_default().push(id);
                    }
                }
            }
        }
        for (id, error) in failed {
            self.finish_unstarted(id, TaskStatus::Failed, Some(error), now);
        }
        for id in unblocked {
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
        // Decided if the votes already allow it, else its missing replicas are asked for.
        for id in voting {
            if self.ballots.contains_key(&id) {
                self.tally(id, now);
            }
        }
    }

    /// A consensus task's ballot from its replicas' attempts: running ones keep their leases
    /// (counted from their start), results count as votes again.
    fn recover_ballot(
        &mut self,
        spec: &TaskSpec,
        attempt: u32,
        replicas: Vec<RecoveredReplica>,
    ) -> Ballot {
        let vote = spec.consensus.as_deref().and_then(|c| c.vote.as_deref());
        let mut ballot = Ballot {
            started: attempt,
            ..Ballot::default()
        };
        for replica in replicas {
            ballot.started = ballot.started.max(replica.attempt);
            let voted = match (replica.outcome, &replica.output) {
                (None, _) => {
                    let lease_until = replica.started_at.plus_ms(spec.timeout_ms);
                    let timer = Timer::Lease {
                        task: spec.id,
                        attempt: replica.attempt,
                    };
                    self.timers.insert((lease_until, timer));
                    ballot.runs.push(ReplicaRun {
                        attempt: replica.attempt,
                        agent: None,
                        identity: replica.identity,
                        started_at: replica.started_at,
                        lease_until,
                        others_running: super::UNKNOWN_LOAD,
                    });
                    continue;
                }
                (Some(AttemptOutcome::Succeeded), Some(output)) => vote_of(output, vote).ok(),
                _ => None,
            };
            match (voted, replica.output) {
                (Some(value), Some(output)) => ballot.votes.push(Vote {
                    identity: replica.identity,
                    value,
                    output,
                }),
                _ if replica.outcome != Some(AttemptOutcome::Cancelled) => {
                    ballot.failed += 1;
                    ballot.last_error = replica.error;
                    if !ballot.failed_identities.contains(&replica.identity) {
                        ballot.failed_identities.push(replica.identity);
                    }
                }
                _ => {}
            }
        }
        ballot
    }
}
