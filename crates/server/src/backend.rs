//! Which store the hub keeps its state in: SQLite in the data directory (the default), or
//! PostgreSQL. Both give the same parts (a reader, a writer for the group commit, the alert
//! history, the tokens); this is the one place that tells them apart.

use std::sync::Arc;

use hive_store::postgres::{PgStore, StoreMonitor};
use hive_store::sqlite::{Checkpointer, SqliteStore};
use hive_store::{AlertLog, BatchWriter, StoreError, TaskReader, TokenStore};

use crate::config::HubConfig;

/// How often SQLite's WAL is checkpointed (off the commit path, see
/// `hive_store::sqlite::Checkpointer`).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

pub enum Backend {
    /// Held for the hub's life: the store owns the data directory's lock.
    Sqlite {
        store: SqliteStore,
        checkpointer: Checkpointer,
    },
    Postgres(PgStore),
}

impl Backend {
    pub fn open(config: &HubConfig) -> Result<Backend, StoreError> {
        match &config.postgres {
            Some(pg) => Ok(Backend::Postgres(PgStore::open(&pg.url, pg.pool)?)),
            None => {
                let store = SqliteStore::open(&config.data_dir, config.durability)?;
                let checkpointer = store.checkpointer(CHECKPOINT_EVERY)?;
                Ok(Backend::Sqlite {
                    store,
                    checkpointer,
                })
            }
        }
    }

    /// Where the state is, for messages (a URL without its password).
    pub fn describe(config: &HubConfig) -> String {
        match &config.postgres {
            Some(pg) => hive_store::postgres::redact(&pg.url),
            None => config.data_dir.display().to_string(),
        }
    }

    pub fn reader(&self) -> Arc<dyn TaskReader> {
        match self {
            Backend::Sqlite { store, .. } => Arc::new(store.reader()),
            Backend::Postgres(store) => Arc::new(store.reader()),
        }
    }

    pub fn writer(&self) -> Result<Box<dyn BatchWriter>, StoreError> {
        Ok(match self {
            Backend::Sqlite { store, .. } => Box::new(store.writer()?),
            Backend::Postgres(store) => Box::new(store.writer()),
        })
    }

    pub fn alert_log(&self) -> Result<Arc<dyn AlertLog>, StoreError> {
        Ok(match self {
            Backend::Sqlite { store, .. } => Arc::new(store.alert_log()?),
            Backend::Postgres(store) => Arc::new(store.alert_log()),
        })
    }

    pub fn token_store(&self) -> Result<Arc<dyn TokenStore>, StoreError> {
        Ok(match self {
            Backend::Sqlite { store, .. } => Arc::new(store.token_store()?),
            Backend::Postgres(store) => Arc::new(store.token_store()),
        })
    }

    /// Reads the store's pool and cache counters (PostgreSQL only).
    pub fn monitor(&self) -> Option<StoreMonitor> {
        match self {
            Backend::Sqlite { .. } => None,
            Backend::Postgres(store) => Some(store.monitor()),
        }
    }

    /// Blocks: stops the checkpointer, then releases the data directory's lock.
    pub fn close(self) {
        if let Backend::Sqlite {
            store,
            checkpointer,
        } = self
        {
            checkpointer.stop();
            drop(store);
        }
    }
}
