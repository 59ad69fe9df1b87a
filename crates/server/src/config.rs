//! The hub's resolved configuration: every value checked and defaulted, ready to open stores and
//! sockets. Reading it from a file, the environment and flags is the CLI's job.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hive_core::{PolicyKind, Predictor, RoutingPolicy, SchedulerConfig, TaskLimits};
use hive_store::sqlite::Durability;

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub listen: SocketAddr,
    /// SQLite's directory, and where the first admin token is written (with either store).
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Store in PostgreSQL instead of SQLite.
    pub postgres: Option<PostgresConfig>,
    pub limits: TaskLimits,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest message a worker may send on `/ws/agent` (one frame or fragmented; also the
    /// decompressed size of an lz4 frame), in bytes.
    pub max_message_bytes: usize,
    /// Open connections and how long their request headers may take.
    pub connections: crate::listener::ConnectionLimits,
    /// What submits may wait inside the hub before new ones are refused.
    pub admission: crate::admission::AdmissionLimits,
    /// Which hosts and origins browsers may use.
    pub browser: crate::auth::browser::BrowserPolicy,
    /// Tokens required or not; see [`crate::auth`].
    pub auth: crate::auth::AuthConfig,
    /// Serve HTTPS and WSS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    pub scheduler: SchedulerConfig,
    /// Which routing policy places tasks, and its knobs.
    pub routing: RoutingConfig,
    /// Longest a `GET /tasks/{id}/wait` may hold.
    pub max_wait: Duration,
    /// Write batches that may queue for the writer thread before producers wait.
    pub commit_queue: usize,
    /// Most changes written in one transaction.
    pub max_changes_per_commit: usize,
    /// Threads of the CPU pool that runs the built-in executors; 0: no built-in executors (and
    /// no `builtin` agent).
    pub builtin_threads: usize,
    /// LLM providers (`[[llm.providers]]`), an agent each.
    pub llm: Vec<crate::llm::Provider>,
    /// How often a metrics snapshot is taken (at least `MIN_INTERVAL`, 100 ms).
    pub metrics_interval: Duration,
    /// False: nothing is measured (to measure what measuring costs); the metric routes answer
    /// 404.
    pub metrics_enabled: bool,
    /// Alert rules (the defaults unless configured) and where alerts are posted.
    pub alerts: crate::alerts::AlertConfig,
}

/// `[store] url = "postgres://..."`: the database, and the bounds of the connection pool.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    pub url: String,
    pub pool: hive_store::postgres::PoolBounds,
    /// This hub's name and lease among the hubs sharing the database.
    pub hub: hive_store::postgres::HubIdentity,
    /// How long `hive serve` waits for running tasks on SIGTERM before leaving (see
    /// `Hub::drain`).
    pub drain_grace: std::time::Duration,
    /// Read replicas and their lag bound (none by default).
    pub replicas: hive_store::postgres::ReplicaConfig,
}

/// Without the password: the configuration may be logged.
impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &hive_store::postgres::redact(&self.url))
            .field("pool", &self.pool)
            .field("hub", &self.hub)
            .field("drain_grace", &self.drain_grace)
            .field(
                "replicas",
                &self
                    .replicas
                    .urls
                    .iter()
                    .map(|u| hive_store::postgres::redact(u))
                    .collect::<Vec<_>>(),
            )
            .field("replica_max_lag", &self.replicas.max_lag)
            .finish()
    }
}

/// `[routing]`: the policy and how much it may explore. (How fast what it learns fades,
/// `decay_ms` and `memory_ms`, is the scheduler's: `SchedulerConfig::learning`.)
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingConfig {
    pub policy: PolicyKind,
    /// The learned policy's long-run share of exploring choices, 0-1.
    pub exploration: f64,
    /// Seed of the policies' random choices; `None`: taken from the clock at start.
    pub seed: Option<u64>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            policy: PolicyKind::Learned,
            exploration: 0.05,
            seed: None,
        }
    }
}

impl RoutingConfig {
    /// The configured policy; `seed` is used when none is configured, `predictor` is the
    /// neural policy's model.
    pub fn build(
        &self,
        seed: u64,
        predictor: Option<Box<dyn Predictor>>,
    ) -> Box<dyn RoutingPolicy> {
        self.policy
            .build(self.seed.unwrap_or(seed), self.exploration, predictor)
    }
}

/// The hub's certificate chain and private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl HubConfig {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:7700";
    pub const DEFAULT_DATA_DIR: &'static str = "./hive-data";

    /// Defaults for everything but where to listen and store.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        HubConfig {
            listen,
            data_dir,
            durability: Durability::Full,
            postgres: None,
            limits: TaskLimits::default(),
            max_body_bytes: 32 * 1024 * 1024,
            max_message_bytes: 32 * 1024 * 1024,
            connections: crate::listener::ConnectionLimits::default(),
            admission: crate::admission::AdmissionLimits::default(),
            browser: crate::auth::browser::BrowserPolicy::for_listen(listen, None, Vec::new()),
            auth: crate::auth::AuthConfig::default(),
            tls: None,
            scheduler: SchedulerConfig::default(),
            routing: RoutingConfig::default(),
            max_wait: Duration::from_secs(300),
            commit_queue: 1024,
            max_changes_per_commit: 20_000,
            builtin_threads: 0,
            llm: Vec::new(),
            metrics_interval: crate::metrics::snapshot::DEFAULT_INTERVAL,
            metrics_enabled: true,
            alerts: crate::alerts::AlertConfig::default(),
        }
    }

    /// How often workers are asked to send a heartbeat: a third of the timeout, so that one lost
    /// heartbeat never takes an agent offline.
    pub fn heartbeat_interval_ms(&self) -> u64 {
        (self.scheduler.heartbeat_timeout_ms / 3).max(1)
    }
}
