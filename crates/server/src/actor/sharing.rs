//! The actor's side of several hubs sharing a database (docs/scaling.md): letting go of queued
//! work its agents cannot start soon, asking for pooled work when they have room, and taking in
//! what was claimed or adopted.
//!
//! The scheduler decides what to release and how much room there is
//! (`hive_core::Scheduler::{release_excess, spare_slots}`); the store calls run on the hub's
//! membership task ([`crate::membership`]), never here. One claim is in flight at a time. The
//! actor asks only for capabilities the pool may hold work of (`hints`): every capability after
//! a notification was missed (at start, after the listening connection came back, and once a
//! second as a backstop), a capability named by a notification, and not a capability whose last
//! claim came back short, until one of those says otherwise.

use std::collections::HashSet;

use hive_core::{Capability, SpareSlots, Timestamp};
use hive_store::Adopted;
use tokio::sync::mpsc;

use super::Actor;
use crate::metrics::Count;

/// A claim the actor asks the membership task to make.
pub type ClaimRequest = SpareSlots;

/// What the actor knows of the other hubs and the pool.
pub struct Sharing {
    /// Where claims go; `None`: this hub is alone in its store (SQLite).
    claims: Option<mpsc::Sender<ClaimRequest>>,
    /// Other hubs holding live leases, as of the last heartbeat: with none, nothing is released
    /// (nobody would take it).
    peers: usize,
    hints: PoolHints,
    claiming: bool,
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
            peers: 0,
            hints: PoolHints::Only(HashSet::new()),
            claiming: false,
        }
    }

    pub fn with_peers(claims: mpsc::Sender<ClaimRequest>) -> Self {
        Sharing {
            claims: Some(claims),
            peers: 0,
            hints: PoolHints::Any,
            claiming: false,
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
}

impl Actor {
    /// Before a batch goes out: releases what other hubs should run, and asks for pooled work
    /// when agents here have room for it.
    pub(super) fn share(&mut self) {
        let Some(claims) = &self.sharing.claims else {
            return;
        };
        if self.sharing.peers > 0 {
            let released = self.scheduler.release_excess();
            self.effects
                .metrics
                .add(Count::TasksReleased, released as u64);
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
        if claims.try_send(spare).is_ok() {
            self.sharing.claiming = true;
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
