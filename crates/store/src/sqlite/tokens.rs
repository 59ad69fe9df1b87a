//! API tokens in SQLite (`tokens`), on a connection of their own: tokens change rarely (created,
//! revoked) and are read once at start, so plain writes that wait for the group commit's
//! transaction at most `busy_timeout` are enough.

use std::sync::Mutex;

use hive_core::Timestamp;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

use crate::codec::{list_from_json, list_to_json};
use crate::{StoreError, StoredToken, TokenStore};

pub struct SqliteTokenStore {
    conn: Mutex<Connection>,
}

impl SqliteTokenStore {
    pub(super) fn new(conn: Connection) -> Self {
        SqliteTokenStore {
            conn: Mutex::new(conn),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const COLUMNS: &str =
    "id, name, role, capabilities, groups, secret_hash, created_at, revoked_at, expires_at";

fn token_from_row(
    row: &Row<'_>,
) -> rusqlite::Result<(StoredToken, Option<String>, Option<String>)> {
    Ok((
        StoredToken {
            id: row.get(0)?,
            name: row.get(1)?,
            role: row.get(2)?,
            capabilities: None,
            groups: None,
            secret_hash: row.get(5)?,
            created_at: Timestamp(row.get::<_, i64>(6)?.max(0) as u64),
            revoked_at: row
                .get::<_, Option<i64>>(7)?
                .map(|t| Timestamp(t.max(0) as u64)),
            expires_at: row
                .get::<_, Option<i64>>(8)?
                .map(|t| Timestamp(t.max(0) as u64)),
        },
        row.get(3)?,
        row.get(4)?,
    ))
}

fn complete(
    (mut token, capabilities, groups): (StoredToken, Option<String>, Option<String>),
) -> Result<StoredToken, StoreError> {
    token.capabilities = list_from_json(capabilities)?;
    token.groups = list_from_json(groups)?;
    Ok(token)
}

impl TokenStore for SqliteTokenStore {
    fn insert(&self, token: &StoredToken) -> Result<(), StoreError> {
        let inserted = self.lock().execute(
            "INSERT INTO tokens (id, name, role, capabilities, groups, secret_hash, created_at,
                expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                token.id,
                token.name,
                token.role,
                list_to_json(&token.capabilities),
                list_to_json(&token.groups),
                token.secret_hash,
                token.created_at.0 as i64,
                token.expires_at.map(|t| t.0 as i64)
            ],
        );
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Duplicate(format!(
                    "a token named {:?}",
                    token.name
                )))
            }
            other => other.map(|_| ()).map_err(StoreError::from),
        }
    }

    fn list(&self) -> Result<Vec<StoredToken>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tokens ORDER BY created_at, name"
        ))?;
        let rows = statement.query_map([], token_from_row)?;
        rows.map(|row| complete(row?)).collect()
    }

    fn get(&self, id: &str) -> Result<Option<StoredToken>, StoreError> {
        let conn = self.lock();
        let row = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"))?
            .query_row([id], token_from_row)
            .optional()?;
        row.map(complete).transpose()
    }

    fn revoke(&self, name: &str, at: Timestamp) -> Result<bool, StoreError> {
        let changed = self.lock().execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, at.0 as i64],
        )?;
        Ok(changed == 1)
    }
}
