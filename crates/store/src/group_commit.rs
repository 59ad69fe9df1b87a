//! Group commit: one writer thread, many batches per transaction.
//!
//! Producers send [`WriteBatch`]es through a bounded channel (a full channel slows them down:
//! back-pressure, not unbounded memory). The thread takes the first batch, then every batch
//! already waiting up to `max_changes`, writes them in one transaction and runs each batch's
//! callback with the outcome. There is no artificial delay: batches pile up on their own while the
//! previous commit is in flight, so a quiet hub commits at once and a busy one commits in bulk.

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
