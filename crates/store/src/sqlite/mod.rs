//! The embedded SQLite backend: one file `hive.db` in the data directory, WAL mode.
//!
//! [`SqliteStore::open`] creates the directory and the database, applies migrations, and hands
//! out one writer connection ([`SqliteWriter`], for the group-commit thread) and a reader
//! ([`SqliteReader`]) with its own small pool of connections.

mod alerts;
mod checkpoint;
mod models;
mod read;
mod rows;
mod tokens;
mod write;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use alerts::SqliteAlertLog;
pub use checkpoint::Checkpointer;
pub use models::SqliteModelStore;
pub use read::SqliteReader;
pub use tokens::SqliteTokenStore;
pub use write::SqliteWriter;

use crate::StoreError;

/// The versioned migrations, applied in order; `PRAGMA user_version` records the last applied.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_alerts.sql")),
    (3, include_str!("../../migrations/0003_tokens.sql")),
    (4, include_str!("../../migrations/0004_estimates.sql")),
    (
        5,
        include_str!("../../migrations/0005_on_parent_failure.sql"),
    ),
    (6, include_str!("../../migrations/0006_consensus.sql")),
    (7, include_str!("../../migrations/0007_hubs.sql")),
    (8, include_str!("../../migrations/0008_swarm.sql")),
    (9, include_str!("../../migrations/0009_pool_rank.sql")),
    (10, include_str!("../../migrations/0010_neural.sql")),
    (11, include_str!("../../migrations/0011_finished.sql")),
    (
        12,
        include_str!("../../migrations/0012_attempt_in_task.sql"),
    ),
    (13, include_str!("../../migrations/0013_token_expiry.sql")),
    (14, include_str!("../../migrations/0014_task_seq.sql")),
    (15, include_str!("../../migrations/0015_index_by_seq.sql")),
    (
        16,
        include_str!("../../migrations/0016_attempt_in_task_postgres.sql"),
    ),
];

/// WAL pages after which the writer checkpoints itself. The background [`Checkpointer`] copies
/// pages off the commit path, but under commits that never pause it never copies the *last*
/// frame, and SQLite restarts the WAL only after a checkpoint that did: without this backstop
/// the WAL grew to 3.5 GB in a 10M-task soak, its index mapped into the hub's memory. When the
/// writer's checkpoint runs, the background thread has already copied most pages, so it is short.
const WRITER_CHECKPOINT_PAGES: u32 = 4_000;

/// The WAL file is truncated to this size when it restarts, so a burst does not keep its disk.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: an fsync per commit; an acknowledged task survives a power cut.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a killed process, not a power cut (WAL not yet synced).
    Normal,
}

impl Durability {
    pub fn parse(s: &str) -> Option<Durability> {
        match s {
            "full" => Some(Durability::Full),
            "normal" => Some(Durability::Normal),
            _ => None,
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    durability: Durability,
    /// An exclusive lock on `hive.lock`, held as long as the store lives: two hubs on one data
    /// directory would both schedule the same tasks. The kernel drops it when the process dies,
    /// so a restart after a crash finds it free.
    _lock: std::fs::File,
}

impl SqliteStore {
    pub const FILE_NAME: &'static str = "hive.db";
    pub const LOCK_FILE: &'static str = "hive.lock";

    /// Opens (creating if needed) the database in `dir` and brings its schema up to date.
    pub fn open(dir: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Database(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock_path = dir.join(Self::LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                StoreError::Database(format!("cannot open {}: {e}", lock_path.display()))
            })?;
        lock.try_lock()
            .map_err(|_| StoreError::Locked(dir.display().to_string()))?;
        let store = SqliteStore {
            path: dir.join(Self::FILE_NAME),
            durability,
            _lock: lock,
        };
        let mut conn = store.connect()?;
        migrate(&mut conn)?;
        // Whoever was connected to the last process is gone: no agent is live in a store that
        // was just opened.
        conn.execute(
            "UPDATE agents SET state = 'offline' WHERE state != 'offline'",
            [],
        )?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection of the group-commit thread. Run a [`Checkpointer`] beside it: the
    /// writer's own automatic checkpoint is only a backstop (see `WRITER_CHECKPOINT_PAGES`).
    pub fn writer(&self) -> Result<SqliteWriter, StoreError> {
        let conn = self.connect()?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}; PRAGMA journal_size_limit={WAL_SIZE_LIMIT};"
        ))?;
        SqliteWriter::new(conn)
    }

    /// Checkpoints the WAL every `every`, off the commit path.
    pub fn checkpointer(&self, every: std::time::Duration) -> Result<Checkpointer, StoreError> {
        Checkpointer::spawn(self.path.clone(), every)
    }

    /// The alert history, on a connection of its own.
    pub fn alert_log(&self) -> Result<SqliteAlertLog, StoreError> {
        Ok(SqliteAlertLog::new(self.connect()?))
    }

    /// The saved models, on a connection of their own.
    pub fn model_store(&self) -> Result<SqliteModelStore, StoreError> {
        Ok(SqliteModelStore::new(self.connect()?))
    }

    /// The API tokens, on a connection of their own.
    pub fn token_store(&self) -> Result<SqliteTokenStore, StoreError> {
        Ok(SqliteTokenStore::new(self.connect()?))
    }

    pub fn reader(&self) -> SqliteReader {
        SqliteReader::new(self.path.clone())
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open(&self.path)?;
        let synchronous = match self.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; PRAGMA busy_timeout=5000;"
        ))?;
        Ok(conn)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > latest {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this hive ({latest})"
        )));
    }
    if current == 0 {
        // A new database: one line, not one per step.
        tracing::info!(version = latest, "creating the database schema");
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        // Some steps copy a table (version 14): on a large database the start waits here, so an
        // upgrade says what it is doing.
        if current > 0 {
            tracing::info!(version, "applying database migration");
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
        tx.commit()?;
        tracing::debug!(version, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
