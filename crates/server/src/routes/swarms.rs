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
use uuid::Uuid;

use crate::error::ApiError;
use crate::json::ApiJson;
use crate::metrics::Count;
use crate::state::AppState;

const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const MAX_TIMEOUT_MS: u64 = 60_000;

/// Swarms with at least one connected agent.
#[utoipa::path(get, path = "/api/v1/swarms", operation_id = "list_swarms", responses((status = 200, body = SwarmList)))]
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

/// Send one message to every agent of the swarm, on every hub sharing the store, and collect
/// their replies until all answered or the timeout passed. Messages are kept only while the
/// broadcast waits.
#[utoipa::path(post, path = "/api/v1/swarms/{group}/messages", operation_id = "broadcast", params(("group" = String, Path)),
    request_body = NewSwarmMessage, responses(
    (status = 200, description = "Sent; the replies that came in time", body = SwarmMessageOutcome),
    (status = 404, description = "No connected agent is in this swarm", body = ErrorBody),
    (status = 400, body = ErrorBody),
    (status = 413, description = "The payload is over `tasks.max_payload_bytes`", body = ErrorBody),
    (status = 503, description = "Several hubs: the store could not pass the message on", body = ErrorBody),
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
    let id = Uuid::now_v7();
    let payload = message
        .payload
        .unwrap_or_else(|| RawValue::from_string("null".into()).expect("JSON"));
    // The bounds of a task's payload: the message goes to every member of the swarm.
    state
        .config
        .limits
        .check_payload(payload.get())
        .map_err(|e| ApiError::from_validation(e, ""))?;
    let timeout = Duration::from_millis(timeout_ms);
    let Some(outcome) = crate::broadcast::run(&state, id, &group, payload, timeout).await? else {
        return Err(ApiError::NotFound {
            what: format!("a connected agent in swarm {group:?}"),
        });
    };
    state.metrics.add(Count::SwarmMessages, 1);
    state
        .metrics
        .add(Count::SwarmDeliveries, outcome.replies.len() as u64);
    let answered: HashSet<_> = outcome.replies.iter().map(|(agent, _)| *agent).collect();
    let missing = outcome
        .recipients
        .iter()
        .filter(|a| !answered.contains(a))
        .map(ToString::to_string)
        .collect();
    let recipients = outcome.recipients.len() as u64;
    let unreported_hubs = outcome.unreported_hubs as u64;
    let replies = outcome
        .replies
        .into_iter()
        .map(|(agent, output)| SwarmReply {
            agent_id: agent.to_string(),
            output,
        })
        .collect();
    Ok(Json(SwarmMessageOutcome {
        message_id: id.to_string(),
        group,
        recipients,
        replies,
        missing,
        unreported_hubs,
    }))
}
