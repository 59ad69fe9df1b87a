//! The scheduler actor: one tokio task that owns the [`Scheduler`] and turns requests into its
//! decisions.
//!
//! A single owner instead of a shared, locked scheduler: the hot path takes no lock, and every
//! decision sees one consistent state. Each turn the actor takes every command waiting (up to a
//! bound), fires due timers, and hands all resulting changes to the group-commit writer as one
//! batch. Replies and frames wait in that batch's callback ([`effects`]), so nothing is
//! announced before it is durable.
//!
//! For tasks that have left the scheduler's memory, dependency and idempotency look-ups go to
//! the store, off the actor's path ([`lookup`]); the actor remembers tasks whose final change is
//! not yet committed (`recently_finished`, `pending_keys`) so that those look-ups are exact.
//!
//! When a commit fails, the actor builds its scheduler again from the store ([`rebuild`]).

pub mod effects;
pub mod lookup;
pub mod rebuild;
pub mod sharing;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hive_core::{
    AgentId, AgentSnapshot, AgentSpec, CancelError, Change, Clock, DrainError, HeldAttempt, Report,
    RoutingPolicy, Scheduler, TaskEnd, TaskId, TaskSpec, TaskStatus, Timestamp,
};
use hive_store::{TaskReader, WriteBatch};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::metrics::Count;
use effects::{DeferredReply, Effects};
use lookup::{Found, LookedUp, Lookups, Missing};
use rebuild::{Reloaded, Reloads, SchedulerSetup, StoreTrouble};

pub type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

pub enum Command {
    Submit {
        specs: Vec<TaskSpec>,
        /// Field prefix for errors: `tasks` for a batch, empty for one task.
        batch: bool,
        reply: Reply<Vec<Submitted>>,
    },
    /// Answered once the agent is in the registry (so the `welcome` can follow). `held`: the
    /// attempts a reconnecting worker still runs.
    Register {
        agent: AgentId,
        spec: AgentSpec,
        held: Vec<HeldAttempt>,
        registered: oneshot::Sender<()>,
    },
    Heartbeat {
        agent: AgentId,
    },
    Report {
        agent: AgentId,
        task: TaskId,
        attempt: u32,
        report: Report,
    },
    Disconnected {
        agent: AgentId,
    },
    Cancel {
        task: TaskId,
        reply: Reply<Cancelled>,
    },
    /// Another hub asks the hub holding `task` to cancel it (several hubs); ignored by the others.
    CancelHeld {
        task: TaskId,
    },
    /// Drains an agent, or with `undo` takes it back into service.
    Drain {
        agent: AgentId,
        undo: bool,
        reply: Reply<AgentSnapshot>,
    },
    Agents {
        reply: oneshot::Sender<Vec<AgentSnapshot>>,
    },
    /// One agent, without copying the others.
    Agent {
        agent: AgentId,
        reply: oneshot::Sender<Option<AgentSnapshot>>,
    },
    /// Answers at once: the actor is alive and keeping up (the readiness probe), and whether it
    /// accepts work (false while the store refuses commits).
    Ping {
        reply: oneshot::Sender<bool>,
    },
    Overview {
        reply: oneshot::Sender<Overview>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// Tasks this hub took over: claimed from the shared pool (`asked`: what the claim asked
    /// for), or adopted from a hub whose lease ended (`asked`: `None`). See [`sharing`].
    Adopt {
        adopted: hive_store::Adopted,
        asked: Option<sharing::ClaimRequest>,
    },
    /// Other hubs with live leases, as of this hub's last heartbeat.
    Peers {
        others: usize,
    },
    /// The hub is stopping (several hubs): its agents take no new work (each is drained), and
    /// its queued work goes to the pool for the other hubs. Answered at once.
    DrainHub {
        reply: oneshot::Sender<()>,
    },
    /// Work of a capability (`None`: of any) may wait in the shared pool.
    PoolHint {
        capability: Option<hive_core::Capability>,
    },
}

/// How a cancel was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// Committed: by this hub, or in the shared pool.
    Done,
    /// Another hub holds the task and was asked to cancel it (see [`sharing`]).
    Requested,
}

/// The outcome of one submitted task.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub id: TaskId,
    pub status: TaskStatus,
    /// True when an idempotency key matched an earlier task, which is returned instead.
    pub existing: bool,
}

#[derive(Debug, Clone)]
pub struct Overview {
    pub agents: Vec<AgentSnapshot>,
    pub memory: hive_core::SchedulerMemory,
    pub queue_depths: Vec<(String, usize)>,
    /// The hub is stopping and hands its work on (several hubs).
    pub hub_draining: bool,
}

impl Overview {
    /// What this hub reports of itself among several (`address` left to the caller): connected
    /// agents and their slots, tasks held and how many are queued.
    pub fn load(&self) -> hive_store::HubLoad {
        let connected = self
            .agents
            .iter()
            .filter(|a| a.state != hive_core::AgentState::Offline);
        let (agents, slots) = connected.fold((0, 0), |(n, s), a| (n + 1, s + a.spec.slots));
        hive_store::HubLoad {
            address: String::new(),
            agents,
            slots,
            tasks: self.memory.active_tasks as u32,
            queued: self.queue_depths.iter().map(|(_, n)| *n as u32).sum(),
        }
    }
}

/// Commands handled per turn before the batch is flushed; bounds the latency one turn adds.
const MAX_COMMANDS_PER_TURN: usize = 4_096;

pub struct Actor {
    scheduler: Scheduler<Box<dyn RoutingPolicy>>,
    setup: SchedulerSetup,
    /// Of the scheduler's state: bumped by each rebuild, carried by every batch.
    generation: u64,
    /// Set after a failed commit; see [`rebuild`].
    trouble: Option<StoreTrouble>,
    /// Agents and attempts of a scheduler being loaded again, or that could not be; see
    /// [`rebuild`].
    kept_aside: Option<rebuild::KeptAside>,
    /// Loads of the scheduler on the blocking pool; see [`rebuild`].
    reloads: Reloads,
    reloaded: Option<mpsc::UnboundedReceiver<Reloaded>>,
    reader: Arc<dyn TaskReader>,
    /// Store reads of submissions in flight.
    lookups: Lookups,
    looked_up: Option<mpsc::UnboundedReceiver<LookedUp>>,
    writer: mpsc::Sender<WriteBatch>,
    effects: Arc<Effects>,
    clock: Arc<dyn Clock>,
    /// Number of the next batch flushed.
    seq: u64,
    replies: Vec<DeferredReply>,
    /// Tasks ended in a batch not yet committed (how, for the inputs of their dependents), with
    /// the batch number. foldhash, not SipHash: every task passes through it, and its keys are
    /// ids the hub minted.
    recently_finished: foldhash::HashMap<TaskId, TaskEnd>,
    finishing: VecDeque<(u64, TaskId)>,
    /// Idempotency keys of tasks whose creation is not yet committed.
    pending_keys: HashMap<String, TaskId>,
    keys_by_seq: VecDeque<(u64, String)>,
    /// The other hubs of the store and its pool of work; see [`sharing`].
    sharing: sharing::Sharing,
}

impl Actor {
    pub fn new(
        scheduler: Scheduler<Box<dyn RoutingPolicy>>,
        setup: SchedulerSetup,
        reader: Arc<dyn TaskReader>,
        writer: mpsc::Sender<WriteBatch>,
        effects: Arc<Effects>,
        clock: Arc<dyn Clock>,
        sharing: sharing::Sharing,
    ) -> Self {
        let (lookups, looked_up) = Lookups::new(reader.clone());
        let (reloads, reloaded) = Reloads::new();
        Actor {
            scheduler,
            setup,
            generation: 1,
            trouble: None,
            kept_aside: None,
            reloads,
            reloaded: Some(reloaded),
            reader,
            lookups,
            looked_up: Some(looked_up),
            writer,
            effects,
            clock,
            seq: 1,
            replies: Vec::new(),
            recently_finished: foldhash::HashMap::default(),
            finishing: VecDeque::new(),
            pending_keys: HashMap::new(),
            keys_by_seq: VecDeque::new(),
            sharing,
        }
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let effects = self.effects.clone();
        let mut looked_up = self.looked_up.take().expect("the actor runs once");
        let mut reloaded = self.reloaded.take().expect("the actor runs once");
        loop {
            if self.commit_failed() {
                // Starts the load; its answer comes through `reloaded`.
                self.rebuild_after_failed_commit(self.clock.now());
            }
            self.retry_reload(self.clock.now());
            if self.trouble.is_some_and(|t| !t.unloaded) && self.recovered() {
                self.trouble = None;
            }
            self.forget_committed();
            let reload_at = self
                .trouble
                .filter(|t| t.unloaded && !self.reloads.loading())
                .map(|t| t.refuse_until);
            // While the scheduler is being loaded, commands and looked-up submissions wait.
            let open = !self.reloads.loading();
            let wake_in = [self.scheduler.next_wakeup(), reload_at]
                .into_iter()
                .flatten()
                .min()
                .map(|due| Duration::from_millis(due.ms_since(self.clock.now())));
            let first = tokio::select! {
                command = commands.recv(), if open => command,
                Some(answer) = reloaded.recv() => {
                    let now = self.clock.now();
                    self.reloaded(answer, now);
                    // What the rebuild decided (expired leases, assignments) goes out now.
                    self.flush().await;
                    continue;
                }
                Some(submission) = looked_up.recv(), if open => {
                    let now = self.clock.now();
                    self.scheduler.advance(now);
                    self.resume_submit(submission, now);
                    // Every submission back by now goes into the same batch.
                    while let Ok(more) = looked_up.try_recv() {
                        self.resume_submit(more, now);
                    }
                    self.flush().await;
                    continue;
                }
                _ = effects.commit_failed.notified() => continue,
                _ = tokio::time::sleep(wake_in.unwrap_or(Duration::MAX)), if wake_in.is_some() => {
                    self.scheduler.advance(self.clock.now());
                    self.flush().await;
                    continue;
                }
            };
            let Some(first) = first else { break };
            let now = self.clock.now();
            self.scheduler.advance(now);
            let mut stop = self.handle(first, now);
            let mut handled = 1;
            while !stop && handled < MAX_COMMANDS_PER_TURN {
                let Ok(command) = commands.try_recv() else {
                    break;
                };
                stop = self.handle(command, now);
                handled += 1;
            }
            self.flush().await;
            if stop {
                break;
            }
        }
    }

    /// Returns true on shutdown.
    fn handle(&mut self, command: Command, now: Timestamp) -> bool {
        match command {
            Command::Submit {
                specs,
                batch,
                reply,
            } => {
                self.submit(specs, batch, Found::default(), reply, now);
            }
            Command::Register {
                agent,
                spec,
                held,
                registered,
            } => {
                if self.unloaded() {
                    // Its attempts cannot be checked against an empty scheduler: it comes back
                    // once the store is readable (dropping `registered` closes its connection).
                    return false;
                }
                // A stopping hub drains the agents that join it: they start nothing here.
                let draining = self.sharing.draining();
                let rejoined = self
                    .scheduler
                    .rejoin_agent(agent, spec, &held, draining, now);
                if !held.is_empty() {
                    tracing::info!(%agent, kept = rejoined.kept.len(), refused = rejoined.refused.len(),
                        "a reconnecting agent named the attempts it holds");
                }
                self.effects.metrics.add(Count::AgentsRegistered, 1);
                let _ = registered.send(());
            }
            Command::Heartbeat { agent } => {
                self.scheduler.heartbeat(agent, now);
                self.effects.metrics.add(Count::Heartbeats, 1);
            }
            Command::Report {
                agent,
                task,
                attempt,
                report,
            } => {
                if let Err(e) = self.scheduler.report(agent, task, attempt, report, now) {
                    tracing::debug!(%agent, error = %e, "result rejected");
                }
            }
            Command::Disconnected { agent } => {
                self.scheduler.disconnect_agent(agent);
                self.effects.metrics.add(Count::AgentsDisconnected, 1);
            }
            Command::Cancel { reply, .. } if self.unloaded() => {
                let retry_after_s = self.refusing(now).unwrap_or(1);
                let _ = reply.send(Err(ApiError::StoreRefusing { retry_after_s }));
            }
            Command::Drain { reply, .. } if self.unloaded() => {
                let retry_after_s = self.refusing(now).unwrap_or(1);
                let _ = reply.send(Err(ApiError::StoreRefusing { retry_after_s }));
            }
            Command::Cancel { task, reply } => match self.scheduler.cancel(task, now) {
                Ok(()) => self.defer(reply, Ok(Cancelled::Done)),
                Err(CancelError::NotActive(_)) => self.refuse_cancel(task, reply, now),
            },
            Command::CancelHeld { task } => {
                if self.scheduler.active_status(task).is_some() {
                    let _ = self.scheduler.cancel(task, now);
                }
            }
            Command::Drain { agent, undo, reply } => {
                let outcome = if undo {
                    self.scheduler.undrain(agent, now)
                } else {
                    self.scheduler.drain(agent)
                };
                let outcome = outcome.map_err(|e| match e {
                    DrainError::UnknownAgent(_) => ApiError::NotFound {
                        what: format!("agent {agent}"),
                    },
                    DrainError::Offline(_) => ApiError::Conflict {
                        message: format!("agent {agent} is offline"),
                    },
                });
                if outcome.is_ok() && !undo {
                    self.effects.metrics.add(Count::AgentsDrained, 1);
                }
                self.defer(reply, outcome);
            }
            Command::Agents { reply } => {
                let _ = reply.send(self.scheduler.agents());
            }
            Command::Agent { agent, reply } => {
                let _ = reply.send(self.scheduler.snapshot(agent));
            }
            Command::Ping { reply } => {
                let _ = reply.send(self.trouble.is_none());
            }
            Command::Overview { reply } => {
                let _ = reply.send(Overview {
                    agents: self.scheduler.agents(),
                    memory: self.scheduler.memory(),
                    queue_depths: self
                        .scheduler
                        .queue_depths()
                        .into_iter()
                        .map(|(c, n)| (c.to_string(), n))
                        .collect(),
                    hub_draining: self.sharing.draining(),
                });
            }
            Command::Shutdown { reply } => {
                self.replies.push(Box::new(move |_| {
                    let _ = reply.send(());
                }));
                return true;
            }
            Command::Adopt { adopted, asked } => self.adopt(adopted, asked, now),
            Command::Peers { others } => self.sharing.set_peers(others),
            Command::DrainHub { reply } => {
                self.drain_hub();
                let _ = reply.send(());
            }
            Command::PoolHint { capability } => self.sharing.hint(capability),
        }
        false
    }

    /// Decides a submission, or first reads from the store what the actor misses for it.
    fn submit(
        &mut self,
        specs: Vec<TaskSpec>,
        batch: bool,
        found: Found,
        reply: Reply<Vec<Submitted>>,
        now: Timestamp,
    ) {
        if let Some(retry_after_s) = self.refusing(now) {
            let _ = reply.send(Err(ApiError::StoreRefusing { retry_after_s }));
            return;
        }
        let missing = self.missing(&specs, &found);
        if missing.is_empty() {
            let outcome = self.decide_submit(specs, batch, &found, now);
            self.defer(reply, outcome);
        } else {
            let seen = self.effects.committed_seq.load(Ordering::Acquire);
            self.lookups
                .start(specs, batch, reply, found, missing, seen);
        }
    }

    /// A submission is back from the store (see [`lookup`]).
    fn resume_submit(&mut self, submission: LookedUp, now: Timestamp) {
        let LookedUp {
            specs,
            batch,
            reply,
            found,
            seen,
            epoch,
        } = submission;
        self.lookups.ended(seen);
        match found {
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
            // Read before a rebuild forgot what the actor kept for it: read again.
            Ok(_) if epoch != self.lookups.epoch => {
                self.submit(specs, batch, Found::default(), reply, now)
            }
            Ok(found) => self.submit(specs, batch, found, reply, now),
        }
    }

    /// The idempotency keys and parents of a submission that neither the scheduler, nor the
    /// batches not yet committed, nor an earlier read answer.
    fn missing(&self, specs: &[TaskSpec], found: &Found) -> Missing {
        let mut missing = Missing::default();
        let metrics = &self.effects.metrics;
        for spec in specs {
            if let Some(key) = &spec.idempotency_key
                && !self.pending_keys.contains_key(key)
                && !found.keys.contains_key(key)
            {
                missing.keys.insert(key.clone());
            }
            for dep in &spec.depends_on {
                if self.scheduler.active_status(*dep).is_some()
                    || found.ends.contains_key(dep)
                    || self.sharing.is_parked(*dep)
                {
                    continue;
                }
                if self.recently_finished.contains_key(dep) {
                    metrics.add(Count::FinishedCacheHits, 1);
                } else {
                    metrics.add(Count::FinishedCacheMisses, 1);
                    missing.parents.insert(*dep);
                }
            }
        }
        missing
    }

    /// Decides a submission once nothing is missing for it (see [`Actor::missing`]).
    fn decide_submit(
        &mut self,
        specs: Vec<TaskSpec>,
        batch: bool,
        found: &Found,
        now: Timestamp,
    ) -> Result<Vec<Submitted>, ApiError> {
        let prefix = |i: usize| {
            if batch {
                format!("tasks[{i}].")
            } else {
                String::new()
            }
        };
        // Check everything before changing anything: a batch is accepted whole or not at all.
        let mut ended: HashMap<TaskId, TaskEnd> = HashMap::new();
        let mut existing: Vec<Option<(TaskId, Option<TaskStatus>)>> =
            Vec::with_capacity(specs.len());
        let mut keys_in_request: HashMap<&str, TaskId> = HashMap::new();
        // Tasks with a parent another hub holds: parked, not kept here (see `sharing`).
        let mut park: HashSet<TaskId> = HashSet::new();
        for (i, spec) in specs.iter().enumerate() {
            if let Some(key) = spec.idempotency_key.as_deref() {
                let earlier = match keys_in_request.get(key).or(self.pending_keys.get(key)) {
                    Some(id) => Some((*id, None)),
                    None => found
                        .keys
                        .get(key)
                        .copied()
                        .flatten()
                        .map(|(id, status)| (id, Some(status))),
                };
                if earlier.is_some() {
                    existing.push(earlier);
                    continue;
                }
                keys_in_request.insert(key, spec.id);
            }
            for dep in &spec.depends_on {
                if self.scheduler.active_status(*dep).is_some() || ended.contains_key(dep) {
                    continue;
                }
                // Found elsewhere, but claimed and ended here since: it is an input now.
                let ended_here = self.recently_finished.contains_key(dep);
                if self.sharing.shared()
                    && !ended_here
                    && (found.elsewhere.contains(dep) || self.sharing.is_parked(*dep))
                {
                    park.insert(spec.id);
                    continue;
                }
                let end = match self.recently_finished.get(dep) {
                    Some(end) => Some(end.clone()),
                    None => found.ends.get(dep).cloned().flatten(),
                };
                match end {
                    Some(end) => {
                        ended.insert(*dep, end);
                    }
                    None => {
                        return Err(ApiError::UnknownDependency {
                            field: format!("{}depends_on", prefix(i)),
                            message: format!("dependency {dep} does not exist"),
                        });
                    }
                }
            }
            existing.push(None);
        }

        let mut submitted = Vec::with_capacity(specs.len());
        for (spec, earlier) in specs.into_iter().zip(existing) {
            if let Some((id, stored)) = earlier {
                let status = self
                    .scheduler
                    .active_status(id)
                    .or_else(|| self.recently_finished.get(&id).map(TaskEnd::status))
                    .or(stored)
                    .unwrap_or(TaskStatus::Queued);
                submitted.push(Submitted {
                    id,
                    status,
                    existing: true,
                });
                continue;
            }
            let id = spec.id;
            if let Some(key) = &spec.idempotency_key {
                self.pending_keys.insert(key.clone(), id);
                self.keys_by_seq.push_back((self.seq, key.clone()));
            }
            if park.contains(&id) {
                self.sharing.note_parked(self.seq, id);
                submitted.push(Submitted {
                    id,
                    status: self.scheduler.park(spec),
                    existing: false,
                });
                continue;
            }
            let mut resolve = |dep: TaskId| ended.get(&dep).cloned();
            // The checks above make both errors unreachable: dependencies were found (and a
            // dependency active then is active or in `recently_finished` now, the same turn),
            // and ids are fresh UUIDv7s.
            let status = self
                .scheduler
                .submit(spec, now, &mut resolve)
                .map_err(|e| ApiError::Conflict {
                    message: e.to_string(),
                })?;
            submitted.push(Submitted {
                id,
                status,
                existing: false,
            });
        }
        Ok(submitted)
    }

    /// Answers a cancel of a task not active in the scheduler: 409 when it ended, 404 when it
    /// never existed. One not ended in a batch still in flight is read from the store, off the
    /// actor's path (and exactly: it is no longer in the scheduler, so the store has its end).
    /// With several hubs it may be active elsewhere: see [`sharing`].
    fn refuse_cancel(&mut self, task: TaskId, reply: Reply<Cancelled>, now: Timestamp) {
        let conflict = move |status: TaskStatus| ApiError::Conflict {
            message: format!("task {task} is already {status}"),
        };
        if let Some(end) = self.recently_finished.get(&task) {
            self.effects.metrics.add(Count::FinishedCacheHits, 1);
            let status = end.status();
            self.defer(reply, Err(conflict(status)));
            return;
        }
        self.effects.metrics.add(Count::FinishedCacheMisses, 1);
        let Err(reply) = self.cancel_elsewhere(task, reply, now) else {
            return;
        };
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = match reader.task_status(task) {
                Ok(Some(status)) => Err(conflict(status)),
                Ok(None) => Err(ApiError::NotFound {
                    what: format!("task {task}"),
                }),
                Err(e) => Err(e.into()),
            };
            let _ = reply.send(outcome);
        });
    }

    /// The store could not be read after a failed commit: the scheduler is empty for now.
    fn unloaded(&self) -> bool {
        self.trouble.is_some_and(|t| t.unloaded)
    }

    /// While the store refuses commits: seconds a client should wait before submitting again.
    fn refusing(&self, now: Timestamp) -> Option<u64> {
        self.trouble
            .filter(|t| t.unloaded || now < t.refuse_until)
            .map(|t| t.retry_after_s(now))
    }

    /// Answers once this turn's batch is committed.
    fn defer<T: Send + 'static>(&mut self, reply: Reply<T>, outcome: Result<T, ApiError>) {
        self.replies.push(Box::new(move |committed| {
            let outcome = match committed {
                Ok(()) => outcome,
                Err(e) => Err(ApiError::Store(e.clone())),
            };
            let _ = reply.send(outcome);
        }));
    }

    async fn flush(&mut self) {
        self.share();
        let changes = self.scheduler.take_changes();
        if changes.is_empty() && self.replies.is_empty() {
            return;
        }
        let seq = self.seq;
        self.seq += 1;
        for (task, end) in changes.iter().filter_map(Change::ended) {
            self.recently_finished.insert(task, end);
            self.finishing.push_back((seq, task));
        }
        let replies = std::mem::take(&mut self.replies);
        let effects = self.effects.clone();
        let generation = self.generation;
        let batch = WriteBatch {
            changes,
            generation,
            on_commit: Box::new(move |outcome, changes| {
                effects.after_commit(seq, generation, outcome, changes, replies)
            }),
        };
        if self.writer.send(batch).await.is_err() {
            tracing::error!("the group-commit writer is gone; changes of batch {seq} are lost");
        }
    }

    /// Drops what the store now answers for itself.
    fn forget_committed(&mut self) {
        let committed = self.effects.committed_seq.load(Ordering::Acquire);
        // Reads in flight may have missed what committed after they began.
        let committed = self.lookups.forget_through(committed);
        while self
            .finishing
            .front()
            .is_some_and(|(seq, _)| *seq <= committed)
        {
            let (_, task) = self.finishing.pop_front().expect("checked");
            self.recently_finished.remove(&task);
        }
        while self
            .keys_by_seq
            .front()
            .is_some_and(|(seq, _)| *seq <= committed)
        {
            let (_, key) = self.keys_by_seq.pop_front().expect("checked");
            self.pending_keys.remove(&key);
        }
        self.sharing.forget_parked_through(committed);
    }
}
