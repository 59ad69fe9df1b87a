//! What a task's life costs the embedded store: Hive's SQLite writer against the raw limit of
//! the same engine, for `hive-perf` (counted) and the divan benches (timed).
//!
//! - [`writer_round_trip`]: Hive's `SqliteWriter` (the hub's schema, indexes and statements)
//!   writes each task's life as the hub does, in three commits of 1,000: created (queued), started
//!   (the task running, its attempt inserted), ended (the attempt and the task updated). An
//!   attempt's start and end never share a commit in the hub (an assignment is sent only after
//!   the commit that records its start), so they do not here.
//! - [`raw_round_trip`]: the least a store of task states can do with the same engine and
//!   durability: one table keyed by the task's id, no secondary index, an INSERT and two UPDATEs
//!   per task, 1,000 per commit.
//!
//! Both in WAL mode with `synchronous = FULL` (an fsync per commit: the system call is not
//! counted, its time is) in a temporary directory.

use std::sync::Arc;

use hive_core::{
    AgentId, AttemptOutcome, Capability, Change, NextStatus, TaskId, TaskStatus, Timestamp,
};
use hive_store::BatchWriter;
use hive_store::sqlite::{Durability, SqliteStore};
use rusqlite::{Connection, params};
use uuid::Uuid;

use crate::task;

/// Tasks per commit, as in the issue's raw-limit program and a busy hub's group commits.
pub const PER_COMMIT: u64 = 1_000;

/// `tasks` tasks (a multiple of [`PER_COMMIT`]) through Hive's writer; returns the commits.
pub fn writer_round_trip(tasks: u64) -> usize {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path(), Durability::Full).expect("the store opens");
    let mut writer = store.writer().expect("a writer");
    let capability = Capability::parse("work", "capability").expect("valid");
    let agent = AgentId(Uuid::from_u64_pair(2, 1));
    let output: Arc<str> = "null".into();
    let mut commits = 0;
    for first in (0..tasks).step_by(PER_COMMIT as usize) {
        let specs: Vec<_> = (first..first + PER_COMMIT)
            .map(|n| Arc::new(task(n, &capability)))
            .collect();
        let created: Vec<Change> = specs
            .iter()
            .map(|spec| Change::TaskCreated {
                spec: spec.clone(),
                status: TaskStatus::Queued,
                error: None,
            })
            .collect();
        let started: Vec<Change> = specs
            .iter()
            .map(|spec| Change::AttemptStarted {
                spec: spec.clone(),
                attempt: 1,
                agent,
                started_at: Timestamp(first + 1),
                lease_until: Timestamp(first + 30_001),
                queued_ms: 1,
                inputs: vec![],
                identity: None,
            })
            .collect();
        let ended: Vec<Change> = specs
            .iter()
            .map(|spec| Change::AttemptEnded {
                task: spec.id,
                capability: capability.clone(),
                attempt: 1,
                agent: Some(agent),
                created_at: spec.created_at,
                started_at: Timestamp(first + 1),
                ended_at: Timestamp(first + 2),
                outcome: AttemptOutcome::Succeeded,
                output: Some(output.clone()),
                error: None,
                next: NextStatus::Succeeded,
            })
            .collect();
        for changes in [&created, &started, &ended] {
            writer.apply(&[changes]).expect("committed");
            commits += 1;
        }
    }
    commits
}

/// `tasks` tasks (a multiple of [`PER_COMMIT`]) through the least schema; returns the commits.
pub fn raw_round_trip(tasks: u64) -> usize {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut conn = Connection::open(dir.path().join("raw.db")).expect("the database opens");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE tasks (
             id BLOB PRIMARY KEY NOT NULL,
             capability TEXT NOT NULL,
             payload TEXT NOT NULL,
             status TEXT NOT NULL,
             result TEXT,
             updated_at INTEGER NOT NULL
         ) WITHOUT ROWID;",
    )
    .expect("the schema");
    let id = |n: u64| TaskId(Uuid::from_u64_pair(1, n));
    let payload = r#"{"text":"a short payload"}"#;
    let mut commits = 0;
    for first in (0..tasks).step_by(PER_COMMIT as usize) {
        let ids = first..first + PER_COMMIT;
        let statements = [
            "INSERT INTO tasks (id, capability, payload, status, updated_at)
             VALUES (?1, 'work', ?2, 'queued', ?3)",
            "UPDATE tasks SET status = 'running', updated_at = ?3 WHERE id = ?1 AND ?2 IS NOT NULL",
            "UPDATE tasks SET status = 'succeeded', result = 'null', updated_at = ?3
             WHERE id = ?1 AND ?2 IS NOT NULL",
        ];
        for sql in statements {
            let tx = conn.transaction().expect("a transaction");
            {
                let mut statement = tx.prepare_cached(sql).expect("the statement");
                for n in ids.clone() {
                    statement
                        .execute(params![id(n).as_bytes(), payload, n as i64])
                        .expect("written");
                }
            }
            tx.commit().expect("committed");
            commits += 1;
        }
    }
    commits
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_stores_commit_three_times_per_thousand_tasks() {
        assert_eq!(super::writer_round_trip(2_000), 6);
        assert_eq!(super::raw_round_trip(2_000), 6);
    }
}
