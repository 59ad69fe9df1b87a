//! The PostgreSQL backend: the same traits as SQLite's, over tokio-postgres connections from a
//! deadpool pool (why these: docs/design.md, "PostgreSQL").
//!
//! The store traits are synchronous (the group-commit writer is a thread; reads run on the
//! blocking pool), while tokio-postgres is asynchronous. The store owns a small runtime of its
//! own where the connections live; a trait call sends its future there and waits for the answer
//! (`Shared::block`), which is safe from any thread, runtime worker or not (but the store's
//! own, which never calls it).
//!
//! [`PgStore::open`] connects, applies migrations (`migrations/postgres/`, numbered like
//! SQLite's) under an advisory lock, so that hubs starting together apply each once, and warms
//! the pool to its minimum.

mod admin;
mod hubs;
#[cfg(test)]
mod hubs_tests;
#[cfg(test)]
mod plan_tests;
mod read;
pub mod relay;
#[cfg(test)]
mod replica_tests;
mod replicas;
pub mod scratch;
pub mod settings;
mod swarm;
mod write;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

pub use admin::{PgAlertLog, PgModelStore, PgTokenStore};
pub use hubs::{HubIdentity, Notice, POOL_CHANNEL, PgMembership};
pub use read::PgReader;
pub use replicas::{
    CHECK_EVERY as REPLICA_CHECK_EVERY, CHECK_VALID_FOR as REPLICA_CHECK_VALID_FOR, ReplicaConfig,
    ReplicaStats,
};
pub use swarm::PgSwarmRelay;
pub use write::PgWriter;

use crate::StoreError;

/// The versioned migrations, applied in order; `hive_schema_version` records the last applied.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_alerts.sql")),
    (3, include_str!("../../migrations/postgres/0003_tokens.sql")),
    (
        4,
        include_str!("../../migrations/postgres/0004_estimates.sql"),
    ),
    (
        5,
        include_str!("../../migrations/postgres/0005_on_parent_failure.sql"),
    ),
    (
        6,
        include_str!("../../migrations/postgres/0006_consensus.sql"),
    ),
    (7, include_str!("../../migrations/postgres/0007_hubs.sql")),
    (8, include_str!("../../migrations/postgres/0008_swarm.sql")),
    (
        9,
        include_str!("../../migrations/postgres/0009_pool_rank.sql"),
    ),
    (
        10,
        include_str!("../../migrations/postgres/0010_neural.sql"),
    ),
    (
        11,
        include_str!("../../migrations/postgres/0011_finished.sql"),
    ),
    (
        12,
        include_str!("../../migrations/postgres/0012_attempt_in_task.sql"),
    ),
    (
        13,
        include_str!("../../migrations/postgres/0013_token_expiry.sql"),
    ),
    (
        14,
        include_str!("../../migrations/postgres/0014_task_seq.sql"),
    ),
    (
        15,
        include_str!("../../migrations/postgres/0015_index_by_seq.sql"),
    ),
    (
        16,
        include_str!("../../migrations/postgres/0016_attempt_in_task.sql"),
    ),
];

/// Any number fixed for Hive: the advisory lock hubs take while they migrate.
const MIGRATION_LOCK: i64 = 0x4849_5645; // "HIVE"

/// How long a request waits for a connection, and a new connection for the server, before the
/// store answers that the database is unavailable.
const WAIT_LIMIT: Duration = Duration::from_secs(5);

/// How long a connection may go without an answer from the server's machine before it counts
/// as broken (TCP's own acknowledgements and keepalives, so a slow query is not cut off).
const DEAD_AFTER: Duration = Duration::from_secs(15);

/// The pool's size bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBounds {
    /// Connections opened at start and kept.
    pub min: usize,
    /// Connections at most.
    pub max: usize,
}

impl Default for PoolBounds {
    /// The plan's bounds: 5 to 20.
    fn default() -> Self {
        PoolBounds { min: 5, max: 20 }
    }
}

/// The store's counters: its connection pool as seen now, and the time requests waited for a
/// connection since start.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreStats {
    pub max: usize,
    /// Connections open.
    pub open: usize,
    /// Connections handed out now.
    pub in_use: usize,
    /// Requests waiting for one now.
    pub waiting: usize,
    /// Connections handed out since start, and the time they were waited for in all.
    pub acquired: u64,
    pub wait_seconds: f64,
}

/// Shared by the store's parts: the pool, the runtime it lives on, the wait counters.
pub(crate) struct Shared {
    /// Taken only on drop (see `Drop for Shared`).
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    acquired: AtomicU64,
    wait_ns: AtomicU64,
    /// This hub's id among the hubs of the database (new at each start); its writes are
    /// fenced by it (see [`hubs`]).
    hub: uuid::Uuid,
    /// For connections outside the pool (the one that listens for notifications).
    config: tokio_postgres::Config,
    /// The read replicas, once [`PgStore::with_replicas`] set them.
    replicas: std::sync::OnceLock<replicas::ReplicaSet>,
}

impl Shared {
    /// Runs `work` on the store's runtime and waits for it, from any thread.
    pub(crate) fn block<T, F>(self: &Arc<Self>, work: impl FnOnce(Arc<Shared>) -> F) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let future = work(self.clone());
        let runtime = self.runtime.as_ref().expect("taken only on drop");
        runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        // A std channel, not tokio's: waiting on it is allowed inside a runtime's worker too.
        rx.recv()
            .expect("the store's runtime runs every future it is given")
    }

    /// A connection from the pool, counting the wait.
    pub(crate) async fn connection(&self) -> Result<Object, StoreError> {
        let began = Instant::now();
        let got = self.pool.get().await;
        self.wait_ns
            .fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.acquired.fetch_add(1, Ordering::Relaxed);
        got.map_err(|e| StoreError::Database(format!("no database connection: {e}")))
    }
}

pub struct PgStore {
    shared: Arc<Shared>,
    /// The name this hub joined under.
    name: String,
    lease: Duration,
}

impl PgStore {
    /// [`open_as`](Self::open_as) a hub named after its id.
    pub fn open(url: &str, bounds: PoolBounds) -> Result<PgStore, StoreError> {
        Self::open_as(url, bounds, &HubIdentity::default())
    }

    /// Connects to the database at `url` (`postgres://user[:password]@host:port/db`), brings
    /// its schema up to date, joins the hubs of the database as `identity` (taking over the
    /// tasks of an earlier hub of the same name), and opens `bounds.min` connections.
    pub fn open_as(
        url: &str,
        bounds: PoolBounds,
        identity: &HubIdentity,
    ) -> Result<PgStore, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Database(format!("not a PostgreSQL URL ({}): {e}", redact(url)))
        })?;
        config.connect_timeout(WAIT_LIMIT);
        config.application_name("hive");
        // A database host that vanishes without closing its connections (a crash, a cut
        // network) must fail the requests waiting on it, not hang them: unacknowledged data is
        // given up after DEAD_AFTER, an idle connection is probed every few seconds.
        config.tcp_user_timeout(DEAD_AFTER);
        config.keepalives_idle(DEAD_AFTER / 3);
        config.keepalives_interval(DEAD_AFTER / 6);
        config.keepalives_retries(3);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                // A connection that broke is found out when it is used (the request fails, and
                // the pool drops it); checking each one before use would cost a round trip.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hive-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("cannot start the store's runtime: {e}")))?;
        let pool = {
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(bounds.max.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(WAIT_LIMIT))
                .create_timeout(Some(WAIT_LIMIT))
                .build()
                .map_err(|e| StoreError::Database(format!("connection pool: {e}")))?
        };
        let shared = Arc::new(Shared {
            runtime: Some(runtime),
            pool,
            acquired: AtomicU64::new(0),
            wait_ns: AtomicU64::new(0),
            hub: uuid::Uuid::now_v7(),
            config,
            replicas: std::sync::OnceLock::new(),
        });
        let min = bounds.min.min(bounds.max);
        let joining = identity.clone();
        let name = shared.block(|shared| async move {
            let mut client = shared.connection().await?;
            migrate(&mut client).await?;
            drop(client);
            let (name, taken) = hubs::join(&shared, &joining).await?;
            if taken > 0 {
                tracing::info!(taken, %name, "took over the tasks of this hub's previous run");
            }
            // Open the minimum now, so that the first requests do not pay for it.
            let mut warm = Vec::with_capacity(min);
            for _ in 0..min {
                warm.push(shared.connection().await?);
            }
            Ok::<_, StoreError>(name)
        })?;
        Ok(PgStore {
            shared,
            name,
            lease: identity.lease,
        })
    }

    /// Adds read replicas (once; none when `config.urls` is empty). Their checks start now; a
    /// replica that cannot be reached yet is only out of rotation.
    pub fn with_replicas(self, config: &ReplicaConfig) -> Result<PgStore, StoreError> {
        if config.urls.is_empty() {
            return Ok(self);
        }
        let set = replicas::open(&self.shared, config)?;
        if self.shared.replicas.set(set).is_err() {
            return Err(StoreError::Database("the replicas are set already".into()));
        }
        replicas::watch(&self.shared);
        Ok(self)
    }

    /// The name this hub joined under.
    pub fn hub_name(&self) -> &str {
        &self.name
    }

    /// This hub's membership among the hubs of the database.
    pub fn membership(&self) -> PgMembership {
        PgMembership::new(self.shared.clone(), self.lease)
    }

    /// Relays swarm broadcasts between the hubs of the database.
    pub fn swarm_relay(&self) -> PgSwarmRelay {
        PgSwarmRelay::new(self.shared.clone())
    }

    /// Notifications of work pooled by any hub (see [`POOL_CHANNEL`]).
    pub fn listen(&self) -> tokio::sync::mpsc::UnboundedReceiver<Notice> {
        hubs::listen(&self.shared)
    }

    /// The writer of the group-commit thread.
    pub fn writer(&self) -> PgWriter {
        PgWriter::new(self.shared.clone())
    }

    pub fn reader(&self) -> PgReader {
        PgReader::new(self.shared.clone())
    }

    pub fn alert_log(&self) -> PgAlertLog {
        PgAlertLog::new(self.shared.clone())
    }

    pub fn model_store(&self) -> PgModelStore {
        PgModelStore::new(self.shared.clone())
    }

    pub fn token_store(&self) -> PgTokenStore {
        PgTokenStore::new(self.shared.clone())
    }

    /// The pool's counters now.
    pub fn stats(&self) -> StoreStats {
        self.monitor().stats()
    }

    /// A handle that reads the store's counters, for metrics.
    pub fn monitor(&self) -> StoreMonitor {
        StoreMonitor(self.shared.clone())
    }
}

/// Reads the store's counters (see [`PgStore::monitor`]).
#[derive(Clone)]
pub struct StoreMonitor(Arc<Shared>);

impl StoreMonitor {
    pub fn stats(&self) -> StoreStats {
        let shared = &self.0;
        let status = shared.pool.status();
        StoreStats {
            max: status.max_size,
            open: status.size,
            in_use: status.size.saturating_sub(status.available),
            waiting: status.waiting,
            acquired: shared.acquired.load(Ordering::Relaxed),
            wait_seconds: shared.wait_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl StoreMonitor {
    /// Each read replica as its last check found it (empty without replicas).
    pub fn replicas(&self) -> Vec<ReplicaStats> {
        self.0
            .replicas
            .get()
            .map_or_else(Vec::new, |set| set.stats())
    }
}

impl std::fmt::Debug for StoreMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreMonitor").field(&self.stats()).finish()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which a runtime worker may not do: the last
        // reference can go on one (a handler's state), so the threads are left to end alone.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db_error)?;
    // Hubs starting together: one migrates, the others wait here and then find nothing to do.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_error)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS hive_schema_version (version integer NOT NULL)")
        .await
        .map_err(db_error)?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM hive_schema_version",
            &[],
        )
        .await
        .map_err(db_error)?
        .get(0);
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
        // An upgrade says what it is doing, as SQLite's does.
        if current > 0 {
            tracing::info!(version, "applying database migration");
        }
        tx.batch_execute(sql).await.map_err(db_error)?;
        tx.execute(
            "INSERT INTO hive_schema_version (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(db_error)?;
        tracing::debug!(version, "applied database migration");
    }
    tx.commit().await.map_err(db_error)
}

/// The SQLSTATE `hive_fence` raises (migration 0007).
const LEASE_LOST: &str = "H0001";

/// For a transaction whose every statement finds its rows through an index (the writer's, a
/// claim's): the planner is told so. What it believes of a table can be far from the table: a
/// prepared statement's plan is kept per connection from when the table was small, and a table
/// not yet analyzed (a new database, a pool that just filled) is guessed at. Seen: an update over
/// `unnest` joined to `attempts` hash-joined a sequential scan, 30,000 rows read for 40
/// changed, 16 ms per commit and growing with the table; a claim sorted all 70,000 pooled rows
/// of a capability to take 192 of them, 73 ms (BENCHMARKS.md, "Several hubs: plans made for an
/// empty table"). Disabled, a scan, join or sort of those kinds is still used where nothing else
/// can run the statement.
const BY_INDEX: &str = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
    SET LOCAL enable_sort = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/// The server's own words when it refused, else the client's.
pub(crate) fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if db.code().code() == LEASE_LOST => StoreError::LeaseLost,
        Some(db)
            if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
                && db.constraint() == Some("tasks_by_idempotency_key") =>
        {
            StoreError::IdempotencyKeyTaken(taken_key(db.detail().unwrap_or_default()))
        }
        Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Database(e.to_string()),
    }
}

/// The key in a unique violation's detail, `Key (idempotency_key)=(KEY) already exists.`
/// (empty when the detail says otherwise).
fn taken_key(detail: &str) -> String {
    detail
        .strip_prefix("Key (idempotency_key)=(")
        .and_then(|rest| rest.strip_suffix(") already exists."))
        .unwrap_or_default()
        .to_string()
}

/// The URL without its password (in the user part or a `password=` parameter), for messages.
pub fn redact(url: &str) -> String {
    let url = redact_parameter(url);
    let url = url.as_str();
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Whether every host the URL names is this machine (loopback addresses, `localhost`, a Unix
/// socket), so that what the machine reports (its disk, its kernel's writeback) is the database
/// host's too. Addresses given as `hostaddr` are what is connected to when present. `None` when
/// the URL does not parse.
pub fn is_on_this_machine(url: &str) -> Option<bool> {
    use tokio_postgres::config::Host;
    let config = tokio_postgres::Config::from_str(url).ok()?;
    if !config.get_hostaddrs().is_empty() {
        return Some(config.get_hostaddrs().iter().all(|ip| ip.is_loopback()));
    }
    Some(config.get_hosts().iter().all(|host| {
        match host {
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            #[cfg(unix)]
            Host::Unix(_) => true,
        }
    }))
}

/// `password=...` (a URL parameter, or a key=value connection string's, spaces around `=` and a
/// quoted value included) as `password=***`.
fn redact_parameter(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find("password") {
        let after_key = at + "password".len();
        let tail = &rest[after_key..];
        let spaces = tail.len() - tail.trim_start().len();
        let Some(value) = tail[spaces..].strip_prefix('=') else {
            out.push_str(&rest[..after_key]);
            rest = tail;
            continue;
        };
        let value = value.trim_start();
        let value_at = rest.len() - value.len();
        let end = match value.strip_prefix('\'') {
            // A quoted value ends at the first quote not escaped by a backslash.
            Some(quoted) => {
                let mut escaped = false;
                let close = quoted.char_indices().find(|&(_, c)| {
                    let closes = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                });
                close.map_or(rest.len(), |(i, _)| value_at + 1 + i + 1)
            }
            None => value
                .find(['&', ' ', '\t', '\n'])
                .map_or(rest.len(), |n| value_at + n),
        };
        out.push_str(&rest[..value_at]);
        out.push_str("***");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
