//! `/api/v1/agents`: the registry of connected (and recently disconnected) agents.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use hive_core::AgentId;
use hive_proto::api::{Agent, AgentList, ErrorBody};
use serde::Deserialize;

use crate::actor::Command;
use crate::agent_view;
use crate::error::ApiError;
use crate::state::AppState;

fn parse_agent_id(id: &str) -> Result<AgentId, ApiError> {
    id.parse()
        .map_err(|e: hive_core::IdParseError| ApiError::invalid("id", e.to_string()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AgentParams {
    /// 1-1000, default 1000.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The connected agents and the most recent offline ones (at most 1,000 are remembered), with
/// live state and counters, in id order (oldest first) and paged.
#[utoipa::path(get, path = "/api/v1/agents", operation_id = "list_agents", params(AgentParams), responses(
    (status = 200, body = AgentList), (status = 400, body = ErrorBody),
))]
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<AgentParams>, QueryRejection>,
) -> Result<JsonBody, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::InvalidField {
        field: None,
        message: e.body_text(),
    })?;
    let limit = super::tasks::page_limit(params.limit.as_deref(), super::tasks::MAX_PAGE)?;
    let after = params
        .cursor
        .map(|c| c.parse::<AgentId>())
        .transpose()
        .map_err(|e| ApiError::invalid("cursor", e.to_string()))?;
    let agents = state.ask(|reply| Command::Agents { reply }).await?;
    // Sorted by id, so a cursor is a position.
    let mut page: Vec<_> = agents
        .iter()
        .filter(|a| after.is_none_or(|after| a.id > after))
        .take(limit + 1)
        .collect();
    let next_cursor = (page.len() > limit).then(|| page[limit - 1].id.to_string());
    page.truncate(limit);
    let body = agent_view::agent_list(&page, next_cursor.as_deref(), model_of(&state).as_deref());
    Ok(JsonBody(body))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}", operation_id = "get_agent", params(("id" = String, Path)), responses(
    (status = 200, body = Agent), (status = 404, body = ErrorBody),
))]
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonBody, ApiError> {
    let agent = parse_agent_id(&id)?;
    state
        .ask(|reply| Command::Agent { agent, reply })
        .await?
        .map(|a| JsonBody(agent_view::agent(&a, model_of(&state).as_deref())))
        .ok_or_else(|| ApiError::NotFound {
            what: format!("agent {agent}"),
        })
}

/// Stop giving the agent new tasks; it finishes what it runs, and is told so.
#[utoipa::path(post, path = "/api/v1/agents/{id}/drain", operation_id = "drain_agent", params(("id" = String, Path)), responses(
    (status = 200, body = Agent), (status = 404, body = ErrorBody),
    (status = 409, description = "The agent is offline", body = ErrorBody),
))]
pub async fn drain(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonBody, ApiError> {
    set_draining(&state, &id, false).await
}

/// Undo a drain: the agent takes work again, and is told so (`resume`).
#[utoipa::path(post, path = "/api/v1/agents/{id}/undrain", operation_id = "undrain_agent", params(("id" = String, Path)), responses(
    (status = 200, body = Agent), (status = 404, body = ErrorBody),
    (status = 409, description = "The agent is offline", body = ErrorBody),
))]
pub async fn undrain(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<JsonBody, ApiError> {
    set_draining(&state, &id, true).await
}

async fn set_draining(state: &AppState, id: &str, undo: bool) -> Result<JsonBody, ApiError> {
    let agent = parse_agent_id(id)?;
    let snapshot = state
        .ask(|reply| Command::Drain { agent, undo, reply })
        .await??;
    Ok(JsonBody(agent_view::agent(
        &snapshot,
        model_of(state).as_deref(),
    )))
}

/// The neural routing model's latest weights, with that policy.
fn model_of(state: &AppState) -> Option<std::sync::Arc<hive_neural::Weights>> {
    state.neural.as_ref().map(|n| n.weights())
}

/// An agent or a page of agents as a response body, written by [`agent_view`] (serde's bytes
/// of [`Agent`] and [`AgentList`]).
pub struct JsonBody(Vec<u8>);

impl IntoResponse for JsonBody {
    fn into_response(self) -> Response {
        super::tasks::json_body(Bytes::from(self.0))
    }
}
