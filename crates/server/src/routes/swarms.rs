//! `/api/v1/swarms`: the swarms with their agents, and broadcast with reply collection.

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use hive_core::Capability;
use hive_proto::RawValue;
use hive_proto::api::{
    ErrorBody, NewSwarmMessage, Swarm, SwarmList, SwarmMessageOutcome, SwarmReply,
};
use hive_proto::protocol::HubMessage;
use uuid::Uuid;

use crate::connections::Outbound;
use crate::error::ApiError;
use crate::framer::SharedMessage;
use crate::json::ApiJson;
use crate::metrics::Count;
use crate::state::AppState;

const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const MAX_TIMEOUT_MS: u64 = 60_000;

/// Swarms with at least one connected agent.
#[utoipa::path(get, path = "/api/v1/swarms", responses((status = 200, body = SwarmList)))]
pub async fn list(State(state): State<AppState>) -> Json<SwarmList> {
    let items = state
        .swarms
        .all()
        .into_iter()
        .map(|(name, agents)| Swarm {
            name,
            agents: agents.iter().map(ToString::to_string).collect(),
        })
        .collect();
    Json(SwarmList { items })
}

/// Send one message to every agent of the swarm and collect their replies until all answered or
/// the timeout passed. Messages are not stored.
#[utoipa::path(post, path = "/api/v1/swarms/{group}/messages", params(("group" = String, Path)),
    request_body = NewSwarmMessage, responses(
    (status = 200, description = "Sent; the replies that came in time", body = SwarmMessageOutcome),
    (status = 404, description = "No connected agent is in this swarm", body = ErrorBody),
    (status = 400, body = ErrorBody),
))]
pub async fn broadcast(
    State(state): State<AppState>,
    Path(group): Path<String>,
    ApiJson(message): ApiJson<NewSwarmMessage>,
) -> Result<Json<SwarmMessageOutcome>, ApiError> {
    Capability::parse(&group, "group").map_err(|e| ApiError::from_validation(e, ""))?;
    let timeout_ms = message.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms > MAX_TIMEOUT_MS {
        return Err(ApiError::invalid(
            "timeout_ms",
            format!("must be at most {MAX_TIMEOUT_MS}"),
        ));
    }
    let members = state.swarms.members(&group);
    if members.is_empty() {
        return Err(ApiError::NotFound {
            what: format!("a connected agent in swarm {group:?}"),
        });
    }
    let id = Uuid::now_v7();
    let payload = message
        .payload
        .unwrap_or_else(|| RawValue::from_string("null".into()).expect("JSON"));
    let frame = HubMessage::Message {
        message_id: id.to_string(),
        group: group.clone(),
        payload,
    };
    // Serialised once per format; every recipient's queue shares the same bytes.
    let frame = SharedMessage::new(frame);
    let mut replies_rx = state.swarms.open(id);
    let recipients: Vec<_> = members
        .into_iter()
        .filter(|agent| {
            state
                .connections
                .send(*agent, Outbound::Shared(frame.clone()))
        })
        .collect();
    let mut replies = Vec::with_capacity(recipients.len());
    let mut answered = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    while answered.len() < recipients.len() {
        match tokio::time::timeout_at(deadline, replies_rx.recv()).await {
            Ok(Some((agent, output))) => {
                if answered.insert(agent) {
                    replies.push(SwarmReply {
                        agent_id: agent.to_string(),
                        output,
                    });
                }
            }
            _ => break,
        }
    }
    state.swarms.close(id);
    state.metrics.add(Count::SwarmMessages, 1);
    state
        .metrics
        .add(Count::SwarmDeliveries, replies.len() as u64);
    let missing = recipients
        .iter()
        .filter(|a| !answered.contains(a))
        .map(ToString::to_string)
        .collect();
    Ok(Json(SwarmMessageOutcome {
        message_id: id.to_string(),
        group,
        recipients: recipients.len() as u64,
        replies,
        missing,
    }))
}
