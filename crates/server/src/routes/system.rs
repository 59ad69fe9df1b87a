//! Hub-wide endpoints: status counts, health and readiness probes, the OpenAPI document.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hive_core::{AgentState, TaskStatus};
use hive_proto::api::{Health, HealthStatus, Status};

use crate::actor::Command;
use crate::error::ApiError;
use crate::reads::Client;
use crate::state::AppState;
use crate::views;

/// Tasks by status, agents by state, queue depth per capability.
#[utoipa::path(get, path = "/api/v1/status", operation_id = "get_status", responses((status = 200, body = Status)))]
pub async fn status(
    State(state): State<AppState>,
    client: Client,
) -> Result<Json<Status>, ApiError> {
    let overview = state.ask(|reply| Command::Overview { reply }).await?;
    let counts = match state.cache.counts(state.may_use_cache(&client)) {
        Some(counts) => counts,
        None => {
            let began = std::time::Instant::now();
            let counts = Arc::new(state.read_stale(&client, |r| r.count_by_status()).await?);
            state.cache.keep_counts(began, counts.clone());
            counts
        }
    };
    let mut tasks: std::collections::BTreeMap<String, u64> =
        TaskStatus::ALL.iter().map(|s| (s.to_string(), 0)).collect();
    for &(status, n) in counts.iter() {
        tasks.insert(status.to_string(), n);
    }
    let mut agents: std::collections::BTreeMap<String, u64> =
        AgentState::ALL.iter().map(|s| (s.to_string(), 0)).collect();
    for agent in &overview.agents {
        *agents.entry(agent.state.to_string()).or_default() += 1;
    }
    Ok(Json(Status {
        tasks,
        agents,
        queue_depth: overview
            .queue_depths
            .into_iter()
            .map(|(c, n)| (c, n as u64))
            .collect(),
        routing_policy: views::routing_policy(state.config.routing.policy),
    }))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Ok,
    })
}

/// The hub recovered its state, its scheduler answers and its store takes commits; 503 while
/// shutting down or while the store refuses commits.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let stopping = *state.shutdown.borrow();
    let answers = !stopping && matches!(state.ask(|reply| Command::Ping { reply }).await, Ok(true));
    if answers {
        (
            StatusCode::OK,
            Json(Health {
                status: HealthStatus::Ready,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: HealthStatus::Unavailable,
            }),
        )
    }
}

pub async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(crate::routes::openapi::for_hub(&state.config))
}
