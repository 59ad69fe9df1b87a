//! Long-poll waiters: requests parked in `GET /tasks/{id}/wait` until their task ends.
//!
//! Woken by the after-commit effects, so a woken request always reads the final state from the
//! store. With several hubs, a task another hub finishes is found ended by this hub's
//! membership, which looks the parked tasks up in the store a few times a second.
//! A std Mutex: held only for a map operation, never across an await.

use std::sync::Mutex;

use hive_core::TaskId;
use tokio::sync::oneshot;

#[derive(Default)]
pub struct Waiters {
    /// foldhash, not SipHash: every task's end looks here, and its keys are ids the hub minted.
    parked: Mutex<foldhash::HashMap<TaskId, Vec<oneshot::Sender<()>>>>,
}

impl Waiters {
    pub fn register(&self, task: TaskId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(task).or_default().push(tx);
        rx
    }

    pub fn notify(&self, task: TaskId) {
        if let Some(waiters) = self.lock().remove(&task) {
            for waiter in waiters {
                let _ = waiter.send(());
            }
        }
    }

    /// The tasks waited on now; waiters that gave up without pruning are dropped on the way.
    pub fn parked(&self) -> Vec<TaskId> {
        let mut parked = self.lock();
        parked.retain(|_, waiters| {
            waiters.retain(|w| !w.is_closed());
            !waiters.is_empty()
        });
        parked.keys().copied().collect()
    }

    /// Drops the waiters of `task` that gave up (timed out or disconnected).
    pub fn prune(&self, task: TaskId) {
        let mut parked = self.lock();
        if let Some(waiters) = parked.get_mut(&task) {
            waiters.retain(|w| !w.is_closed());
            if waiters.is_empty() {
                parked.remove(&task);
            }
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, foldhash::HashMap<TaskId, Vec<oneshot::Sender<()>>>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }
}
