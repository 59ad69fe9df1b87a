//! Several hubs on one database: the membership each hub holds (a lease renewed by heartbeat),
//! the tasks it takes over (claimed from the shared pool, or adopted from a hub whose lease
//! ended), and the list of hubs. Only PostgreSQL implements it; a SQLite data directory has one
//! hub. How the pieces fit is in docs/scaling.md.

use std::collections::HashMap;

use hive_core::{Capability, RecoveredTask, TaskEnd, TaskId, Timestamp};
use uuid::Uuid;

use crate::StoreError;

/// One hub as the database knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HubRecord {
    pub id: Uuid,
    pub name: String,
    /// Where it serves (host:port), as it said at its last heartbeat.
    pub address: String,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
    /// Past this moment (the database's clock) any hub may take its tasks over.
    pub lease_until: Timestamp,
    /// The lease had not ended when read.
    pub held: bool,
    /// As of its last heartbeat: connected agents, their slots, the tasks it holds, and how
    /// many of those are queued.
    pub load: HubLoad,
}

/// What a hub reports of itself at each heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HubLoad {
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

/// A hub's membership among the hubs sharing a database. Calls block (they are database round
/// trips); the server makes them off its async workers.
pub trait Membership: Send + Sync + 'static {
    /// This hub's id: new at each start.
    fn id(&self) -> Uuid;
    /// Extends the lease and reports the hub's load.
    fn renew(&self, load: &HubLoad) -> Result<Renewal, StoreError>;
    /// Takes over the tasks of every hub whose lease ended (their rows go).
    fn adopt_lost(&self) -> Result<Adopted, StoreError>;
    /// Claims up to `n` queued tasks of each capability from the pool, most urgent first
    /// (priority, then age), skipping those another hub is claiming.
    fn claim(&self, wants: &[(Capability, u32)]) -> Result<Adopted, StoreError>;
    /// Every hub with a row: live ones, and lost ones not yet taken over.
    fn hubs(&self) -> Result<Vec<HubRecord>, StoreError>;
    /// Queued tasks in the pool, held by no hub.
    fn pooled(&self) -> Result<u64, StoreError>;
    /// Ends the lease now, so that the others take over what is left at their next heartbeat
    /// (a stopping hub).
    fn leave(&self) -> Result<(), StoreError>;
}
