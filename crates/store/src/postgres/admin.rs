//! The alert history, the API tokens and the saved models in PostgreSQL: rare writes, each its own statement on a
//! pooled connection, outside the group commit (as with SQLite).

use std::sync::Arc;

use hive_core::Timestamp;
use tokio_postgres::error::SqlState;

use super::{Shared, db_error};
use crate::codec::{from_ts, list_from_json, list_to_json, ts};
use crate::{AlertLog, AlertRecord, ModelStore, StoreError, StoredToken, TokenStore};

pub struct PgAlertLog {
    shared: Arc<Shared>,
}

impl PgAlertLog {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        PgAlertLog { shared }
    }
}

impl AlertLog for PgAlertLog {
    fn record(&self, r: &AlertRecord) -> Result<(), StoreError> {
        let r = r.clone();
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            client
                .execute(
                    "INSERT INTO alert_events (rule, state, severity, value, threshold, message, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &r.rule,
                        &r.state,
                        &r.severity,
                        &r.value,
                        &r.threshold,
                        &r.message,
                        &ts(r.at),
                    ],
                )
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }

    fn recent(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let rows = client
                .query(
                    "SELECT rule, state, severity, value, threshold, message, at FROM alert_events
                     ORDER BY seq DESC LIMIT $1",
                    &[&(limit as i64)],
                )
                .await
                .map_err(db_error)?;
            rows.iter()
                .map(|row| {
                    Ok(AlertRecord {
                        rule: row.try_get(0).map_err(db_error)?,
                        state: row.try_get(1).map_err(db_error)?,
                        severity: row.try_get(2).map_err(db_error)?,
                        value: row.try_get(3).map_err(db_error)?,
                        threshold: row.try_get(4).map_err(db_error)?,
                        message: row.try_get(5).map_err(db_error)?,
                        at: from_ts(row.try_get(6).map_err(db_error)?),
                    })
                })
                .collect()
        })
    }
}

pub struct PgModelStore {
    shared: Arc<Shared>,
}

impl PgModelStore {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        PgModelStore { shared }
    }
}

impl ModelStore for PgModelStore {
    fn save_model(&self, name: &str, bytes: &[u8], at: Timestamp) -> Result<(), StoreError> {
        let (name, bytes) = (name.to_string(), bytes.to_vec());
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            client
                .execute(
                    "INSERT INTO models (name, bytes, saved_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE
                     SET bytes = excluded.bytes, saved_at = excluded.saved_at",
                    &[&name, &bytes, &ts(at)],
                )
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }

    fn load_model(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_string();
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let row = client
                .query_opt("SELECT bytes FROM models WHERE name = $1", &[&name])
                .await
                .map_err(db_error)?;
            row.map(|r| r.try_get(0).map_err(db_error)).transpose()
        })
    }
}

pub struct PgTokenStore {
    shared: Arc<Shared>,
}

impl PgTokenStore {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        PgTokenStore { shared }
    }

    fn select(
        &self,
        filter: &'static str,
        id: Option<String>,
    ) -> Result<Vec<StoredToken>, StoreError> {
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let sql = format!(
                "SELECT id, name, role, capabilities, groups, secret_hash, created_at, revoked_at,
                    expires_at
                 FROM tokens {filter}"
            );
            let rows = match &id {
                Some(id) => client.query(&sql, &[id]).await,
                None => client.query(&sql, &[]).await,
            }
            .map_err(db_error)?;
            rows.iter()
                .map(|row| {
                    Ok(StoredToken {
                        id: row.try_get(0).map_err(db_error)?,
                        name: row.try_get(1).map_err(db_error)?,
                        role: row.try_get(2).map_err(db_error)?,
                        capabilities: list_from_json(row.try_get(3).map_err(db_error)?)?,
                        groups: list_from_json(row.try_get(4).map_err(db_error)?)?,
                        secret_hash: row.try_get(5).map_err(db_error)?,
                        created_at: from_ts(row.try_get(6).map_err(db_error)?),
                        revoked_at: row
                            .try_get::<_, Option<i64>>(7)
                            .map_err(db_error)?
                            .map(from_ts),
                        expires_at: row
                            .try_get::<_, Option<i64>>(8)
                            .map_err(db_error)?
                            .map(from_ts),
                    })
                })
                .collect()
        })
    }
}

impl TokenStore for PgTokenStore {
    fn insert(&self, token: &StoredToken) -> Result<(), StoreError> {
        let token = token.clone();
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let inserted = client
                .execute(
                    "INSERT INTO tokens (id, name, role, capabilities, groups, secret_hash,
                        created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &token.id,
                        &token.name,
                        &token.role,
                        &list_to_json(&token.capabilities),
                        &list_to_json(&token.groups),
                        &token.secret_hash,
                        &ts(token.created_at),
                        &token.expires_at.map(ts),
                    ],
                )
                .await;
            match inserted {
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(
                    StoreError::Duplicate(format!("a token named {:?}", token.name)),
                ),
                other => other.map(|_| ()).map_err(db_error),
            }
        })
    }

    fn list(&self) -> Result<Vec<StoredToken>, StoreError> {
        self.select("ORDER BY created_at, name", None)
    }

    fn get(&self, id: &str) -> Result<Option<StoredToken>, StoreError> {
        Ok(self.select("WHERE id = $1", Some(id.to_string()))?.pop())
    }

    fn revoke(&self, name: &str, at: Timestamp) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let changed = client
                .execute(
                    "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
                    &[&name, &ts(at)],
                )
                .await
                .map_err(db_error)?;
            Ok(changed == 1)
        })
    }
}
