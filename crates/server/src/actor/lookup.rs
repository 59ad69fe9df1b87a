//! Store reads a submission needs, made off the actor's path.
//!
//! A submit may need what only the store knows: whether an idempotency key was used by a task
//! that has left the scheduler, and how a parent that has left it ended. The actor never reads
//! the store itself (with PostgreSQL a read is a network round trip, and every task would wait
//! behind it): it sends the submission with the keys and parents it misses to the blocking pool,
//! which reads them and hands the submission back ([`LookedUp`]); the actor then decides it with
//! what it knows by then.
//!
//! What the store answered is exact when the actor gets it back, because of two rules:
//! - A read begins after noting the last committed batch (`seen`). The actor keeps what a batch
//!   newer than the oldest `seen` in flight changed (pending keys, ended tasks) in memory, so
//!   whatever committed after a read began is still known to the actor when the read returns.
//! - A rebuild after a failed commit forgets what the actor kept; reads begun before it are made
//!   again (`epoch`).
//!
//! A key or parent the actor still knew when it sent the read but no longer knows when it comes
//! back (committed and forgotten meanwhile) is read in one more round, which keeps the first
//! round's `seen` (`Found::since`), so that the first round's answers stay exact through it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use hive_core::{TaskEnd, TaskId, TaskSpec, TaskStatus};
use hive_store::{StoreError, TaskReader};
use tokio::sync::mpsc;

use super::{Reply, Submitted};

/// What the store answered for one submission.
#[derive(Debug, Default)]
pub struct Found {
    /// Idempotency key -> the stored task that used it, with its status then.
    pub keys: HashMap<String, Option<(TaskId, TaskStatus)>>,
    /// Parent -> how it ended (`None`: unknown, or not finished when read).
    pub ends: HashMap<TaskId, Option<TaskEnd>>,
    /// Parents not finished when read, though not in this hub's memory: another hub holds them
    /// (several hubs on one database).
    pub elsewhere: HashSet<TaskId>,
    /// When the first round's read began (the last batch committed then). A later round
    /// registers this, not a newer number: the first round's answers rely on the actor keeping
    /// everything committed since, until the submission is decided.
    pub since: Option<u64>,
}

/// What the actor misses to decide a submission.
#[derive(Debug, Default)]
pub struct Missing {
    pub keys: HashSet<String>,
    pub parents: HashSet<TaskId>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.parents.is_empty()
    }
}

/// A submission back from the store, to be decided.
pub struct LookedUp {
    pub specs: Vec<TaskSpec>,
    pub batch: bool,
    pub reply: Reply<Vec<Submitted>>,
    pub found: Result<Found, StoreError>,
    /// The last batch committed before the read began.
    pub seen: u64,
    pub epoch: u64,
}

/// The reads in flight, so that the actor keeps what they might have missed.
pub struct Lookups {
    reader: Arc<dyn TaskReader>,
    back: mpsc::UnboundedSender<LookedUp>,
    /// `seen` of each read in flight -> how many.
    in_flight: BTreeMap<u64, usize>,
    /// Bumped by each rebuild: reads of an older epoch are made again.
    pub epoch: u64,
}

impl Lookups {
    pub fn new(reader: Arc<dyn TaskReader>) -> (Lookups, mpsc::UnboundedReceiver<LookedUp>) {
        let (back, returned) = mpsc::unbounded_channel();
        let lookups = Lookups {
            reader,
            back,
            in_flight: BTreeMap::new(),
            epoch: 0,
        };
        (lookups, returned)
    }

    /// Reads what is missing on the blocking pool, adding to what an earlier round found.
    /// `seen`: the last batch committed now (an earlier round's, when there was one, wins).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        specs: Vec<TaskSpec>,
        batch: bool,
        reply: Reply<Vec<Submitted>>,
        mut found: Found,
        missing: Missing,
        seen: u64,
    ) {
        let seen = *found.since.get_or_insert(seen);
        *self.in_flight.entry(seen).or_default() += 1;
        let reader = self.reader.clone();
        let back = self.back.clone();
        let epoch = self.epoch;
        tokio::task::spawn_blocking(move || {
            // A panic must still hand the submission back: a read that never returns would hold
            // back `forget_through` (and the actor's memory) for good.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                read_missing(&*reader, missing, &mut found)
            }))
            .unwrap_or_else(|_| Err(StoreError::Database("a store read panicked".into())))
            .map(|()| found);
            let _ = back.send(LookedUp {
                specs,
                batch,
                reply,
                found: read,
                seen,
                epoch,
            });
        });
    }

    /// A read came back.
    pub fn ended(&mut self, seen: u64) {
        if let Some(count) = self.in_flight.get_mut(&seen) {
            *count -= 1;
            if *count == 0 {
                self.in_flight.remove(&seen);
            }
        }
    }

    /// What a batch up to this number changed may be forgotten: every read in flight began
    /// after it committed.
    pub fn forget_through(&self, committed: u64) -> u64 {
        self.in_flight
            .keys()
            .next()
            .map_or(committed, |oldest| committed.min(*oldest))
    }
}

fn read_missing(
    reader: &dyn TaskReader,
    missing: Missing,
    found: &mut Found,
) -> Result<(), StoreError> {
    for key in missing.keys {
        let task = reader.find_by_idempotency_key(&key)?;
        found.keys.insert(key, task);
    }
    for parent in missing.parents {
        let end = reader.task_end(parent)?;
        if end.is_none() && reader.task_status(parent)?.is_some() {
            found.elsewhere.insert(parent);
        }
        found.ends.insert(parent, end);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Empty;

    impl TaskReader for Empty {
        fn get_task(&self, _: TaskId) -> Result<Option<hive_store::StoredTask>, StoreError> {
            Ok(None)
        }
        fn list_tasks(
            &self,
            _: &hive_store::TaskFilter,
        ) -> Result<Vec<hive_store::StoredTask>, StoreError> {
            Ok(Vec::new())
        }
        fn count_by_status(&self) -> Result<Vec<(TaskStatus, u64)>, StoreError> {
            Ok(Vec::new())
        }
        fn task_status(&self, _: TaskId) -> Result<Option<TaskStatus>, StoreError> {
            Ok(None)
        }
        fn task_end(&self, _: TaskId) -> Result<Option<TaskEnd>, StoreError> {
            Ok(None)
        }
        fn find_by_idempotency_key(
            &self,
            _: &str,
        ) -> Result<Option<(TaskId, TaskStatus)>, StoreError> {
            Ok(None)
        }
        fn load_active(&self) -> Result<Vec<hive_core::RecoveredTask>, StoreError> {
            Ok(Vec::new())
        }
        fn load_learned(&self) -> Result<Vec<hive_core::LearnedEstimate>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_second_round_keeps_what_the_first_relied_on() {
        let (mut lookups, mut back) = Lookups::new(Arc::new(Empty));
        let missing = || Missing {
            keys: HashSet::from(["k".to_string()]),
            parents: HashSet::new(),
        };
        let (reply, _) = tokio::sync::oneshot::channel();
        lookups.start(Vec::new(), false, reply, Found::default(), missing(), 3);
        let first = back.recv().await.unwrap();
        assert_eq!(first.seen, 3);
        lookups.ended(first.seen);
        // More is missing: a second round begins with batch 8 committed, but the first
        // round's answer about "k" dates from batch 3.
        let (reply, _) = tokio::sync::oneshot::channel();
        let found = first.found.unwrap();
        lookups.start(Vec::new(), false, reply, found, missing(), 8);
        assert_eq!(lookups.forget_through(9), 3);
        let second = back.recv().await.unwrap();
        assert_eq!(second.seen, 3);
        lookups.ended(second.seen);
        assert_eq!(lookups.forget_through(9), 9);
    }

    #[tokio::test]
    async fn what_committed_after_the_oldest_read_began_is_kept_until_it_returns() {
        let (mut lookups, mut back) = Lookups::new(Arc::new(Empty));
        assert_eq!(lookups.forget_through(9), 9, "no read in flight");
        for seen in [4, 6, 4] {
            let (reply, _) = tokio::sync::oneshot::channel();
            let missing = Missing {
                keys: HashSet::from(["k".to_string()]),
                parents: HashSet::new(),
            };
            lookups.start(Vec::new(), false, reply, Found::default(), missing, seen);
        }
        assert_eq!(lookups.forget_through(9), 4);
        assert_eq!(lookups.forget_through(3), 3);
        let mut seens = Vec::new();
        for _ in 0..3 {
            let returned = back.recv().await.unwrap();
            assert_eq!(returned.found.unwrap().keys["k"], None);
            seens.push(returned.seen);
        }
        seens.sort();
        lookups.ended(seens[0]);
        assert_eq!(
            lookups.forget_through(9),
            4,
            "one read begun at 4 is still out"
        );
        lookups.ended(seens[1]);
        assert_eq!(lookups.forget_through(9), 6);
        lookups.ended(seens[2]);
        assert_eq!(lookups.forget_through(9), 9);
    }
}
