//! Swarm broadcasts another hub published (`hive_store::SwarmRelay`, the sending side is
//! `crate::broadcast`): delivered to the members connected here, whom they reached reported, and
//! their replies relayed, for as long as the sender waits.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hive_core::AgentId;
use hive_proto::RawValue;
use hive_proto::protocol::HubMessage;
use hive_store::SwarmRelay;
use tokio::time::Instant;
use uuid::Uuid;

use super::blocking;
use crate::connections::{Connections, Outbound};
use crate::framer::SharedMessage;
use crate::swarms::Swarms;

/// What delivering needs of the hub.
#[derive(Clone)]
pub struct SwarmParts {
    pub relay: Arc<dyn SwarmRelay>,
    pub swarms: Arc<Swarms>,
    pub connections: Arc<Connections>,
    /// This hub's id: its own broadcasts are not delivered twice.
    pub me: Uuid,
}

/// Delivers message `id` here and relays the replies (a task of its own per message).
pub async fn deliver(parts: SwarmParts, id: Uuid) {
    // Delivered once: a notification and the rescan after a reconnect may both name it.
    let Some(mut replies) = parts.swarms.open_once(id) else {
        return;
    };
    let relay = parts.relay.clone();
    let message = match blocking(move || relay.message(id)).await {
        Ok(Some(message)) if message.origin != parts.me => message,
        // Gone (its sender stopped waiting), or this hub's own.
        Ok(_) => return parts.swarms.close(id),
        Err(e) => {
            tracing::warn!(error = %e, message = %id, "cannot read a swarm message to deliver");
            return report_nobody(&parts, id).await;
        }
    };
    let Ok(payload) = RawValue::from_string(message.payload) else {
        tracing::warn!(message = %id, "a swarm message whose payload is not JSON");
        return report_nobody(&parts, id).await;
    };
    let deadline = Instant::now() + Duration::from_millis(message.timeout_ms);
    let frame = SharedMessage::new(HubMessage::Message {
        message_id: id.to_string(),
        group: message.group.clone(),
        payload,
    });
    let recipients: Vec<AgentId> = parts
        .swarms
        .members(&message.group)
        .into_iter()
        .filter(|agent| {
            parts
                .connections
                .send(*agent, Outbound::Shared(frame.clone()))
        })
        .collect();
    let reached: Vec<Uuid> = recipients.iter().map(|a| a.0).collect();
    let relay = parts.relay.clone();
    if let Err(e) = blocking(move || relay.delivered(id, &reached)).await {
        tracing::warn!(error = %e, message = %id, "cannot report a swarm delivery");
    }
    let mut answered = HashSet::new();
    while answered.len() < recipients.len() {
        match tokio::time::timeout_at(deadline, replies.recv()).await {
            Ok(Some((agent, output))) => {
                if recipients.contains(&agent) && answered.insert(agent) {
                    let relay = parts.relay.clone();
                    let output = output.get().to_string();
                    if let Err(e) = blocking(move || relay.replied(id, agent.0, &output)).await {
                        tracing::warn!(error = %e, message = %id, "cannot relay a swarm reply");
                    }
                }
            }
            _ => break,
        }
    }
    parts.swarms.close(id);
}

/// Reports that this hub delivered message `id` to nobody, so that its sender does not wait for
/// this hub to its timeout.
async fn report_nobody(parts: &SwarmParts, id: Uuid) {
    let relay = parts.relay.clone();
    if let Err(e) = blocking(move || relay.delivered(id, &[])).await {
        tracing::warn!(error = %e, message = %id, "cannot report a swarm delivery");
    }
    parts.swarms.close(id);
}

/// Delivers the messages of other hubs this hub has not reported on: a notification may have
/// been missed while the listening connection reconnected.
pub async fn deliver_missed(parts: SwarmParts) {
    let relay = parts.relay.clone();
    match blocking(move || relay.unreported()).await {
        Ok(ids) => {
            for id in ids {
                tokio::spawn(deliver(parts.clone(), id));
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot look for missed swarm messages"),
    }
}

/// Deletes the messages of hubs that are gone (they died waiting for replies).
pub async fn sweep(relay: Arc<dyn SwarmRelay>) {
    match blocking(move || relay.forget_orphans()).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(n, "deleted swarm messages of hubs that are gone"),
        Err(e) => tracing::warn!(error = %e, "cannot delete the swarm messages of lost hubs"),
    }
}
