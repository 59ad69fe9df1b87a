//! The scheduler: the single owner of every active task's and agent's state.
//!
//! It is event driven. Each operation (a submit, a result, an agent joining, time passing) runs to
//! completion and offers work the moment a free slot and a matching task both exist; nothing
//! polls. Time only moves through [`Scheduler::advance`], which fires the timers due (leases,
//! backoff, heartbeats); [`Scheduler::next_wakeup`] says when the runtime should call it next.
//!
//! Invariant kept by every operation: if a capability's ready queue is not empty, no agent that
//! has that capability and accepts work has a free slot, unless the policy holds the queued tasks
//! for a busy agent of the capability (the learned policy may; see `placement`). So a newly ready
//! task either goes to an agent (chosen by the [`RoutingPolicy`]) or joins the queue, and a freed
//! slot takes the head of its agent's queues (or, with a holding policy, offers it around).
//!
//! Terminal tasks leave memory: the caller keeps them in its store and answers the dependency and
//! idempotency look-ups for them through the `resolve` callbacks.

mod changes;
mod consensus;
#[cfg(test)]
mod consensus_tests;
mod graph;
#[cfg(test)]
mod inputs_tests;
mod invariants;
mod knowledge;
#[cfg(test)]
mod learning_tests;
mod placement;
#[cfg(test)]
mod proptests;
mod recovery;
mod rejoin;
#[cfg(test)]
mod release_tests;
mod sharing;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeSet, VecDeque};

// foldhash, not std's SipHash: keys are ids the hub minted and capability names, so resistance
// to hash flooding buys nothing, and SipHash was 45% of the scheduler's instructions.
use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

pub use changes::{CancelError, Change, DrainError, NextStatus, Report, ReportError, SubmitError};
pub use knowledge::LearnedEstimate;
pub use recovery::{RecoveredReplica, RecoveredTask};
pub use rejoin::{HeldAttempt, Rejoined};
pub use sharing::{Released, SpareSlots};

use graph::{dependency_error, distinct, inputs_of, runs_after};

use crate::agent::{AgentSnapshot, AgentSpec, AgentState, CapabilityStats};
use crate::estimate::{LearningConfig, Rate, RoutingView};
use crate::ids::{AgentId, TaskId};
use crate::queue::{QueueKey, ReadyQueue};
use crate::routing::RoutingPolicy;
use crate::task::{AttemptOutcome, Capability, TaskEnd, TaskSpec, TaskStatus};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// A waiting task gains one priority level per this many milliseconds.
    pub aging_ms: u64,
    /// An agent silent for this long goes offline.
    pub heartbeat_timeout_ms: u64,
    /// How fast what routing learned fades.
    pub learning: LearningConfig,
    /// The most bytes of parents' results one task may receive as inputs; a task whose parents
    /// produced more fails (its assignment would be one frame that large).
    pub max_inputs_bytes: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            aging_ms: 5_000,
            heartbeat_timeout_ms: 15_000,
            learning: LearningConfig::default(),
            max_inputs_bytes: 8 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Lease {
        task: TaskId,
        attempt: u32,
    },
    Backoff(TaskId),
    Heartbeat(AgentId),
    /// A task held for a busy agent is offered again (placement.rs).
    Reoffer(TaskId),
}

#[derive(Debug)]
struct ActiveTask {
    spec: Arc<TaskSpec>,
    /// Attempts started so far; the current one while running.
    attempt: u32,
    /// Of those, attempts given back unstarted by a stopping agent: they do not count toward
    /// `max_attempts`.
    released: u32,
    phase: Phase,
}

impl ActiveTask {
    /// Whether a failed attempt leaves another within `max_attempts`.
    fn may_retry(&self) -> bool {
        self.attempt - self.released < self.spec.max_attempts
    }
}

/// Where an active task stands, holding only what that phase needs (a million queued tasks are
/// a million of these, so its size is memory).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waits for its dependencies.
    Waiting,
    /// Queued and ready: in its capability's queue under the key `(rank, id)`.
    Ready { rank: i64 },
    /// Queued, backing off until `until`.
    Backoff { until: Timestamp },
    /// An attempt runs. `agent` is `None` after a restart recovered a running task.
    /// `others_running`: attempts the agent ran besides this one as it started (its load, as a
    /// routing model learns it); [`UNKNOWN_LOAD`] for an attempt a restart recovered, whose
    /// start and load are not known.
    Running {
        started_at: Timestamp,
        lease_until: Timestamp,
        agent: Option<AgentId>,
        others_running: u32,
    },
    /// A consensus task counting votes: its replicas run, or wait for agents, as its
    /// [`Ballot`](consensus::Ballot) says.
    Voting,
}

impl Phase {
    fn queued(self) -> bool {
        matches!(self, Phase::Ready { .. } | Phase::Backoff { .. })
    }
}

/// Keeps the per-capability count of queued tasks in step with one task's change of phase.
fn count_queued(
    queued: &mut HashMap<Capability, usize>,
    capability: &Capability,
    was: bool,
    is: bool,
) {
    match (was, is) {
        (false, true) => *queued.entry(capability.clone()).or_default() += 1,
        (true, false) => {
            if let Some(n) = queued.get_mut(capability) {
                *n -= 1;
                if *n == 0 {
                    queued.remove(capability);
                }
            }
        }
        _ => {}
    }
}

impl ActiveTask {
    fn status(&self) -> TaskStatus {
        match self.phase {
            Phase::Waiting => TaskStatus::Waiting,
            Phase::Ready { .. } | Phase::Backoff { .. } => TaskStatus::Queued,
            Phase::Running { .. } | Phase::Voting => TaskStatus::Running,
        }
    }
}

#[derive(Debug)]
struct AgentEntry {
    /// Shared with the snapshots (the API's views, the store's agent rows), which read it.
    spec: Arc<AgentSpec>,
    /// Slab index in [`Knowledge`](knowledge::Knowledge) of each capability's estimate, in the
    /// order of `spec.capabilities`.
    estimate_slots: Vec<usize>,
    connected: bool,
    draining: bool,
    running: u32,
    connected_at: Timestamp,
    last_heartbeat: Timestamp,
    stats: HashMap<Capability, CapabilityStats>,
}

impl AgentEntry {
    fn accepting(&self) -> bool {
        self.connected && !self.draining && self.running < self.spec.slots
    }

    fn state(&self) -> AgentState {
        match (self.connected, self.draining, self.running) {
            (false, _, _) => AgentState::Offline,
            (true, true, _) => AgentState::Draining,
            (true, false, 0) => AgentState::Idle,
            (true, false, _) => AgentState::Busy,
        }
    }

    /// The agent as a routing candidate for its `i`-th capability.
    fn candidate<'a>(
        &'a self,
        id: AgentId,
        i: usize,
        knowledge: &'a knowledge::Knowledge,
    ) -> crate::routing::Candidate<'a> {
        crate::routing::Candidate {
            agent: id,
            identity: &self.spec.name,
            running: self.running,
            slots: self.spec.slots,
            level: self.spec.capabilities[i].1,
            estimate: knowledge.get(self.estimate_slots[i]),
        }
    }

    /// The agent's level and estimate slot for a capability it has.
    fn capability(&self, capability: &Capability) -> Option<(f64, usize)> {
        let i = self
            .spec
            .capabilities
            .iter()
            .position(|(c, _)| c == capability)?;
        Some((self.spec.capabilities[i].1, self.estimate_slots[i]))
    }
}

pub struct Scheduler<P> {
    config: SchedulerConfig,
    policy: P,
    /// Boxed: at a million queued tasks the table has 2^21 buckets, and a bucket holding the
    /// ~100-byte task inline would cost twice what the task itself does.
    tasks: HashMap<TaskId, Box<ActiveTask>>,
    queues: HashMap<Capability, ReadyQueue>,
    /// Waiting tasks by the task they wait for.
    dependents: HashMap<TaskId, Vec<TaskId>>,
    /// Unmet dependencies of each waiting task.
    pending_deps: HashMap<TaskId, usize>,
    /// How the ended parents of each active task ended: its assignment's inputs.
    inputs: HashMap<TaskId, Vec<(TaskId, TaskEnd)>>,
    timers: BTreeSet<(Timestamp, Timer)>,
    agents: HashMap<AgentId, AgentEntry>,
    /// Connected agents by capability.
    /// With the capability's index in the agent's `spec.capabilities`, so routing reads its level
    /// and estimate without searching.
    agents_by_capability: HashMap<Capability, Vec<(AgentId, usize)>>,
    /// Queued tasks (ready or backing off) by capability, kept as phases change so that
    /// `queue_depths` does not walk a million tasks inside the scheduler's turn.
    queued: HashMap<Capability, usize>,
    /// Tasks made ready per capability, for a policy that weighs busy agents (placement.rs).
    arrivals: HashMap<Capability, Rate>,
    /// Held tasks with a [`Timer::Reoffer`] pending.
    reoffers: foldhash::HashSet<TaskId>,
    /// The replicas and votes of each consensus task past waiting (its phase `Voting`).
    ballots: HashMap<TaskId, Box<consensus::Ballot>>,
    /// Consensus tasks that need more replicas placed, by capability, ranked like ready tasks.
    /// Apart from the ready queues because not every agent may take them (one identity
    /// answers once per task).
    ballot_queue: HashMap<Capability, BTreeSet<QueueKey>>,
    /// Offline agents, oldest first; kept for the agent list up to [`MAX_OFFLINE_AGENTS`].
    offline: VecDeque<AgentId>,
    changes: Vec<Change>,
    /// Bytes of the active tasks' payloads and inputs, for [`Scheduler::memory`].
    payload_bytes: usize,
    knowledge: knowledge::Knowledge,
    /// The latest moment seen by [`Scheduler::advance`], for reading estimates in snapshots.
    now: Timestamp,
}

/// What the scheduler holds, as [`Scheduler::memory`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerMemory {
    pub active_tasks: usize,
    /// The task table (its allocated buckets), each task's record and spec, the ready-queue
    /// entries, the payloads and the inputs kept for dependents (a parent's result shared by
    /// several children counted once per child). Not counted: allocator overhead, the strings of
    /// capabilities and idempotency keys, agents, timers, consensus tasks' ballots.
    pub bytes: usize,
}

/// Offline agents remembered (the store forgets one with it: [`Change::AgentForgotten`]). Every
/// reconnect is a new agent, so without a bound a hub with flapping workers would grow without end.
pub const MAX_OFFLINE_AGENTS: usize = 1_000;

impl<P: RoutingPolicy> Scheduler<P> {
    pub fn new(config: SchedulerConfig, policy: P) -> Self {
        Scheduler {
            config,
            policy,
            tasks: HashMap::new(),
            queues: HashMap::new(),
            dependents: HashMap::new(),
            pending_deps: HashMap::new(),
            inputs: HashMap::new(),
            timers: BTreeSet::new(),
            agents: HashMap::new(),
            agents_by_capability: HashMap::new(),
            queued: HashMap::new(),
            arrivals: HashMap::new(),
            reoffers: foldhash::HashSet::default(),
            ballots: HashMap::new(),
            ballot_queue: HashMap::new(),
            offline: VecDeque::new(),
            changes: Vec::new(),
            payload_bytes: 0,
            knowledge: knowledge::Knowledge::new(),
            now: Timestamp::default(),
        }
    }

    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// The changes decided since the last call, in order, then the estimates learned since.
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.knowledge.take_dirty(&mut self.changes);
        std::mem::take(&mut self.changes)
    }

    /// Puts back what was learned before a restart (from the store).
    pub fn restore_learned(&mut self, learned: Vec<LearnedEstimate>) {
        self.knowledge.restore(learned);
    }

    /// Status of a task still in memory (waiting, queued or running).
    pub fn active_status(&self, id: TaskId) -> Option<TaskStatus> {
        let task = self.tasks.get(&id)?;
        match task.phase {
            Phase::Voting => Some(self.ballots[&id].status()),
            _ => Some(task.status()),
        }
    }

    /// Accepts a validated task. `resolve` answers how a dependency that is not active here (a
    /// finished task) ended, or `None` if no such task exists.
    pub fn submit(
        &mut self,
        mut spec: TaskSpec,
        now: Timestamp,
        resolve: &mut dyn FnMut(TaskId) -> Option<TaskEnd>,
    ) -> Result<TaskStatus, SubmitError> {
        if self.tasks.contains_key(&spec.id) {
            return Err(SubmitError::DuplicateId(spec.id));
        }
        let deps = distinct(&spec.depends_on);
        let mut pending = Vec::new();
        let mut failed_dep = None;
        let mut inputs = Vec::new();
        for dep in deps {
            if self.tasks.contains_key(&dep) {
                pending.push(dep);
                continue;
            }
            match resolve(dep) {
                Some(end) if runs_after(&spec, &end) => inputs.push((dep, end)),
                Some(end) => {
                    failed_dep.get_or_insert((dep, end.status()));
                }
                None => return Err(SubmitError::UnknownDependency(dep)),
            }
        }
        // The tasks of a capability share one copy of its name, its queue's once it has one: a
        // copy of its own cost each queued task 48 bytes (BENCHMARKS.md, "Memory per queued
        // task").
        if let Some((name, _)) = self.queues.get_key_value(&spec.capability) {
            spec.capability = name.clone();
        }
        let spec = Arc::new(spec);
        let id = spec.id;
        // Inputs only grow while it waits: past the limit now, it fails now.
        let refusal = match failed_dep {
            Some((dep, status)) => Some(dependency_error(dep, status)),
            None => self.inputs_refusal(&inputs),
        };
        if let Some(error) = refusal {
            self.changes.push(Change::TaskCreated {
                spec,
                status: TaskStatus::Failed,
                error: Some(error),
            });
            return Ok(TaskStatus::Failed);
        }
        let status = if pending.is_empty() {
            TaskStatus::Queued
        } else {
            TaskStatus::Waiting
        };
        self.changes.push(Change::TaskCreated {
            spec: spec.clone(),
            status,
            error: None,
        });
        // A queued task is made ready just below, which sets its phase.
        self.insert_task(spec, 0, 0, Phase::Waiting);
        for (dep, end) in inputs {
            self.add_input(id, dep, end);
        }
        if pending.is_empty() {
            self.make_ready(id, now);
        } else {
            self.pending_deps.insert(id, pending.len());
            for dep in pending {
                self.dependents.entry(dep).or_default().push(id);
            }
        }
        Ok(status)
    }

    pub fn register_agent(&mut self, id: AgentId, spec: AgentSpec, now: Timestamp) {
        self.add_agent(id, Arc::new(spec), now);
        self.emit_agent(id);
        self.fill_agent(id, now);
    }

    /// Adds a connected agent with nothing running; announcing it and offering it work are the
    /// caller's.
    fn add_agent(&mut self, id: AgentId, spec: Arc<AgentSpec>, now: Timestamp) {
        let identity: Arc<str> = spec.name.as_str().into();
        let mut learned = Vec::with_capacity(spec.capabilities.len());
        for (i, (capability, _)) in spec.capabilities.iter().enumerate() {
            self.agents_by_capability
                .entry(capability.clone())
                .or_default()
                .push((id, i));
            learned.push(self.knowledge.slot(&identity, capability));
        }
        self.agents.insert(
            id,
            AgentEntry {
                spec,
                estimate_slots: learned,
                connected: true,
                draining: false,
                running: 0,
                connected_at: now,
                last_heartbeat: now,
                stats: HashMap::new(),
            },
        );
        self.timers.insert((
            now.plus_ms(self.config.heartbeat_timeout_ms),
            Timer::Heartbeat(id),
        ));
    }

    /// Records that the agent is alive. Returns false for an unknown or offline agent.
    pub fn heartbeat(&mut self, id: AgentId, now: Timestamp) -> bool {
        match self.agents.get_mut(&id) {
            Some(agent) if agent.connected => {
                // The heartbeat timer is checked lazily when it fires, so a heartbeat is one store.
                agent.last_heartbeat = now;
                true
            }
            _ => false,
        }
    }

    /// The agent's connection is gone. Its running attempts keep their leases: the agent may still
    /// be working, and re-running them before the lease ends could run a task twice at once.
    pub fn disconnect_agent(&mut self, id: AgentId) {
        let Some(agent) = self.agents.get_mut(&id) else {
            return;
        };
        if !agent.connected {
            return;
        }
        agent.connected = false;
        for (capability, _) in &agent.spec.capabilities {
            if let Some(ids) = self.agents_by_capability.get_mut(capability) {
                ids.retain(|(a, _)| *a != id);
            }
        }
        self.emit_agent(id);
        self.release_holds_of(id);
        for capability in &self.capabilities_of(id) {
            self.forget_if_unused(capability);
        }
        self.offline.push_back(id);
        if self.offline.len() > MAX_OFFLINE_AGENTS {
            // Its attempts, if any, still end by their leases; a missing agent is skipped there.
            let oldest = self.offline.pop_front().expect("non-empty");
            self.agents.remove(&oldest);
            self.changes.push(Change::AgentForgotten { agent: oldest });
        }
    }

    pub fn drain(&mut self, id: AgentId) -> Result<AgentSnapshot, DrainError> {
        let agent = self
            .agents
            .get_mut(&id)
            .ok_or(DrainError::UnknownAgent(id))?;
        if !agent.connected {
            return Err(DrainError::Offline(id));
        }
        if !agent.draining {
            agent.draining = true;
            self.emit_agent(id);
            self.changes.push(Change::SendDrain { agent: id });
            self.release_holds_of(id);
        }
        Ok(self.snapshot(id).expect("agent exists"))
    }

    /// Undoes a drain: the agent takes work again (and is told so).
    pub fn undrain(&mut self, id: AgentId, now: Timestamp) -> Result<AgentSnapshot, DrainError> {
        let agent = self
            .agents
            .get_mut(&id)
            .ok_or(DrainError::UnknownAgent(id))?;
        if !agent.connected {
            return Err(DrainError::Offline(id));
        }
        if agent.draining {
            agent.draining = false;
            self.emit_agent(id);
            self.changes.push(Change::SendResume { agent: id });
            self.fill_agent(id, now);
        }
        Ok(self.snapshot(id).expect("agent exists"))
    }

    /// An agent's result for an attempt. Rejected unless it names the current attempt and comes
    /// from the agent running it (fencing): a task is never completed twice.
    pub fn report(
        &mut self,
        agent: AgentId,
        task: TaskId,
        attempt: u32,
        report: Report,
        now: Timestamp,
    ) -> Result<(), ReportError> {
        let current = self
            .tasks
            .get(&task)
            .ok_or(ReportError::UnknownTask(task))?;
        if current.phase == Phase::Voting {
            return self.report_replica(agent, task, attempt, report, now);
        }
        let runs_here =
            matches!(current.phase, Phase::Running { agent: Some(a), .. } if a == agent);
        if !runs_here || current.attempt != attempt {
            return Err(ReportError::StaleAttempt {
                task,
                attempt,
                current: current.attempt,
            });
        }
        let mut draining = false;
        if let Some(entry) = self.agents.get_mut(&agent) {
            entry.last_heartbeat = now;
            draining = entry.draining;
        }
        match report {
            Report::Success { output } => self.end_attempt(
                task,
                AttemptOutcome::Succeeded,
                Some(output.into()),
                None,
                Retry::No,
                now,
            ),
            Report::Failure { error, retryable } => self.end_attempt(
                task,
                AttemptOutcome::Failed,
                None,
                Some(error),
                if retryable {
                    Retry::AFTER_BACKOFF
                } else {
                    Retry::No
                },
                now,
            ),
            Report::Throttled {
                error,
                retry_after_ms,
            } => self.end_attempt(
                task,
                AttemptOutcome::Failed,
                None,
                Some(error),
                Retry::Backoff {
                    at_least_ms: retry_after_ms,
                },
                now,
            ),
            Report::Released if draining => self.end_attempt(
                task,
                AttemptOutcome::Released,
                None,
                Some("released unstarted by its agent, which is stopping".into()),
                Retry::No,
                now,
            ),
            // Only a stopping agent may give work back uncounted: any other could pass a task
            // around for ever.
            Report::Released => self.end_attempt(
                task,
                AttemptOutcome::Failed,
                None,
                Some(RELEASED_NOT_DRAINING.into()),
                Retry::AFTER_BACKOFF,
                now,
            ),
        }
        Ok(())
    }

    pub fn cancel(&mut self, id: TaskId, now: Timestamp) -> Result<(), CancelError> {
        let task = self.tasks.get(&id).ok_or(CancelError::NotActive(id))?;
        if task.phase == Phase::Voting {
            self.decide(id, consensus::Verdict::Cancelled, now);
        } else if let Phase::Running { agent, .. } = task.phase {
            if let Some(agent) = agent {
                self.changes.push(Change::SendCancel {
                    agent,
                    task: id,
                    attempt: task.attempt,
                });
            }
            let error = Some("cancelled".to_string());
            self.end_attempt(id, AttemptOutcome::Cancelled, None, error, Retry::No, now);
        } else {
            self.finish_unstarted(id, TaskStatus::Cancelled, None, now);
        }
        Ok(())
    }

    /// Fires every timer due at `now`: expired leases, ended backoffs, silent agents.
    pub fn advance(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        while let Some(&(due, timer)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Lease { task, attempt }
                    if self
                        .tasks
                        .get(&task)
                        .is_some_and(|t| t.phase == Phase::Voting) =>
                {
                    self.replica_lease_expired(task, attempt, now);
                }
                Timer::Lease { task, attempt } => {
                    let live = self.tasks.get(&task).is_some_and(|t| {
                        matches!(t.phase, Phase::Running { .. }) && t.attempt == attempt
                    });
                    if live {
                        let running_on = match self.tasks[&task].phase {
                            Phase::Running { agent, .. } => agent,
                            _ => None,
                        };
                        let timeout = self.tasks[&task].spec.timeout_ms;
                        let error = format!("lease of {timeout} ms expired");
                        self.end_attempt(
                            task,
                            AttemptOutcome::LeaseExpired,
                            None,
                            Some(error),
                            Retry::AFTER_BACKOFF,
                            now,
                        );
                        // The agent may still be at it: tell it to stop, since its slot is
                        // given to other work now.
                        if let Some(agent) = running_on {
                            self.changes.push(Change::SendCancel {
                                agent,
                                task,
                                attempt,
                            });
                        }
                    }
                }
                Timer::Backoff(task) => {
                    let due_now = self
                        .tasks
                        .get(&task)
                        .is_some_and(|t| t.phase == Phase::Backoff { until: due });
                    if due_now {
                        self.make_ready(task, now);
                    }
                }
                Timer::Heartbeat(agent) => self.check_heartbeat(agent, now),
                Timer::Reoffer(task) => self.reoffer(task, now),
            }
        }
    }

    /// When [`advance`](Self::advance) next has something to do.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.timers.first().map(|(due, _)| *due)
    }

    pub fn agents(&self) -> Vec<AgentSnapshot> {
        let mut totals = HashMap::new();
        // The ids sorted, not the snapshots: a snapshot is several times the bytes to move, and
        // sorting them was a fifth of a listing's time on the actor.
        let mut ids: Vec<AgentId> = self.agents.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.snapshot_with(id, &mut totals))
            .collect()
    }

    pub fn snapshot(&self, id: AgentId) -> Option<AgentSnapshot> {
        self.snapshot_with(id, &mut HashMap::new())
    }

    /// `totals`: the assignments of every identity per capability, faded to now, filled as
    /// needed so that a list of agents sums each capability once.
    fn snapshot_with(
        &self,
        id: AgentId,
        totals: &mut HashMap<Capability, f64>,
    ) -> Option<AgentSnapshot> {
        let agent = self.agents.get(&id)?;
        let mut stats: Vec<_> = agent.stats.iter().map(|(c, s)| (c.clone(), *s)).collect();
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        let learning = &self.config.learning;
        let mut routing: Vec<_> = agent
            .spec
            .capabilities
            .iter()
            .zip(&agent.estimate_slots)
            .map(|((capability, _), slot)| {
                let total = *totals.entry(capability.clone()).or_insert_with(|| {
                    self.knowledge
                        .of_capability(capability)
                        .map(|e| e.assigned_at_time(self.now, learning))
                        .sum()
                });
                let estimate = self.knowledge.get(*slot);
                let view = RoutingView::of(estimate, self.now, agent.running, learning, total);
                (capability.clone(), view)
            })
            .collect();
        routing.sort_by(|a, b| a.0.cmp(&b.0));
        Some(AgentSnapshot {
            id,
            spec: agent.spec.clone(),
            state: agent.state(),
            running: agent.running,
            connected_at: agent.connected_at,
            last_heartbeat: agent.last_heartbeat,
            stats,
            routing,
        })
    }

    /// Queued tasks per capability (ready, backing off, and consensus tasks waiting for an agent
    /// for a replica), sorted by capability.
    pub fn queue_depths(&self) -> Vec<(Capability, usize)> {
        let mut depths: Vec<_> = self.queued.iter().map(|(c, n)| (c.clone(), *n)).collect();
        depths.sort();
        depths
    }

    /// An estimate from sizes and counts, in O(1): see [`SchedulerMemory`].
    pub fn memory(&self) -> SchedulerMemory {
        use std::mem::size_of;
        let bucket = size_of::<(TaskId, Box<ActiveTask>)>() + 1;
        // An `Arc<TaskSpec>` allocation: the spec and its two reference counts.
        let record = size_of::<ActiveTask>() + size_of::<TaskSpec>() + 2 * size_of::<usize>();
        let queued: usize = self.queued.values().sum();
        SchedulerMemory {
            active_tasks: self.tasks.len(),
            bytes: self.tasks.capacity() * bucket
                + self.tasks.len() * record
                + queued * size_of::<QueueKey>()
                + self.payload_bytes,
        }
    }

    fn insert_task(&mut self, spec: Arc<TaskSpec>, attempt: u32, released: u32, phase: Phase) {
        let id = spec.id;
        self.payload_bytes += spec.payload.len();
        count_queued(&mut self.queued, &spec.capability, false, phase.queued());
        self.tasks.insert(
            id,
            Box::new(ActiveTask {
                spec,
                attempt,
                released,
                phase,
            }),
        );
    }

    fn start_attempt(&mut self, id: TaskId, agent: AgentId, now: Timestamp) {
        let task = self.tasks.get_mut(&id).expect("active task");
        let lease_until = now.plus_ms(task.spec.timeout_ms);
        task.attempt += 1;
        let queued_ms = match task.phase {
            Phase::Ready { rank } => now.ms_since(crate::queue::ready_at(
                rank,
                task.spec.priority,
                self.config.aging_ms,
            )),
            _ => 0,
        };
        count_queued(
            &mut self.queued,
            &task.spec.capability,
            task.phase.queued(),
            false,
        );
        task.phase = Phase::Running {
            started_at: now,
            lease_until,
            agent: Some(agent),
            others_running: self.agents.get(&agent).map_or(0, |a| a.running),
        };
        let attempt = task.attempt;
        self.timers
            .insert((lease_until, Timer::Lease { task: id, attempt }));
        let entry = self.agents.get_mut(&agent).expect("agent");
        entry.running += 1;
        if let Some((_, slot)) = entry.capability(&task.spec.capability) {
            let learning = &self.config.learning;
            self.knowledge.update(slot, |e| e.assign(now, learning));
        }
        self.changes.push(Change::AttemptStarted {
            spec: task.spec.clone(),
            attempt,
            agent,
            started_at: now,
            lease_until,
            queued_ms,
            inputs: inputs_of(&self.inputs, &task.spec),
            identity: None,
        });
    }

    fn end_attempt(
        &mut self,
        id: TaskId,
        outcome: AttemptOutcome,
        output: Option<Arc<str>>,
        error: Option<String>,
        retry: Retry,
        now: Timestamp,
    ) {
        let task = self.tasks.get_mut(&id).expect("active task");
        let attempt = task.attempt;
        let Phase::Running {
            started_at,
            lease_until,
            agent,
            others_running,
        } = task.phase
        else {
            unreachable!("only a running task has an attempt to end")
        };
        self.timers
            .remove(&(lease_until, Timer::Lease { task: id, attempt }));
        let next = match outcome {
            AttemptOutcome::Succeeded => NextStatus::Succeeded,
            AttemptOutcome::Cancelled => NextStatus::Cancelled,
            // Back in its queue at once, its attempt not counted.
            AttemptOutcome::Released => {
                task.released += 1;
                NextStatus::Retry { not_before: now }
            }
            AttemptOutcome::Failed | AttemptOutcome::LeaseExpired
                if retry != Retry::No && task.may_retry() =>
            {
                let at_least_ms = match retry {
                    Retry::Backoff { at_least_ms } => at_least_ms,
                    Retry::No => 0,
                };
                let delay = task.spec.backoff.delay_ms(id, attempt).max(at_least_ms);
                NextStatus::Retry {
                    not_before: now.plus_ms(delay),
                }
            }
            AttemptOutcome::Failed | AttemptOutcome::LeaseExpired => NextStatus::Failed,
        };
        let learning = &self.config.learning;
        let ended = AttemptEnd {
            agent,
            spec: &task.spec,
            outcome,
            started_at,
            others_running,
            now,
        };
        ended.count(
            &mut self.agents,
            &mut self.knowledge,
            learning,
            &mut self.policy,
        );
        let end = match (next, &output) {
            (NextStatus::Succeeded, output) => Some(TaskEnd::Succeeded(
                output.clone().unwrap_or_else(|| "null".into()),
            )),
            (NextStatus::Retry { .. }, _) => None,
            (terminal, _) => Some(TaskEnd::Unsuccessful {
                status: terminal.status(),
                error: error
                    .as_deref()
                    .unwrap_or(terminal.status().as_str())
                    .into(),
            }),
        };
        self.changes.push(Change::AttemptEnded {
            task: id,
            capability: task.spec.capability.clone(),
            attempt,
            agent,
            created_at: task.spec.created_at,
            started_at,
            ended_at: now,
            outcome,
            output,
            error,
            next,
        });
        match (next, end) {
            (NextStatus::Retry { not_before }, _) if not_before > now => {
                count_queued(&mut self.queued, &task.spec.capability, false, true);
                task.phase = Phase::Backoff { until: not_before };
                self.timers.insert((not_before, Timer::Backoff(id)));
            }
            (_, Some(end)) => self.settle(id, end, now),
            (_, None) => self.make_ready(id, now),
        }
        if let Some(agent) = agent {
            self.fill_agent(agent, now);
        }
    }

    /// The agent's capabilities, copied out so that the scheduler can change while going
    /// through them.
    fn capabilities_of(&self, agent: AgentId) -> Vec<Capability> {
        self.agents[&agent]
            .spec
            .capabilities
            .iter()
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Drops what the scheduler keeps per capability name (its ready queue, its list of
    /// agents, its arrival rate) once no task waits in the queue and no connected agent serves
    /// it. Names come from clients and workers: kept for ever, a client submitting tasks under
    /// ever new names and cancelling them would grow the scheduler without bound. A capability
    /// that is served keeps its entries, so the hot path does not make and drop them.
    fn forget_if_unused(&mut self, capability: &Capability) {
        let queued = self.queues.get(capability).is_some_and(|q| !q.is_empty());
        let served = self
            .agents_by_capability
            .get(capability)
            .is_some_and(|agents| !agents.is_empty());
        if queued || served {
            return;
        }
        self.queues.remove(capability);
        self.agents_by_capability.remove(capability);
        self.arrivals.remove(capability);
    }

    /// Ends a task that is not running (waiting or queued).
    fn finish_unstarted(
        &mut self,
        id: TaskId,
        status: TaskStatus,
        error: Option<String>,
        now: Timestamp,
    ) {
        let Some(task) = self.tasks.get(&id) else {
            return;
        };
        let capability = task.spec.capability.clone();
        if let (Phase::Ready { rank }, Some(queue)) = (task.phase, self.queues.get_mut(&capability))
        {
            queue.remove(&(rank, id));
            self.forget_if_unused(&capability);
        }
        // A backoff timer left behind finds the task gone and does nothing.
        let end = TaskEnd::Unsuccessful {
            status,
            error: error.as_deref().unwrap_or(status.as_str()).into(),
        };
        self.changes.push(Change::TaskFinished {
            task: id,
            capability,
            status,
            error,
            result: None,
            at: now,
        });
        self.settle(id, end, now);
    }

    fn check_heartbeat(&mut self, id: AgentId, now: Timestamp) {
        let timeout = self.config.heartbeat_timeout_ms;
        let Some(agent) = self.agents.get(&id) else {
            return;
        };
        if !agent.connected {
            return;
        }
        let deadline = agent.last_heartbeat.plus_ms(timeout);
        if deadline > now {
            self.timers.insert((deadline, Timer::Heartbeat(id)));
        } else {
            self.disconnect_agent(id);
            self.changes.push(Change::CloseAgent { agent: id });
        }
    }

    fn emit_agent(&mut self, id: AgentId) {
        if let Some(snapshot) = self.snapshot(id) {
            self.changes.push(Change::AgentChanged(snapshot));
        }
    }
}

/// The error of an attempt released by an agent that was not draining (a failure).
pub(crate) const RELEASED_NOT_DRAINING: &str =
    "released by an agent that is not draining (counted as a failed attempt)";

/// `others_running` of an attempt recovered after a restart: its run time counts from the
/// restart and its load is unknown, so no routing model learns from it.
pub(crate) const UNKNOWN_LOAD: u32 = u32::MAX;

/// An attempt that ended, as its agent's counters and routing's estimates take it in.
struct AttemptEnd<'a> {
    agent: Option<AgentId>,
    spec: &'a TaskSpec,
    outcome: AttemptOutcome,
    started_at: Timestamp,
    /// The agent's other attempts as this one started.
    others_running: u32,
    now: Timestamp,
}

impl AttemptEnd<'_> {
    /// Frees the agent's slot and counts the outcome (an agent forgotten meanwhile is skipped),
    /// for the estimates and for the policy.
    fn count(
        &self,
        agents: &mut HashMap<AgentId, AgentEntry>,
        knowledge: &mut knowledge::Knowledge,
        learning: &LearningConfig,
        policy: &mut impl RoutingPolicy,
    ) {
        let Some(entry) = self.agent.and_then(|a| agents.get_mut(&a)) else {
            return;
        };
        let (outcome, now) = (self.outcome, self.now);
        let run_ms = now.ms_since(self.started_at);
        let capability = &self.spec.capability;
        entry.running -= 1;
        if outcome == AttemptOutcome::Released {
            // It never ran: nothing to learn or count.
            return;
        }
        if let Some((_, slot)) = entry.capability(capability) {
            knowledge.update(slot, |e| e.observe(outcome, run_ms, now, learning));
        }
        if self.others_running != UNKNOWN_LOAD {
            policy.observe(&crate::routing::Observation {
                capability: capability.as_str(),
                identity: &entry.spec.name,
                running: self.others_running,
                slots: entry.spec.slots,
                payload_bytes: self.spec.payload.len(),
                features: self.spec.features.as_ref(),
                outcome,
                run_ms,
            });
        }
        let stats = entry.stats.entry(capability.clone()).or_default();
        match outcome {
            AttemptOutcome::Succeeded => {
                stats.completed += 1;
                stats.total_latency_ms += run_ms;
            }
            AttemptOutcome::Failed | AttemptOutcome::LeaseExpired => stats.failed += 1,
            AttemptOutcome::Cancelled | AttemptOutcome::Released => {}
        }
    }
}

/// Whether an ended attempt's task may run again, and how soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    No,
    /// After the task's backoff, and at least `at_least_ms`.
    Backoff {
        at_least_ms: u64,
    },
}

impl Retry {
    const AFTER_BACKOFF: Retry = Retry::Backoff { at_least_ms: 0 };
}
