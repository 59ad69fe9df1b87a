//! `/ws/events?capability=a,b`: task and agent state changes as they are committed, one frame
//! per commit, filtered by capability (none given: everything). See `hive_proto::events`.

use axum::Extension;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::auth::Principal;
use crate::state::AppState;
use crate::streams;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Comma-separated capabilities.
    capability: Option<String>,
}

pub async fn stream(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
    who: Option<Extension<Principal>>,
    ws: WebSocketUpgrade,
) -> Response {
    let capabilities: Vec<String> = query
        .capability
        .iter()
        .flat_map(|c| c.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    // `hive` answers a browser that sent its token as a subprotocol (see `crate::auth`).
    ws.protocols(["hive"])
        .on_upgrade(move |socket| forward(state, socket, capabilities, who.map(|w| w.0)))
}

async fn forward(
    state: AppState,
    mut socket: WebSocket,
    capabilities: Vec<String>,
    who: Option<Principal>,
) {
    let receiver = state.events.subscribe();
    let render = |batch: &Vec<hive_proto::events::Event>| {
        let events: Vec<_> = batch.iter().filter(|e| e.matches(&capabilities)).collect();
        (!events.is_empty())
            .then(|| serde_json::json!({ "type": "events", "events": events }).to_string())
    };
    let stop = crate::state::stopped(state.shutdown.clone());
    let close = tokio::select! {
        _ = streams::forward::<Vec<_>, _>(receiver, &mut socket, render) => None,
        _ = stop => None,
        end = crate::auth::token_ended(&state, who.as_ref()) => Some(streams::token_ended(end)),
    };
    streams::close(&mut socket, close).await;
}
