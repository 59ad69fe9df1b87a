//! Group commit: one writer thread, many batches per transaction.
//!
//! Producers send [`WriteBatch`]es through a bounded channel (a full channel slows them down:
//! back-pressure, not unbounded memory). The thread takes the first batch, then every batch
//! already waiting up to `max_changes`, writes them in one transaction and runs each batch's
//! callback with the outcome. There is no artificial delay: batches pile up on their own while the
//! previous commit is in flight, so a quiet hub commits at once and a busy one commits in bulk.
//!
//! A failed commit poisons its generation: producers pipeline batches, so a batch queued behind a
//! failed one may build on what failed (an attempt of a task whose creation was refused). Every
//! batch carries the [`generation`](WriteBatch::generation) of the state it was decided on, and
//! after a failure the batches of that generation or older are refused unwritten. The producer
//! rebuilds its state from the store and goes on with a newer generation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use hive_core::Change;
use tokio::sync::mpsc;

use crate::{BatchWriter, StoreError};

/// Called on the writer thread once the batch's transaction committed (or failed), with the
/// batch's changes handed back.
pub type OnCommit = Box<dyn FnOnce(Result<(), StoreError>, Vec<Change>) + Send>;

pub struct WriteBatch {
    pub changes: Vec<Change>,
    /// The producer's state this batch was decided on; see the module's header.
    pub generation: u64,
    pub on_commit: OnCommit,
}

/// Counters of the writer, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub commits: AtomicU64,
    pub batches: AtomicU64,
    pub changes: AtomicU64,
    pub failures: AtomicU64,
}

pub struct GroupCommit {
    sender: mpsc::Sender<WriteBatch>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<CommitStats>,
}

impl GroupCommit {
    pub fn spawn(mut writer: impl BatchWriter, queue: usize, max_changes: usize) -> GroupCommit {
        let (sender, mut receiver) = mpsc::channel::<WriteBatch>(queue.max(1));
        let stats = Arc::new(CommitStats::default());
        let counters = stats.clone();
        let thread = std::thread::Builder::new()
            .name("hive-group-commit".into())
            .spawn(move || {
                // Batches of a generation below this are refused: an earlier commit failed.
                let mut refused_below = 0u64;
                while let Some(first) = receiver.blocking_recv() {
                    let mut size = first.changes.len();
                    let mut group = vec![first];
                    while size < max_changes {
                        match receiver.try_recv() {
                            Ok(batch) => {
                                size += batch.changes.len();
                                group.push(batch);
                            }
                            Err(_) => break,
                        }
                    }
                    let (group, stale): (Vec<_>, Vec<_>) = group
                        .into_iter()
                        .partition(|b| b.generation >= refused_below);
                    for batch in stale {
                        (batch.on_commit)(Err(StoreError::EarlierCommitFailed), batch.changes);
                    }
                    if group.is_empty() {
                        continue;
                    }
                    let size: usize = group.iter().map(|b| b.changes.len()).sum();
                    let slices: Vec<&[Change]> =
                        group.iter().map(|b| b.changes.as_slice()).collect();
                    let outcome = writer.apply(&slices);
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                    counters
                        .batches
                        .fetch_add(group.len() as u64, Ordering::Relaxed);
                    counters.changes.fetch_add(size as u64, Ordering::Relaxed);
                    if let Err(e) = &outcome {
                        counters.failures.fetch_add(1, Ordering::Relaxed);
                        let newest = group.iter().map(|b| b.generation).max().unwrap_or(0);
                        refused_below = refused_below.max(newest + 1);
                        tracing::error!(error = %e, batches = group.len(), "group commit failed");
                    }
                    for batch in group {
                        (batch.on_commit)(outcome.clone(), batch.changes);
                    }
                }
            })
            .expect("spawn the group-commit thread");
        GroupCommit {
            sender,
            thread: Some(thread),
            stats,
        }
    }

    /// Queues a batch; waits while the queue is full.
    pub async fn submit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.sender
            .send(batch)
            .await
            .map_err(|_| StoreError::Closed)
    }

    pub fn stats(&self) -> Arc<CommitStats> {
        self.stats.clone()
    }

    /// A handle that can queue batches; the thread ends once every handle and this is dropped.
    pub fn sender(&self) -> mpsc::Sender<WriteBatch> {
        self.sender.clone()
    }

    /// Stops taking batches, commits what is queued, and waits for the thread to finish.
    pub fn close(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use hive_core::AgentId;
    use uuid::Uuid;

    use super::*;

    /// Records what it writes (agent numbers of `SendDrain` changes); fails on agent 2.
    struct Flaky(Arc<Mutex<Vec<u128>>>);

    impl BatchWriter for Flaky {
        fn apply(&mut self, batches: &[&[Change]]) -> Result<(), StoreError> {
            let numbers: Vec<u128> = batches
                .iter()
                .flat_map(|b| b.iter())
                .map(|c| match c {
                    Change::SendDrain { agent } => agent.0.as_u128(),
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            if numbers.contains(&2) {
                return Err(StoreError::Database("disk full".into()));
            }
            self.0.lock().unwrap().extend(numbers);
            Ok(())
        }
    }

    #[test]
    fn a_failed_commit_refuses_the_batches_of_its_generation_queued_behind_it() {
        let written = Arc::new(Mutex::new(Vec::new()));
        // One change per transaction, so each batch is committed on its own.
        let commit = GroupCommit::spawn(Flaky(written.clone()), 16, 1);
        let (tx, rx) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            for (n, generation) in [(1, 0), (2, 0), (3, 0), (4, 1)] {
                let tx = tx.clone();
                let batch = WriteBatch {
                    changes: vec![Change::SendDrain {
                        agent: AgentId(Uuid::from_u128(n)),
                    }],
                    generation,
                    on_commit: Box::new(move |outcome, _| tx.send((n, outcome)).unwrap()),
                };
                commit.submit(batch).await.unwrap();
            }
        });
        drop(tx);
        let outcomes: Vec<_> = rx.iter().collect();
        commit.close();
        assert!(matches!(outcomes[0], (1, Ok(()))));
        assert!(matches!(outcomes[1], (2, Err(StoreError::Database(_)))));
        assert!(matches!(
            outcomes[2],
            (3, Err(StoreError::EarlierCommitFailed))
        ));
        assert!(matches!(outcomes[3], (4, Ok(()))));
        assert_eq!(*written.lock().unwrap(), vec![1, 4]);
    }
}
