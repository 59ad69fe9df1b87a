//! `GET /api/v1/metrics` (the latest snapshot as JSON), `GET /metrics` (Prometheus) and
//! `/ws/performance` (every snapshot as it is taken, after the recent history).

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use hive_proto::metrics::MetricsSnapshot;

use crate::error::ApiError;
use crate::metrics::exposition;
use crate::state::AppState;
use crate::streams;

/// The hub's measurements over the last interval (1 s by default).
#[utoipa::path(get, path = "/api/v1/metrics", operation_id = "get_metrics", tag = "system",
    responses((status = 200, body = MetricsSnapshot)))]
pub async fn snapshot(State(state): State<AppState>) -> Result<Json<MetricsSnapshot>, ApiError> {
    // The loop publishes its first snapshot as it starts, before the listener opens.
    let latest = state.snapshots.latest().ok_or_else(off)?;
    Ok(Json((*latest).clone()))
}

fn off() -> ApiError {
    ApiError::NotFound {
        what: "metrics: this hub runs with metrics.enabled = false".into(),
    }
}

pub async fn prometheus(State(state): State<AppState>) -> Response {
    if !state.metrics.enabled() {
        return off().into_response();
    }
    let latest = state.snapshots.latest();
    let text = exposition::render(&state.metrics, &state.cache, latest.as_deref());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub async fn performance(
    State(state): State<AppState>,
    who: Option<axum::Extension<crate::auth::Principal>>,
    ws: WebSocketUpgrade,
) -> Response {
    // `hive` answers a browser that sent its token as a subprotocol (see `crate::auth`).
    ws.protocols(["hive"])
        .on_upgrade(move |socket| stream_snapshots(state, socket, who.map(|w| w.0)))
}

async fn stream_snapshots(
    state: AppState,
    mut socket: WebSocket,
    who: Option<crate::auth::Principal>,
) {
    let (history, receiver) = state.snapshots.subscribe();
    let history: Vec<&MetricsSnapshot> = history.iter().map(|s| &**s).collect();
    let first = serde_json::json!({ "type": "history", "snapshots": history });
    if streams::send(&mut socket, first.to_string()).await.is_err() {
        return;
    }
    let stop = crate::state::stopped(state.shutdown.clone());
    let render = |snapshot: &MetricsSnapshot| {
        Some(serde_json::json!({ "type": "snapshot", "snapshot": snapshot }).to_string())
    };
    let close = tokio::select! {
        _ = streams::forward(receiver, &mut socket, render) => None,
        _ = stop => None,
        end = crate::auth::token_ended(&state, who.as_ref()) => Some(streams::token_ended(end)),
    };
    streams::close(&mut socket, close).await;
}
