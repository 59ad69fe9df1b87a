//! What the scheduler learned per agent identity and capability ([`Estimate`]s), kept across
//! reconnects: an agent's identity is its `name`, so two connections under one name are two
//! instances of one identity and share what is learned.
//!
//! Estimates sit in a slab; each connected agent holds the slab index of each of its capabilities,
//! so routing reads them without hashing. An estimate that changed is marked dirty and goes out as
//! a [`Change::Learned`] with the next [`Scheduler::take_changes`](super::Scheduler::take_changes),
//! once per turn however many attempts ended, for the store to keep.

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use super::Change;
use crate::estimate::Estimate;
use crate::task::Capability;

#[derive(Debug)]
struct Entry {
    identity: Arc<str>,
    capability: Capability,
    estimate: Estimate,
    dirty: bool,
}

#[derive(Debug)]
pub(super) struct Knowledge {
    entries: Vec<Entry>,
    index: HashMap<(Arc<str>, Capability), usize>,
    dirty: Vec<usize>,
}

/// One estimate as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedEstimate {
    pub identity: Arc<str>,
    pub capability: Capability,
    pub estimate: Estimate,
}

impl Knowledge {
    pub(super) fn new() -> Self {
        Knowledge {
            entries: Vec::new(),
            index: HashMap::new(),
            dirty: Vec::new(),
        }
    }

    /// The slab index of the identity's estimate on the capability, made empty if new.
    pub(super) fn slot(&mut self, identity: &Arc<str>, capability: &Capability) -> usize {
        let key = (identity.clone(), capability.clone());
        *self.index.entry(key).or_insert_with(|| {
            self.entries.push(Entry {
                identity: identity.clone(),
                capability: capability.clone(),
                estimate: Estimate::default(),
                dirty: false,
            });
            self.entries.len() - 1
        })
    }

    pub(super) fn get(&self, slot: usize) -> &Estimate {
        &self.entries[slot].estimate
    }

    /// Changes the estimate and marks it for the store.
    pub(super) fn update(&mut self, slot: usize, change: impl FnOnce(&mut Estimate)) {
        let entry = &mut self.entries[slot];
        change(&mut entry.estimate);
        if !entry.dirty {
            entry.dirty = true;
            self.dirty.push(slot);
        }
    }

    /// Puts back what the store kept.
    pub(super) fn restore(&mut self, learned: Vec<LearnedEstimate>) {
        for l in learned {
            let slot = self.slot(&l.identity, &l.capability);
            self.entries[slot].estimate = l.estimate;
        }
    }

    /// Every estimate of the capability with its identity, for the assignment shares.
    pub(super) fn of_capability<'a>(
        &'a self,
        capability: &'a Capability,
    ) -> impl Iterator<Item = &'a Estimate> + 'a {
        self.entries
            .iter()
            .filter(move |e| &e.capability == capability)
            .map(|e| &e.estimate)
    }

    /// The estimates changed since the last call, as changes for the store.
    pub(super) fn take_dirty(&mut self, changes: &mut Vec<Change>) {
        for slot in self.dirty.drain(..) {
            let entry = &mut self.entries[slot];
            entry.dirty = false;
            changes.push(Change::Learned(LearnedEstimate {
                identity: entry.identity.clone(),
                capability: entry.capability.clone(),
                estimate: entry.estimate,
            }));
        }
    }
}
