//! Swarm messages across hubs: a broadcast sent to one hub reaches the members connected to the
//! others too (PostgreSQL only; a SQLite data directory has one hub). The hub that was asked
//! publishes the message; every other live hub delivers it to its members, reports whom it
//! reached, and relays their replies; the first hub collects them. Messages stay ephemeral:
//! their rows live while the broadcast waits; the first hub deletes them after, and the rows of
//! a hub that died meanwhile go with its lease (`forget_orphans`).

use uuid::Uuid;

use crate::StoreError;

/// A broadcast, as the other hubs read it.
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmMessage {
    pub id: Uuid,
    pub group: String,
    /// JSON.
    pub payload: String,
    /// The hub that was asked (it delivers to its own members itself).
    pub origin: Uuid,
    /// How long the origin waits for replies; the others relay replies that long.
    pub timeout_ms: u64,
}

/// What the other hubs reported of a broadcast so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Relayed {
    /// Each hub that delivered it, with the agents it reached (maybe none).
    pub delivered: Vec<(Uuid, Vec<Uuid>)>,
    /// Replies of their agents: (agent, JSON output).
    pub replies: Vec<(Uuid, String)>,
}

/// The channel that tells the other hubs of a broadcast (the payload: its id).
pub const SWARM_CHANNEL: &str = "hive_swarm";
/// The channel that tells the origin of a delivery or a reply (the payload: the message's id).
pub const SWARM_REPLY_CHANNEL: &str = "hive_swarm_reply";

/// Relays broadcasts between the hubs of a database. Calls block (database round trips).
pub trait SwarmRelay: Send + Sync + 'static {
    /// Publishes `message` to the other live hubs ([`SWARM_CHANNEL`]); returns their ids: the
    /// hubs whose delivery report the origin waits for.
    fn publish(&self, message: &SwarmMessage) -> Result<Vec<Uuid>, StoreError>;
    /// A message another hub published; `None` once it is gone.
    fn message(&self, id: Uuid) -> Result<Option<SwarmMessage>, StoreError>;
    /// This hub delivered message `id` to `recipients` (the origin is told).
    fn delivered(&self, id: Uuid, recipients: &[Uuid]) -> Result<(), StoreError>;
    /// An agent of this hub answered message `id` (the origin is told).
    fn replied(&self, id: Uuid, agent: Uuid, output: &str) -> Result<(), StoreError>;
    /// What the other hubs reported of message `id` so far.
    fn relayed(&self, id: Uuid) -> Result<Relayed, StoreError>;
    /// Deletes message `id` with its reports (the origin, once done waiting).
    fn forget(&self, id: Uuid) -> Result<(), StoreError>;
    /// Messages of other hubs this hub has not reported on (a notification missed while its
    /// listening connection reconnected).
    fn unreported(&self) -> Result<Vec<Uuid>, StoreError>;
    /// Deletes the messages of hubs that are gone (their sender crashed before deleting them)
    /// and those whose wait ended a minute ago or more; returns how many.
    fn forget_orphans(&self) -> Result<u64, StoreError>;
}
