//! Several hubs on one database: the membership each hub holds (a lease renewed by heartbeat),
//! the tasks it takes over (claimed from the shared pool, or adopted from a hub whose lease
//! ended), and the list of hubs. Only PostgreSQL implements it; a SQLite data directory has one
//! hub. How the pieces fit is in docs/scaling.md.

use std::collections::HashMap;

use hive_core::{Capability, RecoveredTask, TaskEnd, TaskId, TaskStatus, Timestamp};
use uuid::Uuid;

use crate::StoreError;

/// One hub as the database knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HubRecord {
    pub id: Uuid,
    pub name: String,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
    /// Past this moment (the database's clock) any hub may take its tasks over.
    pub lease_until: Timestamp,
    /// The lease had not ended when read.
    pub held: bool,
    /// As of its last heartbeat: where it serves, connected agents, their slots, the tasks it
    /// holds, and how many of those are queued.
    pub load: HubLoad,
}

/// What a hub reports of itself at each heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HubLoad {
    /// Where the hub serves (host:port).
    pub address: String,
    pub agents: u32,
    pub slots: u32,
    pub tasks: u32,
    pub queued: u32,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease runs on; `others` hubs hold live leases besides this one.
    Renewed { others: usize },
    /// Another hub took this one's tasks over: it must stop (see [`StoreError::LeaseLost`]).
    Lost,
}

/// Tasks a hub took over, with how their parents outside the set ended (their inputs).
#[derive(Debug, Default)]
pub struct Adopted {
    pub tasks: Vec<RecoveredTask>,
    pub parents: HashMap<TaskId, TaskEnd>,
}

/// What became of a cancel for a task this hub does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelElsewhere {
    /// No such task.
    Unknown,
    /// It had ended already, so.
    Ended(TaskStatus),
    /// It waited in the pool, or parked for its parents: cancelled there, committed.
    CancelledInPool,
    /// Another hub holds it: asked (on [`CANCEL_CHANNEL`]) to cancel it.
    Forwarded,
}

/// The channel on which hubs ask the hub holding a task to cancel it (the payload: its id).
pub const CANCEL_CHANNEL: &str = "hive_cancel";

/// A hub's membership among the hubs sharing a database. Calls block (they are database round
/// trips); the server makes them off its async workers.
pub trait Membership: Send + Sync + 'static {
    /// This hub's id: new at each start.
    fn id(&self) -> Uuid;
    /// Extends the lease and reports the hub's load.
    fn renew(&self, load: &HubLoad) -> Result<Renewal, StoreError>;
    /// Takes over the tasks of every hub whose lease ended (their rows go).
    fn adopt_lost(&self) -> Result<Adopted, StoreError>;
    /// Takes over parked tasks (see `hive_core::Change::TaskParked`) whose parents all ended.
    fn adopt_unparked(&self) -> Result<Adopted, StoreError>;
    /// Claims up to `n` queued tasks of each capability from the pool, most urgent first (by
    /// rank: priority with aging, as in a hub's queue), skipping those another hub is claiming.
    fn claim(&self, wants: &[(Capability, u32)]) -> Result<Adopted, StoreError>;
    /// Every hub with a row: live ones, and lost ones not yet taken over.
    fn hubs(&self) -> Result<Vec<HubRecord>, StoreError>;
    /// Queued tasks in the pool, held by no hub.
    fn pooled(&self) -> Result<u64, StoreError>;
    /// Cancels a task this hub does not hold: in the pool directly, else by asking its hub.
    fn cancel_elsewhere(&self, task: TaskId, at: Timestamp) -> Result<CancelElsewhere, StoreError>;
    /// Those of `tasks` that have ended (for long-polls on tasks other hubs finish).
    fn ended_among(&self, tasks: &[TaskId]) -> Result<Vec<TaskId>, StoreError>;
    /// Ends the lease now, so that the others take over what is left at their next heartbeat
    /// (a stopping hub).
    fn leave(&self) -> Result<(), StoreError>;
}
