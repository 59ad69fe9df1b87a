//! The ready queue of one capability, ordered by priority with aging.
//!
//! Aging is folded into a static sort key, `ready_at - priority * aging_ms`: a task's effective
//! priority grows by one level every `aging_ms` it waits, so a priority-0 task queued
//! `9 * aging_ms` ago ranks with a fresh priority-9 task and nothing starves. Because the key
//! never changes while a task waits, the queue is a plain ordered set: O(log n) push and pop,
//! no periodic re-sorting.

use std::collections::BTreeSet;

use crate::ids::TaskId;
use crate::time::Timestamp;

/// Sort key of a queued task; smaller runs first.
pub type QueueKey = (i64, TaskId);

pub fn queue_key(ready_at: Timestamp, priority: u8, aging_ms: u64, id: TaskId) -> QueueKey {
    (
        (ready_at.0 as i64).saturating_sub(boost(priority, aging_ms)),
        id,
    )
}

/// When the task whose key starts with `rank` became ready: the inverse of [`queue_key`].
pub fn ready_at(rank: i64, priority: u8, aging_ms: u64) -> Timestamp {
    Timestamp(rank.saturating_add(boost(priority, aging_ms)).max(0) as u64)
}

fn boost(priority: u8, aging_ms: u64) -> i64 {
    i64::from(priority).saturating_mul(aging_ms.min(i64::MAX as u64 / 16) as i64)
}

#[derive(Debug, Default)]
pub struct ReadyQueue {
    tasks: BTreeSet<QueueKey>,
}

impl ReadyQueue {
    pub fn push(&mut self, key: QueueKey) {
        self.tasks.insert(key);
    }

    pub fn remove(&mut self, key: &QueueKey) -> bool {
        self.tasks.remove(key)
    }

    pub fn contains(&self, key: &QueueKey) -> bool {
        self.tasks.contains(key)
    }

    pub fn peek(&self) -> Option<&QueueKey> {
        self.tasks.first()
    }

    pub fn pop(&mut self) -> Option<QueueKey> {
        self.tasks.pop_first()
    }

    /// From the last to run to the first.
    pub fn iter_last_first(&self) -> impl Iterator<Item = &QueueKey> {
        self.tasks.iter().rev()
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn id(n: u128) -> TaskId {
        TaskId(Uuid::from_u128(n))
    }

    #[test]
    fn higher_priority_first_then_fifo() {
        let mut q = ReadyQueue::default();
        q.push(queue_key(Timestamp(1000), 5, 1000, id(1)));
        q.push(queue_key(Timestamp(1001), 9, 1000, id(2)));
        q.push(queue_key(Timestamp(1002), 5, 1000, id(3)));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|k| k.1).collect();
        assert_eq!(order, vec![id(2), id(1), id(3)]);
    }

    #[test]
    fn aging_lets_a_long_waiting_low_priority_task_overtake() {
        let aging = 1_000;
        let mut q = ReadyQueue::default();
        // Priority 0, queued 10 aging steps before a fresh priority 9.
        q.push(queue_key(Timestamp(0), 0, aging, id(1)));
        q.push(queue_key(Timestamp(10 * aging), 9, aging, id(2)));
        assert_eq!(q.pop().unwrap().1, id(1));
        // But only 8 steps earlier it still yields to priority 9.
        let mut q = ReadyQueue::default();
        q.push(queue_key(Timestamp(2 * aging), 0, aging, id(1)));
        q.push(queue_key(Timestamp(10 * aging), 9, aging, id(2)));
        assert_eq!(q.pop().unwrap().1, id(2));
    }
}
