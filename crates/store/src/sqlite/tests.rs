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
}

store_suite!(sqlite);

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
