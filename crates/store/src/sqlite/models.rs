//! Saved models in SQLite (`models`), on a connection of their own: a save every few seconds at
//! most waits for the group commit's transaction at most `busy_timeout`.

use std::sync::Mutex;

use hive_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::ts;
use crate::{ModelStore, StoreError};

pub struct SqliteModelStore {
    conn: Mutex<Connection>,
}

impl SqliteModelStore {
    pub(super) fn new(conn: Connection) -> Self {
        SqliteModelStore {
            conn: Mutex::new(conn),
        }
    }
}

impl ModelStore for SqliteModelStore {
    fn save_model(&self, name: &str, bytes: &[u8], at: Timestamp) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(
            "INSERT INTO models (name, bytes, saved_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET bytes = excluded.bytes, saved_at = excluded.saved_at",
            params![name, bytes, ts(at)],
        )?;
        Ok(())
    }

    fn load_model(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(conn
            .query_row("SELECT bytes FROM models WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .optional()?)
    }
}
