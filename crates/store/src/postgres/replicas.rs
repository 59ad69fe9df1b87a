//! Read replicas: streaming standbys of the primary that answer the reads which tolerate
//! staleness (listings and status counts; the server decides which). Each replica has a small
//! pool of its own and is checked every [`CHECK_EVERY`]: it is in rotation while it answers, is
//! in recovery (a promoted standby no longer follows the primary) and lags at most the bound
//! configured. A read that fails on a replica takes the replica out at once and is answered by
//! the primary instead; the next healthy check puts it back.
//!
//! Positions are the primary's WAL positions (a `pg_lsn` as a number). After each commit of
//! this hub the writer records a position at or past that commit ([`ReplicaSet::written`]); a
//! replica whose replay has reached a position shows everything this hub committed before it.
//! That is how a client reads its own writes: a read asks for a replica that has reached the
//! position of the client's last write, and goes to the primary while none has (see
//! docs/design.md, "Read replicas").

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{Shared, redact};
use crate::StoreError;

/// How often each replica's health and lag are read.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// How long a check, or a read waiting for a replica's connection, waits before the replica
/// counts as unreachable (shorter than the primary's: the primary can answer instead).
const REPLICA_WAIT: Duration = Duration::from_secs(1);

/// Connections per replica (reads that tolerate staleness are the dashboard's and pollers').
const REPLICA_POOL: usize = 4;

/// The read replicas to use and how far behind one may be and still answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// `postgres://` URLs of streaming standbys of the primary.
    pub urls: Vec<String>,
    /// A replica further behind than this leaves the rotation until it catches up.
    pub max_lag: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            urls: Vec::new(),
            max_lag: Duration::from_secs(2),
        }
    }
}

/// One replica as seen by its last check, and the reads it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStats {
    /// `host:port/database`, without credentials.
    pub label: String,
    pub in_rotation: bool,
    /// Seconds behind the primary at the last check; `None` before the first good check.
    pub lag_seconds: Option<f64>,
    /// Queries it answered, and queries that failed on it (answered by the primary instead).
    pub reads: u64,
    pub failures: u64,
    /// Why it is out of rotation, when it is.
    pub problem: Option<String>,
}

/// The replicas of a store, and this hub's written position.
pub(crate) struct ReplicaSet {
    pub(crate) replicas: Vec<Arc<Replica>>,
    max_lag: Duration,
    /// Where the next pick starts: reads are spread over the replicas in turn.
    next: AtomicUsize,
    /// A primary position at or past this hub's latest commit (0 before the first).
    written: AtomicU64,
}

impl ReplicaSet {
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Called by the writer after a commit, with the primary's position read after it.
    pub(crate) fn record_written(&self, position: u64) {
        self.written.fetch_max(position, Ordering::AcqRel);
    }

    /// A replica in rotation that has replayed up to `after`, the next in turn.
    pub(crate) fn pick(&self, after: u64) -> Option<Arc<Replica>> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.replicas[(start + i) % n])
            .find(|r| r.ready_for(after))
            .cloned()
    }
}

/// One replica: its pool and what its last check found.
pub(crate) struct Replica {
    label: String,
    pool: Pool,
    in_rotation: AtomicBool,
    /// The position its replay had reached at the last check.
    replayed: AtomicU64,
    health: Mutex<Health>,
    reads: AtomicU64,
    failures: AtomicU64,
}

#[derive(Debug, Clone, Default)]
struct Health {
    lag_seconds: Option<f64>,
    problem: Option<String>,
    /// Since when the replica has been behind with no replayed commit time to measure by.
    behind_since: Option<Instant>,
}

impl Replica {
    fn ready_for(&self, after: u64) -> bool {
        self.in_rotation.load(Ordering::Acquire) && self.replayed.load(Ordering::Acquire) >= after
    }

    pub(crate) async fn connection(&self) -> Result<Object, String> {
        self.pool.get().await.map_err(|e| e.to_string())
    }

    pub(crate) fn answered(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// A read failed on it: out of rotation until a check finds it healthy.
    pub(crate) fn failed(&self, why: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.leave(format!("a read failed: {why}"));
    }

    fn leave(&self, problem: String) {
        if self.in_rotation.swap(false, Ordering::AcqRel) {
            tracing::warn!(replica = %self.label, %problem, "replica taken out of rotation");
        }
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .problem = Some(problem);
    }

    fn stats(&self) -> ReplicaStats {
        let health = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let in_rotation = self.in_rotation.load(Ordering::Acquire);
        ReplicaStats {
            label: self.label.clone(),
            in_rotation,
            lag_seconds: health.lag_seconds,
            reads: self.reads.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            problem: if in_rotation { None } else { health.problem },
        }
    }

    /// Reads the replica's state and decides whether it serves; `primary` is the primary's
    /// position read just before.
    async fn check(&self, primary: Option<u64>, max_lag: Duration) {
        let found = tokio::time::timeout(REPLICA_WAIT, async {
            let client = self.connection().await?;
            let row = client
                .query_one(
                    "SELECT pg_is_in_recovery(),
                        COALESCE((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0),
                        EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((
                row.get::<_, bool>(0),
                row.get::<_, i64>(1).max(0) as u64,
                row.get::<_, Option<f64>>(2),
            ))
        })
        .await
        .unwrap_or_else(|_| Err("no answer within a second".into()));
        let (recovering, replayed, since_replayed_commit) = match found {
            Ok(found) => found,
            Err(e) => return self.leave(format!("unreachable: {e}")),
        };
        if !recovering {
            return self.leave("not a replica: it is not in recovery (promoted?)".into());
        }
        let Some(primary) = primary else {
            // Without the primary's position the lag is unknown; the replica keeps its state.
            return;
        };
        self.replayed.store(replayed, Ordering::Release);
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let lag = if replayed >= primary {
            health.behind_since = None;
            0.0
        } else {
            // Behind: as old as the newest commit it replayed (the primary wrote after that),
            // or, when it replayed none since it started, as long as it has been seen behind.
            let since = *health.behind_since.get_or_insert_with(Instant::now);
            since_replayed_commit.map_or(since.elapsed().as_secs_f64(), |s| s.max(0.0))
        };
        health.lag_seconds = Some(lag);
        if lag <= max_lag.as_secs_f64() {
            health.problem = None;
            drop(health);
            if !self.in_rotation.swap(true, Ordering::AcqRel) {
                tracing::info!(replica = %self.label, lag, "replica in rotation");
            }
        } else {
            drop(health);
            self.leave(format!(
                "{lag:.1} s behind the primary (the bound is {:.1} s)",
                max_lag.as_secs_f64()
            ));
        }
    }
}

/// Opens a pool per replica (connecting lazily: a replica down at start is only out of
/// rotation) and starts their checks on the store's runtime.
pub(crate) fn open(shared: &Arc<Shared>, config: &ReplicaConfig) -> Result<ReplicaSet, StoreError> {
    let runtime = shared.runtime.as_ref().expect("taken only on drop");
    let _entered = runtime.enter();
    let mut replicas = Vec::with_capacity(config.urls.len());
    for url in &config.urls {
        let mut pg = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Database(format!("not a PostgreSQL URL ({}): {e}", redact(url)))
        })?;
        pg.connect_timeout(REPLICA_WAIT);
        pg.application_name("hive");
        pg.tcp_user_timeout(super::DEAD_AFTER);
        let manager = Manager::from_config(
            pg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(REPLICA_POOL)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(REPLICA_WAIT))
            .create_timeout(Some(REPLICA_WAIT))
            .build()
            .map_err(|e| StoreError::Database(format!("replica connection pool: {e}")))?;
        replicas.push(Arc::new(Replica {
            label: label(&pg),
            pool,
            in_rotation: AtomicBool::new(false),
            replayed: AtomicU64::new(0),
            health: Mutex::new(Health {
                problem: Some("not checked yet".into()),
                ..Health::default()
            }),
            reads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }));
    }
    Ok(ReplicaSet {
        replicas,
        max_lag: config.max_lag,
        next: AtomicUsize::new(0),
        written: AtomicU64::new(0),
    })
}

/// Checks every replica each [`CHECK_EVERY`] until the store is dropped.
pub(crate) fn watch(shared: &Arc<Shared>) {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let runtime = shared.runtime.as_ref().expect("taken only on drop");
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            let Some(set) = shared.replicas.get() else {
                return;
            };
            let primary = primary_position(&shared).await;
            let checks = set.replicas.iter().map(|r| r.check(primary, set.max_lag));
            futures_util::future::join_all(checks).await;
        }
    });
}

/// The primary's current WAL position; `None` when it cannot be read now.
async fn primary_position(shared: &Shared) -> Option<u64> {
    let client = shared.connection().await.ok()?;
    position(&client).await
}

/// `pg_current_wal_lsn()` as a number: run on the primary after a commit, a position at or past
/// it.
pub(crate) async fn position(client: &tokio_postgres::Client) -> Option<u64> {
    let row = client
        .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
        .await
        .ok()?;
    Some(row.get::<_, i64>(0).max(0) as u64)
}

impl ReplicaSet {
    pub(crate) fn stats(&self) -> Vec<ReplicaStats> {
        self.replicas.iter().map(|r| r.stats()).collect()
    }
}

/// `host:port/database` of a replica's configuration, for metrics and logs.
fn label(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}
