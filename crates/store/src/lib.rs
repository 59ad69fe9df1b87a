//! Durable state: the store traits, the group-commit writer, and the two backends, SQLite
//! (embedded, the default) and PostgreSQL.
//!
//! The store persists the scheduler's [`Change`]s and answers reads. Writes go through one
//! writer thread ([`GroupCommit`]) that packs every batch waiting into one transaction, so the
//! cost of a commit (an fsync with `synchronous=FULL`) is shared by all of them. A batch's
//! callback runs only after its transaction committed: that is the moment a task counts as
//! accepted. Reads go through [`TaskReader`] on their own connections and never wait for the
//! writer (WAL mode).
//!
//! # Layout
//! - [`group_commit`]: the writer thread and its batching.
//! - [`sqlite`]: the embedded SQLite backend (migrations in `migrations/`).
//! - [`postgres`]: the PostgreSQL backend (migrations in `migrations/postgres/`, numbered alike).
//!
//! Both implement the same traits, [`BatchWriter`], [`TaskReader`], [`AlertLog`] and
//! [`TokenStore`], and pass one behaviour suite (`suite.rs`).

mod codec;
pub mod group_commit;
mod hubs;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod suite;
mod swarm;

use hive_core::{
    Change, LearnedEstimate, RecoveredTask, TaskEnd, TaskId, TaskSpec, TaskStatus, Timestamp,
};

pub use group_commit::{CommitStats, GroupCommit, WriteBatch};
pub use hubs::{Adopted, CANCEL_CHANNEL, CancelElsewhere, HubLoad, HubRecord, Membership, Renewal};
pub use swarm::{Relayed, SWARM_CHANNEL, SWARM_REPLY_CHANNEL, SwarmMessage, SwarmRelay};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
    /// Not written: an earlier commit failed, and this batch may have built on it.
    #[error("not written: an earlier commit failed")]
    EarlierCommitFailed,
    #[error("another hub is using the data directory {0}")]
    Locked(String),
    /// A transaction's `COMMIT` failed on the way (the connection broke): whether it committed is
    /// unknown.
    #[error("the commit's outcome is unknown: {0}")]
    CommitUncertain(String),
    /// This hub's lease ended and another hub took its tasks over: it may write nothing more.
    #[error("this hub lost its lease: another hub took its tasks over")]
    LeaseLost,
    /// A unique name is taken.
    #[error("{0} exists already")]
    Duplicate(String),
    /// A task's idempotency key was taken, by a task another hub committed while this one
    /// decided (several hubs: each checks keys before its commit, not inside it). Nothing of the
    /// transaction was written.
    #[error("the idempotency key {0:?} was taken meanwhile by a task submitted to another hub")]
    IdempotencyKeyTaken(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Persists changes; one call is one transaction.
pub trait BatchWriter: Send + 'static {
    fn apply(&mut self, batches: &[&[Change]]) -> Result<(), StoreError>;
}

impl BatchWriter for Box<dyn BatchWriter> {
    fn apply(&mut self, batches: &[&[Change]]) -> Result<(), StoreError> {
        (**self).apply(batches)
    }
}

/// A task as stored, with its attempts.
#[derive(Debug, Clone)]
pub struct StoredTask {
    pub spec: TaskSpec,
    pub status: TaskStatus,
    pub attempts: u32,
    pub result: Option<String>,
    pub error: Option<String>,
    pub lease_until: Option<Timestamp>,
    pub not_before: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub attempt_log: Vec<StoredAttempt>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttempt {
    pub attempt: u32,
    pub agent: Option<hive_core::AgentId>,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub outcome: Option<hive_core::AttemptOutcome>,
    pub error: Option<String>,
    /// A consensus task's replica: its result (read for one task, not in listings).
    pub output: Option<String>,
}

/// Which tasks to list: newest first, after `before` (the cursor) when given.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub capability: Option<String>,
    pub before: Option<TaskId>,
    pub limit: usize,
}

pub trait TaskReader: Send + Sync + 'static {
    fn get_task(&self, id: TaskId) -> Result<Option<StoredTask>, StoreError>;
    fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<StoredTask>, StoreError>;
    fn count_by_status(&self) -> Result<Vec<(TaskStatus, u64)>, StoreError>;
    fn task_status(&self, id: TaskId) -> Result<Option<TaskStatus>, StoreError>;
    /// How a task ended (its result or error); `None` for an unknown or unfinished task.
    fn task_end(&self, id: TaskId) -> Result<Option<TaskEnd>, StoreError>;
    /// The task that used an idempotency key, with its status.
    fn find_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<(TaskId, TaskStatus)>, StoreError>;
    /// Every task not yet finished, for recovery after a restart.
    fn load_active(&self) -> Result<Vec<RecoveredTask>, StoreError>;
    /// What routing learned (the latest estimate of each identity and capability).
    fn load_learned(&self) -> Result<Vec<LearnedEstimate>, StoreError>;

    /// For reads that tolerate staleness: a reader on a read replica in rotation that has
    /// replayed up to `after` (a [`written`](Self::written) position), the next in turn;
    /// `None` when there is none (read here). A read that fails on the replica is answered by
    /// the primary.
    fn replica(&self, after: u64) -> Option<std::sync::Arc<dyn TaskReader>> {
        let _ = after;
        None
    }

    /// A position at or past this hub's latest acknowledged commit, for [`replica`](Self::replica)
    /// (0 where the store has no replicas).
    fn written(&self) -> u64 {
        0
    }
}

/// One change of an alert's state, as kept in the alert history.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub rule: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub severity: String,
    /// The metric's value when the state changed.
    pub value: Option<f64>,
    pub threshold: f64,
    pub message: String,
    pub at: Timestamp,
}

/// The alert history. Alerts change state rarely, so these are plain writes on a connection of
/// their own, not part of the task group commit.
pub trait AlertLog: Send + Sync + 'static {
    fn record(&self, record: &AlertRecord) -> Result<(), StoreError>;
    /// The newest `limit` records, newest first.
    fn recent(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreError>;
}

/// An API token as kept: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The token's public part (it leads the token text), hex.
    pub id: String,
    pub name: String,
    /// `admin`, `client`, `agent` or `read`.
    pub role: String,
    /// For an agent token: the capabilities it may offer (`None`: any).
    pub capabilities: Option<Vec<String>>,
    /// For an agent token: the swarms it may join (`None`: any).
    pub groups: Option<Vec<String>>,
    pub secret_hash: Vec<u8>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// Refused from this moment on (`None`: never expires).
    pub expires_at: Option<Timestamp>,
}

/// Saved models by name (the neural routing model saves itself as `routing`): a blob of a few
/// tens of KiB, written every few seconds at most. Hubs sharing a PostgreSQL store share the
/// rows: each saves what it learned, and a hub that starts takes the latest.
pub trait ModelStore: Send + Sync + 'static {
    fn save_model(&self, name: &str, bytes: &[u8], at: Timestamp) -> Result<(), StoreError>;
    fn load_model(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The API tokens. Rare writes on a connection of their own, like [`AlertLog`].
pub trait TokenStore: Send + Sync + 'static {
    /// Fails with [`StoreError::Duplicate`] when the name is taken.
    fn insert(&self, token: &StoredToken) -> Result<(), StoreError>;
    /// All tokens, revoked ones included, oldest first.
    fn list(&self) -> Result<Vec<StoredToken>, StoreError>;
    fn get(&self, id: &str) -> Result<Option<StoredToken>, StoreError>;
    /// Returns false when no live token has that name.
    fn revoke(&self, name: &str, at: Timestamp) -> Result<bool, StoreError>;
}
