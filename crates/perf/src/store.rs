//! What a task's life costs the embedded store: Hive's SQLite writer against the raw limit of
//! the same engine, for `hive-perf` (counted) and the divan benches (timed).
//!
//! - [`writer_round_trip`]: Hive's `SqliteWriter` (the hub's schema, indexes and statements)
//!   writes each task's life as the hub does when tasks queue (more of them than free slots), in
//!   three commits of 1,000: created (queued), started (the task running, its attempt inserted),
//!   ended (the attempt and the task updated): five statements per task. An attempt's start and
//!   end never share a commit in the hub (an assignment is sent only after the commit that
//!   records its start), so they do not here. A task that finds a free slot at once is inserted
//!   running (four statements, two commits), and the hub also writes what routing learned once
//!   per turn; neither is in this workload.
//! - [`raw_round_trip`]: the least a store of task states can do with the same engine and
//!   durability: one table keyed by the task's id, no secondary index, an INSERT and two UPDATEs
//!   per task, 1,000 per commit.
//!
//! Both in WAL mode with `synchronous = FULL` (an fsync per commit: the system call is not
//! counted, its time is) and the writer's checkpoint threshold, in a temporary directory; each
//! returns how many tasks the store then holds as succeeded, read back from it. Opening Hive's
//! store (its migrations) is inside the count and the time: a few commits against 30.

use std::sync::Arc;

use hive_core::{
    AgentId, AttemptOutcome, Capability, Change, NextStatus, TaskId, TaskStatus, Timestamp,
};
use hive_store::sqlite::{Durability, SqliteStore};
use hive_store::{BatchWriter, TaskReader};
use rusqlite::{Connection, params};
use uuid::Uuid;

use crate::task;

/// Tasks per commit, as in the issue's raw-limit program and a busy hub's group commits.
pub const PER_COMMIT: u64 = 1_000;
/// Milliseconds since the epoch, so that rows carry timestamps as wide as a hub's.
const EPOCH_MS: u64 = 1_780_000_000_000;
/// The hub writer's own WAL checkpoint threshold (`hive_store::sqlite`), for both stores.
const CHECKPOINT_PAGES: u32 = 4_000;

/// `tasks` tasks (a multiple of [`PER_COMMIT`]) through Hive's writer; returns how many are
/// stored as succeeded.
pub fn writer_round_trip(tasks: u64) -> u64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path(), Durability::Full).expect("the store opens");
    let mut writer = store.writer().expect("a writer");
    let capability = Capability::parse("work", "capability").expect("valid");
    let agent = AgentId(Uuid::from_u64_pair(2, 1));
    let output: Arc<str> = "null".into();
    for first in (0..tasks).step_by(PER_COMMIT as usize) {
        let specs: Vec<_> = (first..first + PER_COMMIT)
            .map(|n| {
                let mut spec = task(n, &capability);
                spec.created_at = Timestamp(EPOCH_MS + n);
                Arc::new(spec)
            })
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
                started_at: spec.created_at.plus_ms(1),
                lease_until: spec.created_at.plus_ms(30_001),
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
                started_at: spec.created_at.plus_ms(1),
                ended_at: spec.created_at.plus_ms(2),
                outcome: AttemptOutcome::Succeeded,
                output: Some(output.clone()),
                error: None,
                next: NextStatus::Succeeded,
            })
            .collect();
        for changes in [&created, &started, &ended] {
            writer.apply(&[changes]).expect("committed");
        }
    }
    let counts = store.reader().count_by_status().expect("counted");
    counts
        .iter()
        .find(|(status, _)| *status == TaskStatus::Succeeded)
        .map_or(0, |(_, n)| *n)
}

/// `tasks` tasks (a multiple of [`PER_COMMIT`]) through the least schema; returns how many are
/// stored as succeeded.
pub fn raw_round_trip(tasks: u64) -> u64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut conn = Connection::open(dir.path().join("raw.db")).expect("the database opens");
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES};
         CREATE TABLE tasks (
             id BLOB PRIMARY KEY NOT NULL,
             capability TEXT NOT NULL,
             payload TEXT NOT NULL,
             status TEXT NOT NULL,
             result TEXT,
             updated_at INTEGER NOT NULL
         ) WITHOUT ROWID;"
    ))
    .expect("the schema");
    let id = |n: u64| TaskId(Uuid::from_u64_pair(1, n));
    let payload = r#"{"text":"a short payload"}"#;
    for first in (0..tasks).step_by(PER_COMMIT as usize) {
        let ids = first..first + PER_COMMIT;
        let at = |n: u64, step: u64| (EPOCH_MS + n + step) as i64;
        let tx = conn.transaction().expect("a transaction");
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO tasks (id, capability, payload, status, updated_at)
                     VALUES (?1, 'work', ?2, 'queued', ?3)",
                )
                .expect("the statement");
            for n in ids.clone() {
                let written = insert.execute(params![id(n).as_bytes(), payload, at(n, 0)]);
                assert_eq!(written.expect("written"), 1);
            }
        }
        tx.commit().expect("committed");
        for (step, sql) in [
            "UPDATE tasks SET status = 'running', updated_at = ?2 WHERE id = ?1",
            "UPDATE tasks SET status = 'succeeded', result = 'null', updated_at = ?2 WHERE id = ?1",
        ]
        .into_iter()
        .enumerate()
        {
            let tx = conn.transaction().expect("a transaction");
            {
                let mut update = tx.prepare_cached(sql).expect("the statement");
                for n in ids.clone() {
                    let written = update.execute(params![id(n).as_bytes(), at(n, step as u64 + 1)]);
                    assert_eq!(written.expect("written"), 1);
                }
            }
            tx.commit().expect("committed");
        }
    }
    let succeeded: i64 = conn
        .query_row(
            "SELECT count(*) FROM tasks WHERE status = 'succeeded'",
            [],
            |row| row.get(0),
        )
        .expect("counted");
    succeeded as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_stores_keep_every_task_as_succeeded() {
        assert_eq!(super::writer_round_trip(2_000), 2_000);
        assert_eq!(super::raw_round_trip(2_000), 2_000);
    }
}
