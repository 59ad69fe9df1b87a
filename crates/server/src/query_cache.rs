//! The query cache: answers to hot reads kept in memory (moka), so that dashboards and pollers
//! do not each cost a database query. What it keeps, and how long:
//! - a finished task (`GET /tasks/{id}`): it never changes again, so it is kept until evicted
//!   (the cache holds at most [`FINISHED_BYTES`] of them, by size);
//! - task listings and status counts: [`FRESH_FOR`]; these reads tolerate staleness anyway (a
//!   read replica may answer them);
//! - the agent list: [`FRESH_FOR`], and dropped at once when an agent joins, leaves or is
//!   drained here.
//!
//! A client's reads soon after its own write skip the cache (see [`crate::reads`]): a cached
//! answer never hides a client's own write from it. Hits and misses per query are counted for
//! `hive_query_cache_lookups_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use hive_core::{AgentSnapshot, TaskId, TaskStatus};
use hive_proto::api::Task;
use moka::sync::Cache;

/// How long a listing, the status counts and the agent list are answered from memory.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// The finished tasks kept at most, in bytes (their payloads, results and errors, roughly).
pub const FINISHED_BYTES: u64 = 64 << 20;

/// Listings kept at most (one per filter and page asked for lately).
const LISTINGS: u64 = 256;

/// The queries the cache answers, as named in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    FinishedTask,
    TaskList,
    StatusCounts,
    Agents,
}

impl Query {
    pub const ALL: [Query; 4] = [
        Query::FinishedTask,
        Query::TaskList,
        Query::StatusCounts,
        Query::Agents,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Query::FinishedTask => "finished_task",
            Query::TaskList => "task_list",
            Query::StatusCounts => "status_counts",
            Query::Agents => "agents",
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
    lists: Cache<ListKey, Bytes>,
    counts: Cache<(), Arc<Vec<(TaskStatus, u64)>>>,
    agents: Cache<(), Arc<Vec<AgentSnapshot>>>,
    /// Hits and misses, per [`Query`] in [`Query::ALL`]'s order.
    lookups: [(AtomicU64, AtomicU64); 4],
}

impl Default for QueryCache {
    fn default() -> Self {
        QueryCache {
            finished: Cache::builder()
                .max_capacity(FINISHED_BYTES)
                .weigher(|_, task: &Arc<Task>| weight(task))
                .build(),
            lists: Cache::builder()
                .max_capacity(LISTINGS)
                .time_to_live(FRESH_FOR)
                .build(),
            counts: Cache::builder()
                .max_capacity(1)
                .time_to_live(FRESH_FOR)
                .build(),
            agents: Cache::builder()
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
    let varying = task.payload.get().len()
        + task.result.as_ref().map_or(0, |r| r.get().len())
        + task.error.as_ref().map_or(0, String::len);
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

    /// Keeps `task` if it is finished (an unfinished one still changes).
    pub fn keep_if_finished(&self, id: TaskId, task: &Task) {
        let finished = task
            .status
            .parse::<TaskStatus>()
            .is_ok_and(TaskStatus::is_terminal);
        if finished {
            self.finished.insert(id, Arc::new(task.clone()));
        }
    }

    /// The listing cached for `key`; `usable` false (the client wrote lately) counts a miss.
    pub fn list(&self, key: &ListKey, usable: bool) -> Option<Bytes> {
        self.count(
            Query::TaskList,
            usable.then(|| self.lists.get(key)).flatten(),
        )
    }

    pub fn keep_list(&self, key: ListKey, body: Bytes) {
        self.lists.insert(key, body);
    }

    /// The status counts cached; `usable` false (the client wrote lately) counts a miss.
    pub fn counts(&self, usable: bool) -> Option<Arc<Vec<(TaskStatus, u64)>>> {
        self.count(
            Query::StatusCounts,
            usable.then(|| self.counts.get(&())).flatten(),
        )
    }

    pub fn keep_counts(&self, counts: Arc<Vec<(TaskStatus, u64)>>) {
        self.counts.insert((), counts);
    }

    pub fn agents(&self) -> Option<Arc<Vec<AgentSnapshot>>> {
        self.count(Query::Agents, self.agents.get(&()))
    }

    pub fn keep_agents(&self, agents: Arc<Vec<AgentSnapshot>>) {
        self.agents.insert((), agents);
    }

    /// An agent joined, left or changed how it takes work: the cached list is wrong now.
    pub fn forget_agents(&self) {
        self.agents.invalidate(&());
    }
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
        task.status = status.into();
        task
    }

    #[test]
    fn only_finished_tasks_are_kept_and_lookups_are_counted() {
        let cache = QueryCache::default();
        let (running, done) = (TaskId(uuid::Uuid::now_v7()), TaskId(uuid::Uuid::now_v7()));
        cache.keep_if_finished(running, &task("running"));
        cache.keep_if_finished(done, &task("succeeded"));
        assert!(cache.finished(running).is_none());
        assert_eq!(cache.finished(done).unwrap().status, "succeeded");
        let finished = cache.lookups()[Query::FinishedTask as usize];
        assert_eq!((finished.1, finished.2), (1, 1));
    }

    #[test]
    fn the_agent_list_is_forgotten_when_agents_change() {
        let cache = QueryCache::default();
        cache.keep_agents(Arc::new(Vec::new()));
        assert!(cache.agents().is_some());
        cache.forget_agents();
        assert!(cache.agents().is_none());
    }
}
