//! The actor's side of several hubs sharing a database (docs/scaling.md): letting go of queued
//! work its agents cannot start soon, asking for pooled work when they have room, taking in what
//! was claimed or adopted, parking a task whose parent another hub holds (the lookup found the
//! parent active in the store but not here), and cancelling a task held elsewhere.
//!
//! The scheduler decides what to release and how much room there is
//! (`hive_core::Scheduler::{release_excess, spare_slots}`); the store calls run on the hub's
//! membership task ([`crate::membership`]), never here. One claim is in flight at a time. The
//! actor asks only for capabilities the pool may hold work of (`hints`): every capability after
//! a notification was missed (at start, after the listening connection came back, and once a
//! second as a backstop), a capability named by a notification, and not a capability whose last
//! claim came back short, until one of those says otherwise.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use hive_core::{Capability, SpareSlots, TaskId, Timestamp};
use hive_store::{Adopted, CancelElsewhere, Membership};
use tokio::sync::mpsc;

use super::{Actor, Cancelled, Reply};
use crate::error::ApiError;
use crate::metrics::Count;

/// A claim the actor asks the membership task to make.
pub type ClaimRequest = SpareSlots;

/// What the actor knows of the other hubs and the pool.
pub struct Sharing {
    /// Where claims go; `None`: this hub is alone in its store (SQLite).
    claims: Option<mpsc::Sender<ClaimRequest>>,
    /// For cancels of tasks held elsewhere (called off the actor).
    store: Option<Arc<dyn Membership>>,
    /// Other hubs holding live leases, as of the last heartbeat: with none, nothing is released
    /// (nobody would take it).
    peers: usize,
    hints: PoolHints,
    claiming: bool,
    /// Tasks parked in a batch not yet committed, with the batch number: a child submitted
    /// meanwhile is parked behind them (the store does not know them yet).
    parked: HashSet<TaskId>,
    parked_by_seq: VecDeque<(u64, TaskId)>,
    /// The hub is stopping: see [`Actor::drain_hub`].
    draining: bool,
}

/// Capabilities the pool may hold work of.
enum PoolHints {
    Any,
    Only(HashSet<Capability>),
}

impl Sharing {
    pub fn alone() -> Self {
        Sharing {
            claims: None,
            store: None,
            peers: 0,
            hints: PoolHints::Only(HashSet::new()),
            claiming: false,
            parked: HashSet::new(),
            parked_by_seq: VecDeque::new(),
            draining: false,
        }
    }

    pub fn with_peers(claims: mpsc::Sender<ClaimRequest>, store: Arc<dyn Membership>) -> Self {
        Sharing {
            claims: Some(claims),
            store: Some(store),
            peers: 0,
            hints: PoolHints::Any,
            claiming: false,
            parked: HashSet::new(),
            parked_by_seq: VecDeque::new(),
            draining: false,
        }
    }

    /// A notification: work of `capability` (every capability: `None`) may be pooled.
    pub fn hint(&mut self, capability: Option<Capability>) {
        match (capability, &mut self.hints) {
            (None, hints) => *hints = PoolHints::Any,
            (Some(_), PoolHints::Any) => {}
            (Some(c), PoolHints::Only(set)) => {
                set.insert(c);
            }
        }
    }

    pub fn set_peers(&mut self, peers: usize) {
        self.peers = peers;
    }

    /// Other hubs may share the store (PostgreSQL): only then does anything move between hubs.
    pub fn shared(&self) -> bool {
        self.claims.is_some()
    }

    pub fn draining(&self) -> bool {
        self.draining
    }

    pub fn note_parked(&mut self, seq: u64, task: TaskId) {
        self.parked.insert(task);
        self.parked_by_seq.push_back((seq, task));
    }

    pub fn is_parked(&self, task: TaskId) -> bool {
        self.parked.contains(&task)
    }

    /// What batches up to `committed` parked, the store now answers for.
    pub fn forget_parked_through(&mut self, committed: u64) {
        while let Some(&(seq, task)) = self.parked_by_seq.front() {
            if seq > committed {
                break;
            }
            self.parked_by_seq.pop_front();
            self.parked.remove(&task);
        }
    }

    /// After a rebuild: batches not committed are refused, their parked tasks never existed.
    pub fn forget_all_parked(&mut self) {
        self.parked.clear();
        self.parked_by_seq.clear();
    }
}

impl Actor {
    /// Before a batch goes out: releases what other hubs should run, and asks for pooled work
    /// when agents here have room for it.
    pub(super) fn share(&mut self) {
        if self.sharing.claims.is_none() {
            return;
        }
        if self.sharing.peers > 0 {
            let released = self.scheduler.release_excess();
            self.effects
                .metrics
                .add(Count::TasksReleased, released.tasks as u64);
            // Parked in this batch: a child submitted before it commits parks behind them.
            for task in released.parked {
                self.sharing.note_parked(self.seq, task);
            }
        }
        if self.sharing.claiming {
            return;
        }
        let mut spare = self.scheduler.spare_slots();
        if let PoolHints::Only(set) = &self.sharing.hints {
            spare.retain(|(c, _)| set.contains(c));
        }
        if spare.is_empty() {
            return;
        }
        let claims = self.sharing.claims.as_ref().expect("checked above");
        if claims.try_send(spare).is_ok() {
            self.sharing.claiming = true;
        }
    }

    /// A stopping hub hands its work on: every agent here is drained (running tasks finish,
    /// nothing new starts, and agents that connect meanwhile are drained too), so the queue
    /// keeps nothing and `share` releases it all, and nothing is claimed any more.
    pub(super) fn drain_hub(&mut self) {
        self.sharing.draining = true;
        for agent in self.scheduler.agents() {
            if agent.state != hive_core::AgentState::Offline {
                let _ = self.scheduler.drain(agent.id);
            }
        }
    }

    /// Tasks claimed from the pool (`asked`: what the claim asked for) or adopted from a hub
    /// whose lease ended (`asked`: `None`) join the scheduler, as after a restart.
    pub(super) fn adopt(&mut self, adopted: Adopted, asked: Option<SpareSlots>, now: Timestamp) {
        let how = match asked {
            Some(asked) => {
                self.sharing.claiming = false;
                self.forget_empty_pools(&adopted, &asked);
                Count::TasksClaimed
            }
            None => Count::TasksAdopted,
        };
        let Adopted { mut tasks, parents } = adopted;
        self.effects.metrics.add(how, tasks.len() as u64);
        // A rebuild meanwhile (after a failed commit) loaded them from the store already.
        tasks.retain(|t| self.scheduler.active_status(t.spec.id).is_none());
        if tasks.is_empty() {
            return;
        }
        self.scheduler
            .restore(tasks, now, &mut |id| parents.get(&id).cloned());
    }

    /// A cancel of a task not active here, with other hubs possibly holding it: cancelled in the
    /// pool, or forwarded to its hub, on the blocking pool. Hands the reply back when this hub
    /// is alone in its store.
    pub(super) fn cancel_elsewhere(
        &self,
        task: TaskId,
        reply: Reply<Cancelled>,
        now: Timestamp,
    ) -> Result<(), Reply<Cancelled>> {
        let Some(store) = self.sharing.store.clone() else {
            return Err(reply);
        };
        tokio::task::spawn_blocking(move || {
            let outcome = match store.cancel_elsewhere(task, now) {
                Ok(CancelElsewhere::CancelledInPool) => Ok(Cancelled::Done),
                Ok(CancelElsewhere::Forwarded) => Ok(Cancelled::Requested),
                Ok(CancelElsewhere::Ended(status)) => Err(ApiError::Conflict {
                    message: format!("task {task} is already {status}"),
                }),
                Ok(CancelElsewhere::Unknown) => Err(ApiError::NotFound {
                    what: format!("task {task}"),
                }),
                Err(e) => Err(e.into()),
            };
            let _ = reply.send(outcome);
        });
        Ok(())
    }

    /// A capability whose claim came back short has nothing more pooled now.
    fn forget_empty_pools(&mut self, adopted: &Adopted, asked: &SpareSlots) {
        let short: Vec<&Capability> = asked
            .iter()
            .filter(|(capability, wanted)| {
                let got = adopted
                    .tasks
                    .iter()
                    .filter(|t| &t.spec.capability == capability)
                    .count();
                got < *wanted as usize
            })
            .map(|(c, _)| c)
            .collect();
        match &mut self.sharing.hints {
            PoolHints::Any => {
                // Everything not asked for stays unknown: keep asking for those too.
                let full: HashSet<Capability> = asked
                    .iter()
                    .map(|(c, _)| c.clone())
                    .filter(|c| !short.contains(&c))
                    .collect();
                if short.is_empty() {
                    return;
                }
                // What was not asked for (no room here) is looked for again at the next
                // backstop, when room may have come.
                self.sharing.hints = PoolHints::Only(full);
            }
            PoolHints::Only(set) => {
                for c in short {
                    set.remove(c);
                }
            }
        }
    }
}
