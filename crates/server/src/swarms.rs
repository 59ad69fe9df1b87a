//! Swarms: named groups of connected agents, and broadcast messages with reply collection.
//!
//! Messages are ephemeral, like pub/sub: kept (among several hubs, in the database) only while
//! the broadcast waits, and an agent that is not connected when one is sent never sees it. Durable work is a task. Membership comes from `hello` and ends
//! with the connection. std Mutexes: held for a map operation, never across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use hive_core::AgentId;
use hive_proto::RawValue;
use tokio::sync::mpsc;
use uuid::Uuid;

pub type Reply = (AgentId, Box<RawValue>);

#[derive(Default)]
pub struct Swarms {
    members: Mutex<BTreeMap<String, Vec<AgentId>>>,
    /// Replies of the broadcasts in flight, by message id.
    pending: Mutex<HashMap<Uuid, mpsc::UnboundedSender<Reply>>>,
    /// Broadcasts sent from here that other hubs relay: woken when one of them reports.
    relayed: Mutex<HashMap<Uuid, mpsc::UnboundedSender<()>>>,
    /// Messages of other hubs delivered here lately, and when (see `open_once`).
    delivered: Mutex<HashMap<Uuid, std::time::Instant>>,
}

/// How long a delivered message is remembered: past the longest wait a broadcast may have.
const REMEMBER_DELIVERED: std::time::Duration = std::time::Duration::from_secs(120);

impl Swarms {
    pub fn join(&self, agent: AgentId, groups: &[String]) {
        let mut members = lock(&self.members);
        for group in groups {
            members.entry(group.clone()).or_default().push(agent);
        }
    }

    pub fn leave(&self, agent: AgentId, groups: &[String]) {
        let mut members = lock(&self.members);
        for group in groups {
            if let Some(agents) = members.get_mut(group) {
                agents.retain(|a| *a != agent);
                if agents.is_empty() {
                    members.remove(group);
                }
            }
        }
    }

    pub fn members(&self, group: &str) -> Vec<AgentId> {
        lock(&self.members).get(group).cloned().unwrap_or_default()
    }

    pub fn all(&self) -> Vec<(String, Vec<AgentId>)> {
        lock(&self.members)
            .iter()
            .map(|(g, a)| (g.clone(), a.clone()))
            .collect()
    }

    /// Starts collecting the replies to message `id`.
    pub fn open(&self, id: Uuid) -> mpsc::UnboundedReceiver<Reply> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(id, tx);
        rx
    }

    pub fn close(&self, id: Uuid) {
        lock(&self.pending).remove(&id);
    }

    /// Like [`open`](Self::open) for a message another hub sent, unless it is being delivered
    /// here or was lately (`None`): a notification and the look for missed messages after a
    /// reconnect may both name it.
    pub fn open_once(&self, id: Uuid) -> Option<mpsc::UnboundedReceiver<Reply>> {
        let mut pending = lock(&self.pending);
        let mut delivered = lock(&self.delivered);
        if pending.contains_key(&id) || delivered.contains_key(&id) {
            return None;
        }
        let now = std::time::Instant::now();
        delivered.retain(|_, at| now.duration_since(*at) < REMEMBER_DELIVERED);
        delivered.insert(id, now);
        let (tx, rx) = mpsc::unbounded_channel();
        pending.insert(id, tx);
        Some(rx)
    }

    /// Starts waiting for other hubs' reports on message `id` (see `hive_store::SwarmRelay`).
    pub fn open_relayed(&self, id: Uuid) -> mpsc::UnboundedReceiver<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.relayed).insert(id, tx);
        rx
    }

    pub fn close_relayed(&self, id: Uuid) {
        lock(&self.relayed).remove(&id);
    }

    /// Another hub reported on message `id`: its broadcast reads the reports again.
    pub fn wake_relayed(&self, id: Uuid) {
        if let Some(wake) = lock(&self.relayed).get(&id) {
            let _ = wake.send(());
        }
    }

    /// Hands a reply to the broadcast waiting for it; a late or unknown one is dropped.
    pub fn reply(&self, message_id: &str, agent: AgentId, output: Box<RawValue>) {
        let Ok(id) = Uuid::parse_str(message_id) else {
            return;
        };
        if let Some(sender) = lock(&self.pending).get(&id) {
            let _ = sender.send((agent, output));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
