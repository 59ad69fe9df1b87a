//! Building the scheduler's memory from the store: once at start, and again whenever a commit
//! fails, so that what the store refused exists nowhere else.
//!
//! A failed commit leaves the scheduler ahead of the store (tasks it accepted, attempts it
//! started, results it recorded) and the batches queued behind it built on that. The writer
//! refuses those batches (their generation is poisoned, see `hive_store::group_commit`); the actor
//! drops its scheduler, loads the active tasks again, and offers its connected agents back the
//! attempts it believed they run: those the store knows are re-bound (an assignment goes out only
//! after its commit), the others (started in a refused batch, never sent) are cancelled, which
//! the agent never ran anyway. For a short while afterwards, doubling while failures recur, new
//! submits are refused at once with 503 instead of being accepted into a store that cannot take
//! them, and the hub reads as not ready until a commit succeeds again.
//!
//! The store is read on the blocking pool, not on the actor's runtime thread (with PostgreSQL a
//! load waits on the network, up to the pool's and the connection's timeouts when the database
//! is gone), and the actor handles no command until the answer: a result or a registration
//! handled meanwhile would meet an empty scheduler. Should the store not even be readable, the
//! scheduler stays empty (nothing is decided on a state the store does not hold), the agents and
//! attempts are kept aside for the next try, and registrations, cancels and drains are refused
//! until it succeeds.

use std::time::Duration;

use hive_core::{
    AgentId, AgentState, HeldAttempt, RoutingPolicy, Scheduler, SchedulerConfig, Timestamp,
};
use hive_store::{StoreError, TaskReader};
use tokio::sync::mpsc;

use crate::config::RoutingConfig;

use super::Actor;

/// What a scheduler is made from, kept so the actor can make a new one.
#[derive(Clone)]
pub struct SchedulerSetup {
    pub config: SchedulerConfig,
    pub routing: RoutingConfig,
    /// Seeds the policy's random choices unless the configuration names a seed.
    pub seed: u64,
    /// The neural policy's model (it outlives a rebuilt scheduler).
    pub neural: Option<hive_neural::SharedModel>,
}

impl SchedulerSetup {
    /// An empty scheduler with the configured policy.
    pub fn empty(&self) -> Scheduler<Box<dyn RoutingPolicy>> {
        let predictor = self.neural.as_ref().map(|n| n.predictor());
        Scheduler::new(self.config, self.routing.build(self.seed, predictor))
    }

    /// A scheduler holding every active task in the store, with the leases that ran out expired,
    /// and what routing learned before.
    pub fn load(
        &self,
        reader: &dyn TaskReader,
        now: Timestamp,
    ) -> Result<(Scheduler<Box<dyn RoutingPolicy>>, usize), StoreError> {
        let mut scheduler = self.empty();
        scheduler.restore_learned(reader.load_learned()?);
        let active = reader.load_active()?;
        let count = active.len();
        // A parent that cannot be read is not a missing one: the load fails (and is retried)
        // rather than fail its children or drop it from their inputs.
        let mut unreadable = None;
        scheduler.restore(active, now, &mut |id| match reader.task_end(id) {
            Ok(end) => end,
            Err(e) => {
                unreadable.get_or_insert(e);
                None
            }
        });
        if let Some(e) = unreadable {
            return Err(e);
        }
        scheduler.advance(now);
        Ok((scheduler, count))
    }
}

type Loaded = Result<(Scheduler<Box<dyn RoutingPolicy>>, usize), StoreError>;

/// A load of the scheduler, answered from the blocking pool.
pub struct Reloaded {
    id: u64,
    outcome: Loaded,
}

/// The loads started and the one whose answer the actor waits for.
pub struct Reloads {
    sender: mpsc::UnboundedSender<Reloaded>,
    started: u64,
    /// The newest load, until it answers; an older one's answer is dropped.
    awaited: Option<u64>,
}

impl Reloads {
    pub fn new() -> (Reloads, mpsc::UnboundedReceiver<Reloaded>) {
        let (sender, answers) = mpsc::unbounded_channel();
        let reloads = Reloads {
            sender,
            started: 0,
            awaited: None,
        };
        (reloads, answers)
    }

    /// True while the actor waits for a load.
    pub fn loading(&self) -> bool {
        self.awaited.is_some()
    }
}

/// How long submits are refused after a failed commit: the first time, and at most.
const FIRST_REFUSAL: Duration = Duration::from_millis(250);
const LONGEST_REFUSAL: Duration = Duration::from_secs(5);

/// The actor's account of a store that refused a commit.
#[derive(Debug, Clone, Copy)]
pub struct StoreTrouble {
    /// Submits are refused until then.
    pub refuse_until: Timestamp,
    /// The scheduler could not be loaded again; it is tried once more at `refuse_until`.
    pub unloaded: bool,
    refusal: Duration,
}

impl StoreTrouble {
    /// How long a client should wait before trying again, in whole seconds (at least 1).
    pub fn retry_after_s(&self, now: Timestamp) -> u64 {
        self.refuse_until.ms_since(now).div_ceil(1000).max(1)
    }
}

impl Actor {
    /// True when a commit failed since the scheduler was last built.
    pub(super) fn commit_failed(&self) -> bool {
        self.effects.failed_generation() >= self.generation
    }

    /// Starts over from the store after a failed commit (see the module's header).
    pub(super) fn rebuild_after_failed_commit(&mut self, now: Timestamp) {
        self.generation = self.effects.failed_generation() + 1;
        let refusal = match self.trouble {
            // Still failing shortly after the last time: wait longer before accepting again.
            Some(t) if now.ms_since(t.refuse_until) < 10_000 => {
                (t.refusal * 2).min(LONGEST_REFUSAL)
            }
            _ => FIRST_REFUSAL,
        };
        self.trouble = Some(StoreTrouble {
            refuse_until: now.plus_ms(refusal.as_millis() as u64),
            unloaded: true,
            refusal,
        });
        self.reload(now);
    }

    /// True once a commit of the current generation succeeded: the store takes writes again.
    pub(super) fn recovered(&self) -> bool {
        self.effects.last_ok_generation() >= self.generation
    }

    /// Loads the scheduler again at the end of a refusal that found the store unreadable.
    pub(super) fn retry_reload(&mut self, now: Timestamp) {
        if !self.reloads.loading()
            && self
                .trouble
                .is_some_and(|t| t.unloaded && t.refuse_until <= now)
        {
            self.reload(now);
        }
    }

    fn reload(&mut self, now: Timestamp) {
        // Everything remembered about batches in flight is answered by the store from now on
        // (committed) or never happened (refused).
        self.recently_finished.clear();
        self.finishing.clear();
        self.pending_keys.clear();
        self.keys_by_seq.clear();
        self.sharing.forget_all_parked();
        // Reads in flight relied on what was just forgotten: they are made again.
        self.lookups.epoch += 1;
        // After a failed try the scheduler is empty: what it knew was kept aside.
        let kept = self.kept_aside.take().unwrap_or_else(|| KeptAside {
            agents: self
                .scheduler
                .agents()
                .into_iter()
                .filter(|a| a.state != AgentState::Offline)
                .collect(),
            running: self.scheduler.running_attempts(),
        });
        self.scheduler = self.setup.empty();
        self.kept_aside = Some(kept);
        self.reloads.started += 1;
        let id = self.reloads.started;
        self.reloads.awaited = Some(id);
        let (setup, reader) = (self.setup.clone(), self.reader.clone());
        let answer = self.reloads.sender.clone();
        tokio::task::spawn_blocking(move || {
            // A load that panics answers too: the actor, waiting for it, would take no command
            // again. The failure is retried like a store that cannot be read.
            let load = std::panic::AssertUnwindSafe(|| setup.load(&*reader, now));
            let outcome = std::panic::catch_unwind(load).unwrap_or_else(|_| {
                Err(StoreError::Corrupt(
                    "loading the scheduler from the store panicked".into(),
                ))
            });
            let _ = answer.send(Reloaded { id, outcome });
        });
    }

    /// Takes a load's answer: the scheduler it built, with the agents kept aside rejoined, or
    /// (the store unreadable) another try at the end of the refusal. The answer of a load a
    /// newer one replaced is dropped.
    pub(super) fn reloaded(&mut self, answer: Reloaded, now: Timestamp) {
        if self.reloads.awaited != Some(answer.id) {
            return;
        }
        self.reloads.awaited = None;
        let (mut scheduler, count) = match answer.outcome {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %e, "cannot load the scheduler from the store; retrying");
                if let Some(t) = &mut self.trouble {
                    t.refuse_until = now.plus_ms(t.refusal.as_millis() as u64);
                }
                return;
            }
        };
        let kept = self.kept_aside.take().expect("kept aside while loading");
        for agent in kept.agents {
            let held: Vec<HeldAttempt> = held_by(&kept.running, agent.id);
            let draining = agent.state == AgentState::Draining;
            scheduler.rejoin_agent(agent.id, agent.spec, &held, draining, now);
        }
        self.scheduler = scheduler;
        if let Some(t) = &mut self.trouble {
            t.unloaded = false;
        }
        tracing::warn!(
            active = count,
            generation = self.generation,
            "a commit failed: the scheduler was rebuilt from the store"
        );
    }
}

/// What a scheduler that could not be loaded again knew of its agents, for the next try.
pub struct KeptAside {
    agents: Vec<hive_core::AgentSnapshot>,
    running: Vec<(AgentId, HeldAttempt)>,
}

fn held_by(running: &[(AgentId, HeldAttempt)], agent: AgentId) -> Vec<HeldAttempt> {
    running
        .iter()
        .filter(|(a, _)| *a == agent)
        .map(|(_, held)| *held)
        .collect()
}
