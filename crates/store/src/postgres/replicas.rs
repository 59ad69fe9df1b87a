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

/// How long a good check keeps a replica answering: checks that stall (a primary that cannot be
/// read, a slow replica) must not leave it serving on what an old check found.
pub const CHECK_VALID_FOR: Duration =
    Duration::from_millis(2 * CHECK_EVERY.as_millis() as u64 + REPLICA_WAIT.as_millis() as u64);

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
    /// The position after a commit could not be read: until the next commit's is, reads after
    /// a write go to the primary.
    written_unknown: AtomicBool,
}

impl ReplicaSet {
    pub(crate) fn written(&self) -> u64 {
        if self.written_unknown.load(Ordering::Acquire) {
            return u64::MAX;
        }
        self.written.load(Ordering::Acquire)
    }

    /// Called by the writer after a commit, with the primary's position read after it (`None`:
    /// it could not be read).
    pub(crate) fn record_written(&self, position: Option<u64>) {
        match position {
            Some(position) => {
                self.written.fetch_max(position, Ordering::AcqRel);
                self.written_unknown.store(false, Ordering::Release);
            }
            None => self.written_unknown.store(true, Ordering::Release),
        }
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
    /// Since when the replica has been behind with nothing else to measure its lag by.
    behind_since: Option<Instant>,
    /// The last check that found it fit to answer.
    good_at: Option<Instant>,
}

impl Replica {
    fn ready_for(&self, after: u64) -> bool {
        self.answers()
            && self.replayed.load(Ordering::Acquire) >= after
            && self
                .health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .good_at
                .is_some_and(|at| at.elapsed() < CHECK_VALID_FOR)
    }

    /// In rotation (a read that failed on it since took it out).
    pub(crate) fn answers(&self) -> bool {
        self.in_rotation.load(Ordering::Acquire)
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
        // As reads see it: a replica whose last good check is too old does not answer.
        let in_rotation = self.answers()
            && health
                .good_at
                .is_some_and(|at| at.elapsed() < CHECK_VALID_FOR);
        ReplicaStats {
            label: self.label.clone(),
            in_rotation,
            lag_seconds: health.lag_seconds,
            reads: self.reads.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            problem: match (in_rotation, health.problem) {
                (true, _) => None,
                (false, Some(problem)) => Some(problem),
                (false, None) => Some("no good check for 2 s (the checks stall)".into()),
            },
        }
    }

    /// Reads the replica's state and decides whether it serves; `primary` is the primary's
    /// position read just before, `history` the positions read before that.
    async fn check(&self, primary: Option<u64>, history: &History, max_lag: Duration) {
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
            let column = |e: tokio_postgres::Error| e.to_string();
            Ok::<_, String>((
                row.try_get::<_, bool>(0).map_err(column)?,
                row.try_get::<_, i64>(1).map_err(column)?.max(0) as u64,
                row.try_get::<_, Option<f64>>(2).map_err(column)?,
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
            // Without the primary's position the lag is unknown: the replica keeps its state
            // until its last good check is too old (`CHECK_VALID_FOR`).
            return;
        };
        self.replayed.store(replayed, Ordering::Release);
        let now = Instant::now();
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let lag = if replayed >= primary {
            health.behind_since = None;
            0.0
        } else {
            // Two bounds of how old the oldest write it lacks is, the tighter taken: the age of
            // the newest commit it replayed (too high after the primary was idle), and how long
            // ago the primary was last where the replica is (as coarse as the checks).
            let bounds = [
                since_replayed_commit.map(|s| s.max(0.0)),
                history
                    .since_at_or_before(replayed, now)
                    .map(|d| d.as_secs_f64()),
            ];
            match bounds.into_iter().flatten().reduce(f64::min) {
                Some(lag) => lag,
                None => health
                    .behind_since
                    .get_or_insert(now)
                    .elapsed()
                    .as_secs_f64(),
            }
        };
        health.lag_seconds = Some(lag);
        if lag <= max_lag.as_secs_f64() {
            health.problem = None;
            health.good_at = Some(now);
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

/// The primary's positions as the checks read them, oldest first.
#[derive(Debug, Default)]
struct History {
    samples: std::collections::VecDeque<(u64, Instant)>,
    keep: usize,
}

impl History {
    /// Keeps enough samples to measure lags a little past `max_lag`.
    fn new(max_lag: Duration) -> History {
        let keep = (max_lag.as_millis() / CHECK_EVERY.as_millis().max(1)) as usize + 8;
        History {
            samples: std::collections::VecDeque::new(),
            keep: keep.min(10_000),
        }
    }

    fn push(&mut self, position: u64, at: Instant) {
        if self.samples.len() == self.keep {
            self.samples.pop_front();
        }
        self.samples.push_back((position, at));
    }

    /// How long ago the primary was last at or before `position` (every write since is what a
    /// replica that replayed up to `position` may lack); `None` when no sample is that old.
    fn since_at_or_before(&self, position: u64, now: Instant) -> Option<Duration> {
        self.samples
            .iter()
            .rev()
            .find(|(p, _)| *p <= position)
            .map(|(_, at)| now.duration_since(*at))
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
        written_unknown: AtomicBool::new(false),
    })
}

/// Checks every replica each [`CHECK_EVERY`] until the store is dropped.
pub(crate) fn watch(shared: &Arc<Shared>) {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let runtime = shared.runtime.as_ref().expect("taken only on drop");
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut history: Option<History> = None;
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            let Some(set) = shared.replicas.get() else {
                return;
            };
            let history = history.get_or_insert_with(|| History::new(set.max_lag));
            // Taken before the read: every write made before this moment is at or before the
            // position read.
            let asked = Instant::now();
            let primary = primary_position(&shared).await;
            let checks = set
                .replicas
                .iter()
                .map(|r| r.check(primary, history, set.max_lag));
            futures_util::future::join_all(checks).await;
            if let Some(position) = primary {
                history.push(position, asked);
            }
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
    Some(row.try_get::<_, i64>(0).ok()?.max(0) as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_bound_is_how_long_ago_the_primary_was_where_the_replica_is() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut history = History::new(Duration::from_secs(1));
        // Idle at 100 for a long while, then writing.
        for ms in [0, 500, 1_000, 1_500] {
            history.push(100, at(ms));
        }
        history.push(180, at(2_000));
        history.push(260, at(2_500));
        let now = at(2_600);
        assert_eq!(
            history.since_at_or_before(100, now),
            Some(Duration::from_millis(1_100))
        );
        assert_eq!(
            history.since_at_or_before(200, now),
            Some(Duration::from_millis(600))
        );
        assert_eq!(
            history.since_at_or_before(50, now),
            None,
            "behind every sample"
        );
        assert!(history.samples.len() <= history.keep);
    }
}
