//! The live worker connections: where to send an agent's frames.
//!
//! Shared by the WebSocket handlers (which add and remove themselves) and the after-commit
//! effects on the writer thread (which send assignments), hence a std Mutex held only for a map
//! operation.
//!
//! Each connection's queue is bounded ([`OUTBOUND_QUEUE`] items). A full queue means the agent
//! stopped reading (assignments are bounded by its slots; what else could pile up is swarm
//! broadcasts and error answers): the hub lets go of it instead of buffering without end. Its
//! sender is dropped, so its writer ends once it has written what is queued (or its write timeout
//! runs out), and the connection closes.

use std::collections::HashMap;
use std::sync::Mutex;

use std::sync::Arc;

use hive_core::AgentId;
use hive_proto::protocol::HubMessage;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, Receiver, Sender};

use crate::framer::SharedMessage;

#[derive(Debug)]
pub enum Outbound {
    Message(HubMessage),
    /// Assignments, in one `assign` frame (written from the tasks' specs: `assign_frame`).
    Assign(Vec<crate::assign_frame::Assigned>),
    /// One message for many recipients (swarm broadcasts), serialised once.
    Shared(Arc<SharedMessage>),
    /// Close the connection, with a WebSocket close code and reason when there is one to give.
    Close(Option<CloseReason>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// 1008: policy violation (too many invalid frames); 1009: a frame over the size limit.
    pub code: u16,
    pub reason: String,
}

/// Frames (or batches of assignments) queued for one connection at most.
pub const OUTBOUND_QUEUE: usize = 4_096;

/// A connection's queue.
pub fn outbound() -> (Sender<Outbound>, Receiver<Outbound>) {
    mpsc::channel(OUTBOUND_QUEUE)
}

#[derive(Default)]
pub struct Connections {
    senders: Mutex<HashMap<AgentId, Sender<Outbound>>>,
}

impl Connections {
    pub fn insert(&self, agent: AgentId, sender: Sender<Outbound>) {
        self.lock().insert(agent, sender);
    }

    pub fn remove(&self, agent: AgentId) {
        self.lock().remove(&agent);
    }

    /// Returns false when the agent is no longer connected, or has stopped reading and is let go
    /// (see the module's header).
    pub fn send(&self, agent: AgentId, message: Outbound) -> bool {
        let mut senders = self.lock();
        let Some(sender) = senders.get(&agent) else {
            return false;
        };
        match sender.try_send(message) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            // A broadcast finds it busy: it misses this one (and is listed as silent), but a
            // flood of broadcasts must not cost a worker its connection.
            Err(TrySendError::Full(Outbound::Shared(_))) => false,
            Err(TrySendError::Full(_)) => {
                senders.remove(&agent);
                tracing::warn!(%agent, queued = OUTBOUND_QUEUE, "agent stopped reading; letting go of it");
                false
            }
        }
    }

    pub fn close_all(&self) {
        let mut senders = self.lock();
        // A full queue: dropping the sender closes it just as well.
        senders.retain(|_, sender| sender.try_send(Outbound::Close(None)).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Sender<Outbound>>> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_frame() -> Outbound {
        Outbound::Message(HubMessage::Drain)
    }

    fn broadcast() -> Outbound {
        Outbound::Shared(crate::framer::SharedMessage::new(HubMessage::Resume))
    }

    #[test]
    fn an_agent_whose_queue_fills_is_let_go_and_its_queue_closes_after_what_it_holds() {
        let connections = Connections::default();
        let agent = AgentId(uuid::Uuid::from_u128(1));
        let (sender, mut queue) = outbound();
        connections.insert(agent, sender);
        for _ in 0..OUTBOUND_QUEUE {
            assert!(connections.send(agent, drain_frame()));
        }
        // Full: a broadcast misses it and the agent stays; anything else lets it go.
        assert!(!connections.send(agent, broadcast()));
        assert!(
            connections.lock().contains_key(&agent),
            "kept after a broadcast"
        );
        assert!(!connections.send(agent, drain_frame()));
        assert!(!connections.lock().contains_key(&agent), "let go");
        assert!(
            !connections.send(agent, drain_frame()),
            "no longer connected"
        );

        // Its writer still gets what was queued, then the end of the queue.
        let mut held = 0;
        while let Ok(frame) = queue.try_recv() {
            assert!(matches!(frame, Outbound::Message(HubMessage::Drain)));
            held += 1;
        }
        assert_eq!(held, OUTBOUND_QUEUE);
        assert!(matches!(
            queue.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn closing_all_reaches_a_full_queue_too() {
        let connections = Connections::default();
        let (reading, full) = (
            AgentId(uuid::Uuid::from_u128(1)),
            AgentId(uuid::Uuid::from_u128(2)),
        );
        let (sender, mut reading_queue) = outbound();
        connections.insert(reading, sender);
        let (sender, mut full_queue) = outbound();
        connections.insert(full, sender);
        for _ in 0..OUTBOUND_QUEUE {
            assert!(connections.send(full, drain_frame()));
        }
        connections.close_all();
        assert!(matches!(
            reading_queue.try_recv(),
            Ok(Outbound::Close(None))
        ));
        // The full one cannot take a close: its sender is dropped, which ends its queue.
        assert!(!connections.lock().contains_key(&full));
        assert!(connections.lock().contains_key(&reading));
        let mut held = 0;
        while full_queue.try_recv().is_ok() {
            held += 1;
        }
        assert_eq!(held, OUTBOUND_QUEUE);
        assert!(matches!(
            full_queue.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
