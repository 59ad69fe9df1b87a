//! One swarm broadcast, from the hub that was asked: sent to the members connected here and,
//! among several hubs, published for the others to deliver to theirs (`hive_store::SwarmRelay`;
//! the receiving side is `membership::swarm`); replies are collected until every recipient
//! answered or the timeout passed. Which recipients there are elsewhere is known only once each
//! other hub reported its delivery, so the broadcast also waits for those reports (a hub that
//! died meanwhile never reports: the broadcast then runs to its timeout).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hive_core::AgentId;
use hive_proto::RawValue;
use hive_proto::protocol::HubMessage;
use hive_store::{StoreError, SwarmMessage, SwarmRelay};
use tokio::time::Instant;
use uuid::Uuid;

use crate::connections::Outbound;
use crate::framer::SharedMessage;
use crate::membership::blocking;
use crate::state::AppState;

/// How often the other hubs' reports are read without a notification (one can be missed while
/// the listening connection reconnects).
const REPORTS_BACKSTOP: Duration = Duration::from_millis(200);

/// What a broadcast reached.
pub struct Outcome {
    pub recipients: Vec<AgentId>,
    /// In the order they came, one per agent.
    pub replies: Vec<(AgentId, Box<RawValue>)>,
}

/// Sends message `id` to swarm `group` and collects the replies. `Ok(None)`: no agent of the
/// swarm is connected to any hub.
pub async fn run(
    state: &AppState,
    id: Uuid,
    group: &str,
    payload: Box<RawValue>,
    timeout: Duration,
) -> Result<Option<Outcome>, StoreError> {
    let deadline = Instant::now() + timeout;
    let relay = match (&state.relay, &state.hubs) {
        (Some(relay), Some(hubs)) => Some((relay.clone(), hubs.id())),
        _ => None,
    };
    // Published before anything is sent here: a broadcast the store refuses goes nowhere.
    let mut elsewhere = match &relay {
        Some((relay, me)) => {
            Some(Elsewhere::publish(state, relay, *me, id, group, &payload, timeout).await?)
        }
        None => None,
    };
    let frame = SharedMessage::new(HubMessage::Message {
        message_id: id.to_string(),
        group: group.to_string(),
        payload,
    });
    let mut local_replies = state.swarms.open(id);
    let mut recipients: Vec<AgentId> = state
        .swarms
        .members(group)
        .into_iter()
        .filter(|agent| {
            state
                .connections
                .send(*agent, Outbound::Shared(frame.clone()))
        })
        .collect();
    let mut replies: Vec<(AgentId, Box<RawValue>)> = Vec::new();
    let mut answered = HashSet::new();
    let mut backstop = tokio::time::interval(REPORTS_BACKSTOP);
    loop {
        let everyone_reported = elsewhere.as_ref().is_none_or(Elsewhere::all_reported);
        if everyone_reported && answered.len() >= recipients.len() {
            break;
        }
        tokio::select! {
            reply = local_replies.recv() => match reply {
                Some((agent, output)) => {
                    if answered.insert(agent) {
                        replies.push((agent, output));
                    }
                }
                None => break,
            },
            _ = backstop.tick(), if elsewhere.is_some() => {
                if let Some(elsewhere) = &mut elsewhere {
                    elsewhere.read(&mut recipients, &mut replies, &mut answered).await;
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
                    elsewhere.read(&mut recipients, &mut replies, &mut answered).await;
                }
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    state.swarms.close(id);
    if let Some(elsewhere) = elsewhere {
        elsewhere.forget(state);
    }
    if recipients.is_empty() {
        return Ok(None);
    }
    Ok(Some(Outcome {
        recipients,
        replies,
    }))
}

/// The broadcast as the other hubs report it.
struct Elsewhere {
    relay: Arc<dyn SwarmRelay>,
    id: Uuid,
    /// The hubs that were live when it was published: each reports its delivery.
    expected: Vec<Uuid>,
    reported: HashSet<Uuid>,
    wake: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl Elsewhere {
    async fn publish(
        state: &AppState,
        relay: &Arc<dyn SwarmRelay>,
        me: Uuid,
        id: Uuid,
        group: &str,
        payload: &RawValue,
        timeout: Duration,
    ) -> Result<Elsewhere, StoreError> {
        let wake = state.swarms.open_relayed(id);
        let message = SwarmMessage {
            id,
            group: group.to_string(),
            payload: payload.get().to_string(),
            origin: me,
            timeout_ms: timeout.as_millis() as u64,
        };
        let publishing = relay.clone();
        let published = blocking(move || publishing.publish(&message)).await;
        let expected = match published {
            Ok(expected) => expected,
            Err(e) => {
                state.swarms.close_relayed(id);
                return Err(e);
            }
        };
        Ok(Elsewhere {
            relay: relay.clone(),
            id,
            expected,
            reported: HashSet::new(),
            wake,
        })
    }

    fn all_reported(&self) -> bool {
        self.expected.iter().all(|hub| self.reported.contains(hub))
    }

    /// Reads the reports and adds what is new. A failed read is retried at the next wake.
    async fn read(
        &mut self,
        recipients: &mut Vec<AgentId>,
        replies: &mut Vec<(AgentId, Box<RawValue>)>,
        answered: &mut HashSet<AgentId>,
    ) {
        let (relay, id) = (self.relay.clone(), self.id);
        let Ok(relayed) = blocking(move || relay.relayed(id)).await else {
            return;
        };
        for (hub, reached) in relayed.delivered {
            if self.reported.insert(hub) {
                recipients.extend(reached.into_iter().map(AgentId));
            }
        }
        let known: HashMap<AgentId, ()> = recipients.iter().map(|a| (*a, ())).collect();
        for (agent, output) in relayed.replies {
            let agent = AgentId(agent);
            if known.contains_key(&agent)
                && !answered.contains(&agent)
                && let Ok(output) = RawValue::from_string(output)
            {
                answered.insert(agent);
                replies.push((agent, output));
            }
        }
    }

    /// Deletes the message with its reports (in the background: the answer does not wait).
    fn forget(self, state: &AppState) {
        state.swarms.close_relayed(self.id);
        let (relay, id) = (self.relay, self.id);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = relay.forget(id) {
                tracing::warn!(error = %e, message = %id, "cannot delete a swarm message");
            }
        });
    }
}
