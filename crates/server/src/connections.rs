//! The live worker connections: where to send an agent's frames.
//!
//! Shared by the WebSocket handlers (which add and remove themselves) and the after-commit
//! effects on the writer thread (which send assignments), hence a std Mutex held only for a map
//! operation. Each connection's queue is unbounded, but what flows through it is bounded by the
//! agent's slots: one assignment per free slot, plus the odd cancel.

use std::collections::HashMap;
use std::sync::Mutex;

use std::sync::Arc;

use hive_core::AgentId;
use hive_proto::protocol::HubMessage;
use tokio::sync::mpsc::UnboundedSender;

use crate::framer::SharedMessage;

#[derive(Debug)]
pub enum Outbound {
    Message(HubMessage),
    /// One message for many recipients (swarm broadcasts), serialised once.
    Shared(Arc<SharedMessage>),
    /// Close the connection (the agent missed its heartbeats).
    Close,
}

#[derive(Default)]
pub struct Connections {
    senders: Mutex<HashMap<AgentId, UnboundedSender<Outbound>>>,
}

impl Connections {
    pub fn insert(&self, agent: AgentId, sender: UnboundedSender<Outbound>) {
        self.lock().insert(agent, sender);
    }

    pub fn remove(&self, agent: AgentId) {
        self.lock().remove(&agent);
    }

    /// Returns false when the agent is no longer connected.
    pub fn send(&self, agent: AgentId, message: Outbound) -> bool {
        self.lock()
            .get(&agent)
            .is_some_and(|sender| sender.send(message).is_ok())
    }

    pub fn close_all(&self) {
        for sender in self.lock().values() {
            let _ = sender.send(Outbound::Close);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, UnboundedSender<Outbound>>> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }
}
