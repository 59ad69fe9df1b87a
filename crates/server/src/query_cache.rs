//! The query cache: answers to hot reads kept in memory (moka), so that dashboards and pollers
//! do not each cost a database query. What it keeps, and how long:
//! - a finished task (`GET /tasks/{id}`; not a consensus task): it never changes again, so it
//!   is kept until evicted (the cache holds at most [`FINISHED_BYTES`] of them, by size);
//! - task listings and status counts: [`FRESH_FOR`]; these reads tolerate staleness anyway (a
//!   read replica may answer them).
//!
//! The agent list is not cached: the scheduler answers it from memory (no database query to
//! save), and its counters (running, completed) are read right after a task ends.
//!
//! A client's reads soon after its own write skip the cache (see [`crate::reads`]): a cached
//! answer never hides a client's own write from it. Hits and misses per query are counted for
//! `hive_query_cache_lookups_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use hive_core::{TaskId, TaskStatus};
use hive_proto::api::Task;
use moka::sync::Cache;

/// How long a listing and the status counts are answered from memory.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// The finished tasks kept at most, in bytes (their payloads, results and errors, roughly).
pub const FINISHED_BYTES: u64 = 64 << 20;

/// The listings kept at most, in bytes of their JSON (one per filter and page asked for lately).
pub const LISTING_BYTES: u64 = 64 << 20;

/// Tasks by status, as the store counts them.
pub type StatusCounts = Arc<Vec<(TaskStatus, u64)>>;

/// The queries the cache answers, as named in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    FinishedTask,
    TaskList,
    StatusCounts,
}

impl Query {
    pub const ALL: [Query; 3] = [Query::FinishedTask, Query::TaskList, Query::StatusCounts];

    pub fn name(self) -> &'static str {
        match self {
            Query::FinishedTask => "finished_task",
            Query::TaskList => "task_list",
            Query::StatusCounts => "status_counts",
        }
    }
}

/// A listing's filter and page: what its cached answer is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListKey {
    pub status: Option<TaskStatus>,
    pub capability: Option<String>,
    pub cursor: Option<TaskId>,
    pub limit: usize,
}

pub struct QueryCache {
    finished: Cache<TaskId, Arc<Task>>,
    /// Listings as their JSON bodies, answered as they are.
    lists: Cache<ListKey, (Instant, Bytes)>,
    counts: Cache<(), (Instant, StatusCounts)>,
    /// Hits and misses, per [`Query`] in [`Query::ALL`]'s order.
    lookups: [(AtomicU64, AtomicU64); 3],
}

impl Default for QueryCache {
    fn default() -> Self {
        QueryCache {
            finished: Cache::builder()
                .max_capacity(FINISHED_BYTES)
                .weigher(|_, task: &Arc<Task>| weight(task))
                .build(),
            lists: Cache::builder()
                .max_capacity(LISTING_BYTES)
                .weigher(|_, (_, body): &(Instant, Bytes)| {
                    u32::try_from(body.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(FRESH_FOR)
                .build(),
            counts: Cache::builder()
                .max_capacity(1)
                .time_to_live(FRESH_FOR)
                .build(),
            lookups: Default::default(),
        }
    }
}

/// A finished task's size in the cache: what varies (payload, result, error) and a share for
/// the rest.
fn weight(task: &Task) -> u32 {
    let attempts: usize = task
        .attempts
        .iter()
        .map(|a| 128 + a.error.as_ref().map_or(0, String::len))
        .sum();
    let varying = task.payload.get().len()
        + task.result.as_ref().map_or(0, |r| r.get().len())
        + task.error.as_ref().map_or(0, String::len)
        + attempts;
    u32::try_from(varying + 512).unwrap_or(u32::MAX)
}

impl QueryCache {
    fn count<T>(&self, query: Query, found: Option<T>) -> Option<T> {
        let (hits, misses) = &self.lookups[query as usize];
        let counter = if found.is_some() { hits } else { misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Lookups so far, per query: (query, hits, misses).
    pub fn lookups(&self) -> Vec<(Query, u64, u64)> {
        Query::ALL
            .iter()
            .map(|&q| {
                let (hits, misses) = &self.lookups[q as usize];
                (
                    q,
                    hits.load(Ordering::Relaxed),
                    misses.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The task, when it is finished and cached.
    pub fn finished(&self, id: TaskId) -> Option<Arc<Task>> {
        self.count(Query::FinishedTask, self.finished.get(&id))
    }

    /// Keeps `task` if it is finished (an unfinished one still changes; so does a finished
    /// consensus task, whose outvoted replicas may still report).
    pub fn keep_if_finished(&self, id: TaskId, task: &Task) {
        let finished = task.replicas.is_none() && task.status.is_finished();
        if finished {
            self.finished.insert(id, Arc::new(task.clone()));
        }
    }

    /// The listing cached for `key`; `usable` false (the client wrote lately) counts a miss.
    pub fn list(&self, key: &ListKey, usable: bool) -> Option<Bytes> {
        let found = usable.then(|| self.lists.get(key)).flatten();
        self.count(Query::TaskList, fresh(found))
    }

    /// Keeps a listing whose read began at `began`.
    pub fn keep_list(&self, key: ListKey, began: Instant, body: Bytes) {
        self.lists.insert(key, (began, body));
    }

    /// The status counts cached; `usable` false (the client wrote lately) counts a miss.
    pub fn counts(&self, usable: bool) -> Option<StatusCounts> {
        let found = usable.then(|| self.counts.get(&())).flatten();
        self.count(Query::StatusCounts, fresh(found))
    }

    /// Keeps status counts whose read began at `began`.
    pub fn keep_counts(&self, began: Instant, counts: StatusCounts) {
        self.counts.insert((), (began, counts));
    }
}

/// The answer of an entry, if its read began less than [`FRESH_FOR`] ago. Counted from the
/// read's start, not from the insert (moka's own expiry): a read that began before a client's
/// write and ended after it is not served once the client's note of the write has expired.
fn fresh<T>(entry: Option<(Instant, T)>) -> Option<T> {
    entry
        .filter(|(began, _)| began.elapsed() < FRESH_FOR)
        .map(|(_, answer)| answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: &str) -> Task {
        let mut task: Task = serde_json::from_value(serde_json::json!({
            "id": "t", "status": status, "capability": "echo", "payload": {"n": 1},
            "priority": 5, "max_attempts": 3, "timeout_ms": 1000, "backoff_ms": 100,
            "idempotency_key": null, "depends_on": [], "on_parent_failure": "fail",
            "attempts": [], "result": null, "error": null,
            "created_at": "2026-12-02T00:00:00Z", "updated_at": "2026-12-02T00:00:00Z"
        }))
        .unwrap();
        task.status = status.parse().unwrap();
        task
    }

    #[test]
    fn only_finished_tasks_are_kept_and_lookups_are_counted() {
        let cache = QueryCache::default();
        let (running, done) = (TaskId(uuid::Uuid::now_v7()), TaskId(uuid::Uuid::now_v7()));
        cache.keep_if_finished(running, &task("running"));
        cache.keep_if_finished(done, &task("succeeded"));
        assert!(cache.finished(running).is_none());
        assert_eq!(
            cache.finished(done).unwrap().status,
            hive_proto::api::TaskStatus::Succeeded
        );
        let finished = cache.lookups()[Query::FinishedTask as usize];
        assert_eq!((finished.1, finished.2), (1, 1));
    }
}
