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
    /// foldhash, not SipHash: every task's end looks here. Its keys are ids a client named in a
    /// request (`/wait`); foldhash's seed is random, and a made-up id leaves with its request.
    parked: Mutex<foldhash::HashMap<TaskId, Vec<oneshot::Sender<()>>>>,
}

/// A request parked on a task: [`Parked::woken`] resolves when the task ends. Dropped (answered,
/// timed out, or its client gone), it leaves the map, so that a wait on a task that already
/// ended, or on no task at all, leaves nothing behind: no end would ever come to remove it.
pub struct Parked<'a> {
    waiters: &'a Waiters,
    task: TaskId,
    woken: Option<oneshot::Receiver<()>>,
}

impl Parked<'_> {
    /// Resolves when the task ends; after it has, at once.
    pub async fn woken(&mut self) {
        if let Some(woken) = self.woken.as_mut() {
            let _ = woken.await;
            // A finished receiver must not be polled again.
            self.woken = None;
        }
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        // Closed first, so that the prune sees it gone.
        self.woken = None;
        self.waiters.prune(self.task);
    }
}

impl Waiters {
    /// Parks a request on `task` until the returned guard is dropped.
    pub fn park(&self, task: TaskId) -> Parked<'_> {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(task).or_default().push(tx);
        Parked {
            waiters: self,
            task,
            woken: Some(rx),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[tokio::test]
    async fn a_parked_request_wakes_at_the_end_and_leaves_nothing_when_it_goes() {
        let waiters = Waiters::default();
        let (task, other) = (TaskId(Uuid::from_u128(1)), TaskId(Uuid::from_u128(2)));
        let mut woken = waiters.park(task);
        waiters.notify(task);
        woken.woken().await;
        drop(woken);
        // Requests that go without an end (a task ended already, a made-up id, a client gone).
        let first = waiters.park(other);
        let second = waiters.park(other);
        drop(first);
        assert_eq!(waiters.lock().get(&other).map(Vec::len), Some(1));
        drop(second);
        assert!(waiters.lock().is_empty());
    }
}
