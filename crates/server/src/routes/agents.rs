//! `/api/v1/agents`: the registry of connected (and recently disconnected) agents.

use axum::Json;
use axum::extract::{Path, State};
use hive_core::AgentId;
use hive_proto::api::{Agent, AgentList, ErrorBody};

use crate::actor::Command;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views;

fn parse_agent_id(id: &str) -> Result<AgentId, ApiError> {
    id.parse()
        .map_err(|e: hive_core::IdParseError| ApiError::invalid("id", e.to_string()))
}

/// Every agent seen since the hub started, with live state and counters.
#[utoipa::path(get, path = "/api/v1/agents", responses((status = 200, body = AgentList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<AgentList>, ApiError> {
    let agents = state.ask(|reply| Command::Agents { reply }).await?;
    Ok(Json(AgentList {
        items: agents.iter().map(views::agent).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}", params(("id" = String, Path)), responses(
    (status = 200, body = Agent), (status = 404, body = ErrorBody),
))]
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    let agent = parse_agent_id(&id)?;
    state
        .ask(|reply| Command::Agent { agent, reply })
        .await?
        .map(|a| Json(views::agent(&a)))
        .ok_or_else(|| ApiError::NotFound {
            what: format!("agent {agent}"),
        })
}

/// Stop giving the agent new tasks; it finishes what it runs, and is told so.
#[utoipa::path(post, path = "/api/v1/agents/{id}/drain", params(("id" = String, Path)), responses(
    (status = 200, body = Agent), (status = 404, body = ErrorBody),
    (status = 409, description = "The agent is offline", body = ErrorBody),
))]
pub async fn drain(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    let agent = parse_agent_id(&id)?;
    let snapshot = state.ask(|reply| Command::Drain { agent, reply }).await??;
    Ok(Json(views::agent(&snapshot)))
}
