//! One swarm broadcast, from the hub that was asked: sent to the members connected here and,
//! among several hubs, published for the others to deliver to theirs (`hive_store::SwarmRelay`;
//! the receiving side is `membership::swarm`); replies are collected until every recipient
//! answered or the timeout passed. Which recipients there are elsewhere is known only once each
//! other hub reported its delivery, so the broadcast also waits for those reports; a hub whose
//! lease ends meanwhile is no longer waited for, and hubs that never reported are counted in the
//! answer (`unreported_hubs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hive_core::AgentId;
use hive_proto::RawValue;
use hive_proto::protocol::HubMessage;
use hive_store::{Membership, StoreError, SwarmMessage, SwarmRelay};
use tokio::time::Instant;
use uuid::Uuid;

use crate::connections::Outbound;
use crate::framer::SharedMessage;
use crate::membership::blocking;
use crate::state::AppState;
use crate::swarms::Swarms;

/// How often the other hubs' reports are read without a notification (one can be missed while
/// the listening connection reconnects), and the hubs still waited for are checked to be live.
const REPORTS_BACKSTOP: Duration = Duration::from_millis(200);

/// How long publishing a message to the other hubs may take at most, whatever the broadcast's
/// own wait for replies.
const PUBLISH_LIMIT: Duration = Duration::from_secs(2);

/// What a broadcast reached.
pub struct Outcome {
    pub recipients: Vec<AgentId>,
    /// In the order they came, one per agent.
    pub replies: Vec<(AgentId, Box<RawValue>)>,
    /// Other hubs that were live when it was sent and did not report whom they reached before
    /// the timeout: their members, if any, are in neither `recipients` nor the replies.
    pub unreported_hubs: usize,
}

/// Sends message `id` to swarm `group` and collects the replies. `Ok(None)`: no agent of the
/// swarm is connected to any hub that reported.
pub async fn run(
    state: &AppState,
    id: Uuid,
    group: &str,
    payload: Box<RawValue>,
    timeout: Duration,
) -> Result<Option<Outcome>, StoreError> {
    let deadline = Instant::now() + timeout;
    let mut collecting = Collecting {
        swarms: state.swarms.clone(),
        id,
        recipients: Vec::new(),
        replies: Vec::new(),
        answered: HashSet::new(),
    };
    let mut local_replies = state.swarms.open(id);
    // Published before anything is sent here: a broadcast the store refuses goes nowhere.
    let mut elsewhere = match (&state.relay, &state.hubs) {
        (Some(relay), Some(hubs)) => {
            let message = SwarmMessage {
                id,
                group: group.to_string(),
                payload: payload.get().to_string(),
                origin: hubs.id(),
                timeout_ms: timeout.as_millis() as u64,
            };
            Some(Elsewhere::publish(state, relay, hubs, message, deadline).await?)
        }
        _ => None,
    };
    let frame = SharedMessage::new(HubMessage::Message {
        message_id: id.to_string(),
        group: group.to_string(),
        payload,
    });
    collecting.recipients = state
        .swarms
        .members(group)
        .into_iter()
        .filter(|agent| {
            state
                .connections
                .send(*agent, Outbound::Shared(frame.clone()))
        })
        .collect();
    let mut backstop =
        tokio::time::interval_at(Instant::now() + REPORTS_BACKSTOP, REPORTS_BACKSTOP);
    loop {
        let everyone_reported = elsewhere.as_ref().is_none_or(Elsewhere::all_reported);
        if everyone_reported && collecting.answered.len() >= collecting.recipients.len() {
            break;
        }
        tokio::select! {
            reply = local_replies.recv() => match reply {
                Some((agent, output)) => collecting.add(agent, output),
                None => break,
            },
            _ = backstop.tick(), if elsewhere.is_some() => {
                if let Some(elsewhere) = &mut elsewhere {
                    elsewhere.drop_lost_hubs(deadline).await;
                    elsewhere.read(&mut collecting, deadline).await;
                }
            },
            Some(()) = async {
                match &mut elsewhere {
                    Some(e) => e.wake.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(elsewhere) = &mut elsewhere {
                    while elsewhere.wake.try_recv().is_ok() {}
                    elsewhere.read(&mut collecting, deadline).await;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                // What was relayed just before the deadline still counts (a short last look).
                if let Some(elsewhere) = &mut elsewhere {
                    let last_look = Instant::now() + REPORTS_BACKSTOP;
                    elsewhere.read(&mut collecting, last_look).await;
                }
                break;
            },
        }
    }
    let unreported_hubs = elsewhere.as_ref().map_or(0, Elsewhere::unreported);
    if collecting.recipients.is_empty() && unreported_hubs == 0 {
        return Ok(None);
    }
    Ok(Some(Outcome {
        recipients: std::mem::take(&mut collecting.recipients),
        replies: std::mem::take(&mut collecting.replies),
        unreported_hubs,
    }))
}

/// The replies gathered so far; dropped (with the broadcast, answered or abandoned by its
/// client) it stops taking replies.
struct Collecting {
    swarms: Arc<Swarms>,
    id: Uuid,
    recipients: Vec<AgentId>,
    replies: Vec<(AgentId, Box<RawValue>)>,
    answered: HashSet<AgentId>,
}

impl Collecting {
    /// A reply counts once per recipient; one from an agent the message was not sent to does not.
    fn add(&mut self, agent: AgentId, output: Box<RawValue>) {
        if self.recipients.contains(&agent) && self.answered.insert(agent) {
            self.replies.push((agent, output));
        }
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        self.swarms.close(self.id);
    }
}

/// The broadcast as the other hubs report it. Dropped, it deletes the message and its reports
/// (in the background: the answer does not wait), also when the client went away mid-wait.
struct Elsewhere {
    relay: Arc<dyn SwarmRelay>,
    hubs: Arc<dyn Membership>,
    swarms: Arc<Swarms>,
    id: Uuid,
    /// The hubs that were live when it was published and have not reported yet.
    waiting_for: HashSet<Uuid>,
    wake: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl Elsewhere {
    async fn publish(
        state: &AppState,
        relay: &Arc<dyn SwarmRelay>,
        hubs: &Arc<dyn Membership>,
        message: SwarmMessage,
        deadline: Instant,
    ) -> Result<Elsewhere, StoreError> {
        let id = message.id;
        let wake = state.swarms.open_relayed(id);
        // From here on the message is deleted whatever happens (the guard's drop).
        let mut elsewhere = Elsewhere {
            relay: relay.clone(),
            hubs: hubs.clone(),
            swarms: state.swarms.clone(),
            id,
            waiting_for: HashSet::new(),
            wake,
        };
        // Sending is bounded apart from the wait for replies: a broadcast that waits for none
        // (timeout 0) is still delivered.
        let limit = deadline.max(Instant::now() + PUBLISH_LIMIT);
        let publishing = relay.clone();
        let published =
            tokio::time::timeout_at(limit, blocking(move || publishing.publish(&message)))
                .await
                .unwrap_or_else(|_| Err(StoreError::Database("publishing timed out".into())))?;
        elsewhere.waiting_for = published.into_iter().collect();
        Ok(elsewhere)
    }

    fn all_reported(&self) -> bool {
        self.waiting_for.is_empty()
    }

    fn unreported(&self) -> usize {
        self.waiting_for.len()
    }

    /// Stops waiting for hubs whose lease ended (killed, or left) before they reported.
    async fn drop_lost_hubs(&mut self, deadline: Instant) {
        if self.waiting_for.is_empty() {
            return;
        }
        let hubs = self.hubs.clone();
        let listed = tokio::time::timeout_at(deadline, blocking(move || hubs.hubs())).await;
        if let Ok(Ok(listed)) = listed {
            let live: HashSet<Uuid> = listed.iter().filter(|h| h.held).map(|h| h.id).collect();
            self.waiting_for.retain(|hub| live.contains(hub));
        }
    }

    /// Reads the reports (until `deadline` at most) and adds what is new. A failed read is
    /// retried at the next wake.
    async fn read(&mut self, collecting: &mut Collecting, deadline: Instant) {
        let (relay, id) = (self.relay.clone(), self.id);
        let relayed =
            match tokio::time::timeout_at(deadline, blocking(move || relay.relayed(id))).await {
                Ok(Ok(relayed)) => relayed,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, message = %id, "cannot read a broadcast's reports");
                    return;
                }
                Err(_) => return,
            };
        for (hub, reached) in relayed.delivered {
            if self.waiting_for.remove(&hub) {
                collecting
                    .recipients
                    .extend(reached.into_iter().map(AgentId));
            }
        }
        for (agent, output) in relayed.replies {
            if let Ok(output) = RawValue::from_string(output) {
                collecting.add(AgentId(agent), output);
            }
        }
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        self.swarms.close_relayed(self.id);
        let (relay, id) = (self.relay.clone(), self.id);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = relay.forget(id) {
                tracing::warn!(error = %e, message = %id, "cannot delete a swarm message");
            }
        });
    }
}
