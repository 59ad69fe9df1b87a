//! Which store the hub keeps its state in: SQLite in the data directory (the default), or
//! PostgreSQL. Both give the same parts (a reader, a writer for the group commit, the alert
//! history, the tokens); this is the one place that tells them apart.

use std::sync::Arc;

use hive_store::postgres::{PgStore, StoreMonitor};
use hive_store::sqlite::{Checkpointer, SqliteStore};
use hive_store::{AlertLog, BatchWriter, ModelStore, StoreError, TaskReader, TokenStore};

use crate::config::HubConfig;
use crate::membership::StoreLink;

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

/// A hub's name when none is configured: the machine's name and the port, the same at every
/// restart (so a restarted hub takes its earlier run's tasks over at once) and distinct for
/// hubs on other machines or ports. `None` (a name made from the hub's id, new at each start)
/// when the machine's name cannot be read: a fixed fallback would make hubs on different
/// machines take each other over. (Port 0, a test's, gets an id-made name too.)
fn default_hub_name(port: u16) -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(48)
        .collect();
    (!host.is_empty()).then(|| format!("{host}-{port}"))
}

impl Backend {
    pub fn open(config: &HubConfig) -> Result<Backend, StoreError> {
        match &config.postgres {
            Some(pg) => {
                let mut hub = pg.hub.clone();
                if hub.name.is_none() && config.listen.port() != 0 {
                    hub.name = default_hub_name(config.listen.port());
                }
                let store =
                    PgStore::open_as(&pg.url, pg.pool, &hub)?.with_replicas(&pg.replicas)?;
                Ok(Backend::Postgres(store))
            }
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

    pub fn model_store(&self) -> Result<Arc<dyn ModelStore>, StoreError> {
        Ok(match self {
            Backend::Sqlite { store, .. } => Arc::new(store.model_store()?),
            Backend::Postgres(store) => Arc::new(store.model_store()),
        })
    }

    pub fn token_store(&self) -> Result<Arc<dyn TokenStore>, StoreError> {
        Ok(match self {
            Backend::Sqlite { store, .. } => Arc::new(store.token_store()?),
            Backend::Postgres(store) => Arc::new(store.token_store()),
        })
    }

    /// This hub's membership among the hubs sharing the store, with the pool's notifications
    /// (PostgreSQL only: a SQLite data directory has one hub).
    pub fn membership(&self) -> Option<StoreLink> {
        match self {
            Backend::Sqlite { .. } => None,
            Backend::Postgres(store) => Some(StoreLink {
                store: Arc::new(store.membership()),
                notices: store.listen(),
            }),
        }
    }

    /// Passes swarm broadcasts between the hubs sharing the store (PostgreSQL only).
    pub fn swarm_relay(&self) -> Option<Arc<dyn hive_store::SwarmRelay>> {
        match self {
            Backend::Sqlite { .. } => None,
            Backend::Postgres(store) => Some(Arc::new(store.swarm_relay())),
        }
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
