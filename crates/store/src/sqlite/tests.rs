//! SQLite under the shared suite (`crate::suite`), and what only SQLite has: the data
//! directory's lock and the WAL's checkpoints.

use hive_core::{Change, TaskStatus};

use super::*;
use crate::suite::{Backend, created, store_suite};
use crate::{BatchWriter, TaskReader};

struct Sqlite {
    dir: tempfile::TempDir,
    store: SqliteStore,
}

fn sqlite(_test: &str) -> Option<Sqlite> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    Some(Sqlite { dir, store })
}

impl Backend for Sqlite {
    fn writer(&self) -> impl BatchWriter {
        self.store.writer().unwrap()
    }
    fn reader(&self) -> impl TaskReader {
        self.store.reader()
    }
    fn tokens(&self) -> impl crate::TokenStore {
        self.store.token_store().unwrap()
    }
    fn alerts(&self) -> impl crate::AlertLog {
        self.store.alert_log().unwrap()
    }
    fn models(&self) -> impl crate::ModelStore {
        self.store.model_store().unwrap()
    }
    fn reopen(self) -> Self {
        let Sqlite { dir, store } = self;
        drop(store);
        let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        Sqlite { dir, store }
    }
    fn agent_rows(&self) -> Vec<uuid::Uuid> {
        let conn = Connection::open(self.dir.path().join(SqliteStore::FILE_NAME)).unwrap();
        let mut rows = conn.prepare("SELECT id FROM agents ORDER BY id").unwrap();
        rows.query_map([], |row| row.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|id| uuid::Uuid::from_slice(&id.unwrap()).unwrap())
            .collect()
    }
}

store_suite!(sqlite);

/// Makes `dir` a data directory of schema version `version` whose rows `fill` writes, as an older
/// hive left it.
fn at_version(dir: &std::path::Path, version: u32, fill: impl FnOnce(&rusqlite::Transaction<'_>)) {
    let mut conn = Connection::open(dir.join(SqliteStore::FILE_NAME)).unwrap();
    let tx = conn.transaction().unwrap();
    for (_, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= version) {
        tx.execute_batch(sql).unwrap();
    }
    tx.execute_batch(&format!("PRAGMA user_version = {version}"))
        .unwrap();
    fill(&tx);
    tx.commit().unwrap();
}

#[test]
fn a_second_store_on_the_same_directory_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let second = SqliteStore::open(dir.path(), Durability::Normal);
    assert!(
        matches!(second, Err(crate::StoreError::Locked(_))),
        "two stores on one directory"
    );
    drop(first);
    assert!(SqliteStore::open(dir.path(), Durability::Normal).is_ok());
}

#[test]
fn the_checkpointer_folds_the_wal_back_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let mut writer = store.writer().unwrap();
    let changes: Vec<Change> = (1..=2_000).map(created).collect();
    writer.apply(&[&changes]).unwrap();
    let wal = dir.path().join("hive.db-wal");
    let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(size() > 0, "commits went to the WAL");
    store
        .checkpointer(std::time::Duration::from_millis(5))
        .unwrap()
        .stop();
    assert_eq!(size(), 0, "the WAL was folded into the database");
    assert_eq!(
        store.reader().count_by_status().unwrap(),
        vec![(TaskStatus::Waiting, 2_000)]
    );
}

#[test]
fn the_wal_stays_bounded_under_commits_that_never_pause() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let mut writer = store.writer().unwrap();
    let checkpointer = store
        .checkpointer(std::time::Duration::from_millis(5))
        .unwrap();
    let wal = dir.path().join("hive.db-wal");
    let mut written = 0u64;
    // ~60,000 tasks in 600 commits: well over 20,000 WAL pages if the WAL never restarted.
    for batch in 0..600u128 {
        let changes: Vec<Change> = (0..100)
            .map(|i| created(1_000_000 + batch * 100 + i))
            .collect();
        writer.apply(&[&changes]).unwrap();
        written += 1;
    }
    let size = std::fs::metadata(&wal).unwrap().len();
    checkpointer.stop();
    assert_eq!(written, 600);
    assert!(
        size < 40 * 1024 * 1024,
        "the WAL grew to {size} bytes: it never restarted"
    );
}

/// Listing by a status walks the partial index that holds it, newest first, without sorting;
/// only succeeded tasks (most rows, in no status index) walk the whole table, newest first. A
/// plan that scanned the whole table for failed tasks would be correct and slow, so the suite's
/// results cannot catch it. A capability's listing after a cursor walks the capability's index
/// from the cursor on.
#[test]
fn listing_by_status_reads_the_index_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let conn = store.connect().unwrap();
    for status in TaskStatus::ALL {
        let plan = listing_plan(
            &conn,
            &crate::TaskFilter {
                limit: 10,
                status: Some(status),
                ..Default::default()
            },
        );
        let index = match status {
            TaskStatus::Waiting | TaskStatus::Queued | TaskStatus::Running => {
                Some("tasks_unfinished")
            }
            TaskStatus::Failed | TaskStatus::Cancelled => Some("tasks_failed"),
            TaskStatus::Succeeded => None,
        };
        match index {
            Some(index) => assert!(plan.contains(index), "{status:?}: {plan}"),
            None => assert!(plan == "SCAN tasks", "{status:?}: {plan}"),
        }
        assert!(!plan.contains("TEMP B-TREE"), "{status:?} sorts: {plan}");
    }
    let plan = listing_plan(
        &conn,
        &crate::TaskFilter {
            limit: 10,
            capability: Some("work".into()),
            before: Some(hive_core::TaskId(uuid::Uuid::from_u128(7))),
            ..Default::default()
        },
    );
    assert!(
        plan.starts_with("SEARCH tasks USING INDEX tasks_by_capability (capability=? AND rowid<?)"),
        "{plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "sorts: {plan}");
}

/// SQLite's plan for a listing, its steps joined by "; ".
fn listing_plan(conn: &rusqlite::Connection, filter: &crate::TaskFilter) -> String {
    let (sql, args) = super::read::list_query(filter);
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let plan: Vec<String> = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), |row| row.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    plan.join("; ")
}

/// A data directory written before tasks recorded their end (schema version 10) gets each ended
/// task's end from its last update, and lists, counts and reloads as a new one does.
#[test]
fn a_version_10_directory_gets_the_end_of_each_ended_task() {
    let dir = tempfile::tempdir().unwrap();
    at_version(dir.path(), 10, |tx| {
        let statuses = [
            "waiting",
            "queued",
            "running",
            "succeeded",
            "failed",
            "cancelled",
        ];
        for (n, status) in statuses.iter().enumerate() {
            tx.execute(
                "INSERT INTO tasks (id, capability, payload, priority, max_attempts, timeout_ms,
                    backoff_base_ms, backoff_max_ms, status, created_at, updated_at)
                 VALUES (?1, 'echo', '{}', 5, 3, 1000, 100, 1000, ?2, 10, ?3)",
                rusqlite::params![
                    uuid::Uuid::from_u128(n as u128 + 1).as_bytes(),
                    status,
                    20 + n as i64
                ],
            )
            .unwrap();
        }
    });
    let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let conn = store.connect().unwrap();
    let ends: Vec<(String, Option<i64>)> = conn
        .prepare("SELECT status, finished_at FROM tasks ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let ends: Vec<(&str, Option<i64>)> = ends.iter().map(|(s, at)| (s.as_str(), *at)).collect();
    assert_eq!(
        ends,
        [
            ("waiting", None),
            ("queued", None),
            ("running", None),
            ("succeeded", Some(23)),
            ("failed", Some(24)),
            ("cancelled", Some(25)),
        ]
    );
    let reader = store.reader();
    let mut counts = reader.count_by_status().unwrap();
    counts.sort_by_key(|(status, _)| status.as_str());
    let mut all: Vec<(TaskStatus, u64)> = TaskStatus::ALL.iter().map(|s| (*s, 1)).collect();
    all.sort_by_key(|(status, _)| status.as_str());
    assert_eq!(counts, all);
    assert_eq!(reader.load_active().unwrap().len(), 3);
    let failed = reader
        .list_tasks(&crate::TaskFilter {
            limit: 10,
            status: Some(TaskStatus::Failed),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(failed.len(), 1);
}

/// A data directory of schema version 11, written when a plain task's attempt had a row from its
/// start: a running task's open attempt moves into the task's row, reads as before, and ends as
/// a new one does; a consensus task's replicas and ended attempts keep their rows.
#[test]
fn a_version_11_directory_moves_running_attempts_into_their_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let id = |n: u128| uuid::Uuid::from_u128(n);
    let agent = hive_core::AgentId(id(70));
    at_version(dir.path(), 11, |tx| {
        // 1: plain, running its second attempt; 2: consensus, running two replicas; 3: plain,
        // succeeded.
        for (n, status, attempts, replicas) in [
            (1, "running", 2, None),
            (2, "running", 2, Some(2)),
            (3, "succeeded", 1, None),
        ] {
            tx.execute(
                "INSERT INTO tasks (id, capability, payload, priority, max_attempts, timeout_ms,
                    backoff_base_ms, backoff_max_ms, status, attempts, created_at, updated_at,
                    replicas, quorum, finished_at)
                 VALUES (?1, 'echo', '{}', 5, 3, 1000, 100, 1000, ?2, ?3, 10, 30, ?4, ?4,
                    CASE WHEN ?2 = 'succeeded' THEN 30 END)",
                rusqlite::params![id(n).as_bytes(), status, attempts, replicas],
            )
            .unwrap();
        }
        for (n, attempt, ended) in [(1, 1, true), (1, 2, false), (2, 1, false), (2, 2, false)] {
            tx.execute(
                "INSERT INTO attempts (task_id, attempt, agent_id, started_at, ended_at, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    id(n).as_bytes(),
                    attempt,
                    agent.as_bytes(),
                    10 + attempt,
                    ended.then_some(20),
                    ended.then_some("failed")
                ],
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO attempts (task_id, attempt, agent_id, started_at, ended_at, outcome)
             VALUES (?1, 1, ?2, 11, 30, 'succeeded')",
            rusqlite::params![id(3).as_bytes(), agent.as_bytes()],
        )
        .unwrap();
    });
    let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let rows: i64 = store
        .connect()
        .unwrap()
        .query_row("SELECT count(*) FROM attempts", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 4, "only the plain running task's open attempt moved");
    let reader = store.reader();
    let log = |n: u128| {
        reader
            .get_task(hive_core::TaskId(id(n)))
            .unwrap()
            .unwrap()
            .attempt_log
            .iter()
            .map(|a| (a.attempt, a.agent, a.started_at.0, a.ended_at.map(|t| t.0)))
            .collect::<Vec<_>>()
    };
    let agent = Some(agent);
    assert_eq!(log(1), [(1, agent, 11, Some(20)), (2, agent, 12, None)]);
    assert_eq!(log(2), [(1, agent, 11, None), (2, agent, 12, None)]);
    assert_eq!(log(3), [(1, agent, 11, Some(30))]);
    let spec = crate::suite::spec(1);
    let succeeded = Change::AttemptEnded {
        task: hive_core::TaskId(id(1)),
        capability: spec.capability.clone(),
        attempt: 2,
        agent,
        created_at: hive_core::Timestamp(10),
        started_at: hive_core::Timestamp(12),
        ended_at: hive_core::Timestamp(40),
        outcome: hive_core::AttemptOutcome::Succeeded,
        output: Some("[1]".into()),
        error: None,
        next: hive_core::NextStatus::Succeeded,
    };
    store.writer().unwrap().apply(&[&[succeeded]]).unwrap();
    assert_eq!(log(1), [(1, agent, 11, Some(20)), (2, agent, 12, Some(40))]);
}

/// A data directory of schema version 12, from before tokens could expire: its tokens read back
/// as never expiring, and a new one keeps its expiry.
#[test]
fn a_version_12_directory_keeps_its_tokens_as_never_expiring() {
    use crate::{StoredToken, TokenStore};
    let dir = tempfile::tempdir().unwrap();
    at_version(dir.path(), 12, |tx| {
        tx.execute(
            "INSERT INTO tokens (id, name, role, secret_hash, created_at)
             VALUES ('old', 'ci', 'client', x'01', 5)",
            [],
        )
        .unwrap();
    });
    let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let tokens = store.token_store().unwrap();
    let old = tokens.get("old").unwrap().unwrap();
    assert_eq!((old.name.as_str(), old.expires_at), ("ci", None));
    let new = StoredToken {
        id: "new".into(),
        name: "brief".into(),
        expires_at: Some(hive_core::Timestamp(99)),
        ..old
    };
    tokens.insert(&new).unwrap();
    assert_eq!(tokens.get("new").unwrap().unwrap(), new);
}

/// A commit that fails after inserting a task gives the task's row number back, and SQLite hands
/// it to the next insert. An update for the task whose insert was rolled back must then change
/// nothing, not the row of the task that took its number; the others are updated as usual.
#[test]
fn an_update_never_reaches_another_tasks_row_after_a_failed_commit() {
    use crate::suite::{created, spec};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let mut writer = store.writer().unwrap();
    let id = |n: u128| spec(n).id;
    writer.apply(&[&[created(1)]]).unwrap();
    // SQLite refuses to park a task (only PostgreSQL has other hubs): the commit fails after
    // task 2 was inserted.
    let parked = Change::TaskParked {
        task: id(2),
        parents: vec![],
    };
    assert!(writer.apply(&[&[created(2), parked]]).is_err());
    writer.apply(&[&[created(3)]]).unwrap();
    let seq = |n: u128| -> i64 {
        store
            .connect()
            .unwrap()
            .query_row(
                "SELECT seq FROM tasks WHERE id = ?1",
                [id(n).as_bytes()],
                |row| row.get(0),
            )
            .unwrap()
    };
    assert_eq!(
        (seq(1), seq(3)),
        (1, 2),
        "task 3 took the number task 2 had"
    );
    let ready = |n: u128| Change::TaskReady {
        task: id(n),
        capability: spec(n).capability.clone(),
        at: hive_core::Timestamp(50),
    };
    let cancel_2 = Change::TaskFinished {
        task: id(2),
        capability: spec(2).capability.clone(),
        status: TaskStatus::Cancelled,
        error: Some("cancelled".into()),
        result: None,
        at: hive_core::Timestamp(51),
    };
    writer.apply(&[&[ready(1), ready(3), cancel_2]]).unwrap();
    let reader = store.reader();
    let status = |n: u128| reader.get_task(id(n)).unwrap().map(|t| t.status);
    assert_eq!(
        [status(1), status(2), status(3)],
        [Some(TaskStatus::Queued), None, Some(TaskStatus::Queued)]
    );
}

/// A data directory of schema version 13, whose task table was keyed by the id: its tasks move
/// to the table keyed by `seq` in id order, read back as they were, and a writer opened on it
/// ends the unfinished ones.
#[test]
fn a_version_13_directory_gets_its_tasks_numbered_in_id_order() {
    use crate::suite::spec;
    let dir = tempfile::tempdir().unwrap();
    let id = |n: u128| spec(n).id;
    at_version(dir.path(), 13, |tx| {
        // Inserted out of id order: 3 (queued), 1 (succeeded), 2 (running).
        for (n, status, finished_at) in [
            (3, "queued", None),
            (1, "succeeded", Some(30)),
            (2, "running", None),
        ] {
            tx.execute(
                "INSERT INTO tasks (id, capability, payload, priority, max_attempts, timeout_ms,
                    backoff_base_ms, backoff_max_ms, status, attempts, created_at, updated_at,
                    result, finished_at)
                 VALUES (?1, 'echo', '{\"n\": 1}', 5, 3, 1000, 100, 1000, ?2, 1, 10, 20,
                    CASE WHEN ?2 = 'succeeded' THEN '[1]' END, ?3)",
                rusqlite::params![id(n).as_bytes(), status, finished_at],
            )
            .unwrap();
        }
    });
    let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let numbered: Vec<(i64, Vec<u8>)> = store
        .connect()
        .unwrap()
        .prepare("SELECT seq, id FROM tasks ORDER BY seq")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let in_id_order: Vec<(i64, Vec<u8>)> = (1..=3)
        .map(|n| (n as i64, id(n).as_bytes().to_vec()))
        .collect();
    assert_eq!(numbered, in_id_order);
    let reader = store.reader();
    let one = reader.get_task(id(1)).unwrap().unwrap();
    assert_eq!(
        (one.status, one.result.as_deref(), &*one.spec.payload),
        (TaskStatus::Succeeded, Some("[1]"), "{\"n\": 1}")
    );
    assert_eq!(reader.load_active().unwrap().len(), 2);
    let finished = |n: u128| Change::TaskFinished {
        task: id(n),
        capability: spec(n).capability.clone(),
        status: TaskStatus::Cancelled,
        error: Some("cancelled".into()),
        result: None,
        at: hive_core::Timestamp(40),
    };
    store
        .writer()
        .unwrap()
        .apply(&[&[finished(2), finished(3)]])
        .unwrap();
    assert!(reader.load_active().unwrap().is_empty());
    let status = |n: u128| reader.get_task(id(n)).unwrap().unwrap().status;
    assert_eq!(
        [status(1), status(2), status(3)],
        [
            TaskStatus::Succeeded,
            TaskStatus::Cancelled,
            TaskStatus::Cancelled
        ]
    );
}

/// More unfinished tasks than the writer keeps the row numbers of: those it does not know are
/// found by their id, at every step of their lives, including after a reopen.
#[test]
fn a_backlog_longer_than_the_writers_map_is_updated_by_id() {
    use crate::suite::{created, spec};
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let tasks = 3 * super::rows::MOST as u128;
    let id = |n: u128| spec(n).id;
    let all: Vec<Change> = (1..=tasks).map(created).collect();
    store.writer().unwrap().apply(&[&all]).unwrap();
    let ready: Vec<Change> = (1..=tasks)
        .map(|n| Change::TaskReady {
            task: id(n),
            capability: spec(n).capability.clone(),
            at: hive_core::Timestamp(50),
        })
        .collect();
    store.writer().unwrap().apply(&[&ready]).unwrap();
    drop(store);
    store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let cancel: Vec<Change> = (1..=tasks)
        .map(|n| Change::TaskFinished {
            task: id(n),
            capability: spec(n).capability.clone(),
            status: TaskStatus::Cancelled,
            error: Some("cancelled".into()),
            result: None,
            at: hive_core::Timestamp(60),
        })
        .collect();
    let reader = store.reader();
    let queued = reader
        .list_tasks(&crate::TaskFilter {
            limit: 1_000,
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(queued.len() as u128, tasks);
    store.writer().unwrap().apply(&[&cancel]).unwrap();
    assert!(reader.load_active().unwrap().is_empty());
    let mut counts = reader.count_by_status().unwrap();
    counts.retain(|(_, n)| *n > 0);
    assert_eq!(counts, [(TaskStatus::Cancelled, tasks as u64)]);
}

/// Two tasks whose ids share the writer's key (their low halves): the second's number replaces
/// the first's, so the first's next update finds a row of another task's id, matches nothing,
/// and is made by the first's id instead. Both tasks get their updates, neither the other's.
#[test]
fn a_stale_row_number_is_found_out_by_the_id_and_the_row_found_by_id() {
    use crate::suite::spec;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let mut writer = store.writer().unwrap();
    let task = |hi: u64| {
        let mut spec = (*spec(1)).clone();
        spec.id = hive_core::TaskId(uuid::Uuid::from_u64_pair(hi, 5));
        spec.idempotency_key = Some(format!("key-{hi}"));
        std::sync::Arc::new(spec)
    };
    let (first, second) = (task(1), task(2));
    let created = |spec: &std::sync::Arc<hive_core::TaskSpec>| Change::TaskCreated {
        spec: spec.clone(),
        status: TaskStatus::Waiting,
        error: None,
    };
    writer
        .apply(&[&[created(&first), created(&second)]])
        .unwrap();
    let finished = |spec: &hive_core::TaskSpec, status| Change::TaskFinished {
        task: spec.id,
        capability: spec.capability.clone(),
        status,
        error: None,
        result: None,
        at: hive_core::Timestamp(60),
    };
    writer
        .apply(&[&[
            finished(&first, TaskStatus::Cancelled),
            finished(&second, TaskStatus::Failed),
        ]])
        .unwrap();
    let reader = store.reader();
    let status = |spec: &hive_core::TaskSpec| reader.get_task(spec.id).unwrap().unwrap().status;
    assert_eq!(
        [status(&first), status(&second)],
        [TaskStatus::Cancelled, TaskStatus::Failed]
    );
}
