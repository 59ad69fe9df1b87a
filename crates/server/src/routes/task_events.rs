//! `GET /api/v1/tasks/{id}/events`: one task followed as Server-Sent Events, for a client that
//! wants to watch a long task (a model's answer as it is written): `task` (the task as it stands,
//! first, and again once it finished, which ends the stream), `status` (each change of status,
//! an attempt starting or ending), `progress` (what its running attempt reports:
//! docs/protocol.md, "Progress"), and `skipped` when the client fell behind. The stream also
//! ends after `timeout_ms` (the client then opens it again), and when the token it was opened
//! with is revoked or expires.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as Sse, KeepAlive};
use futures_util::StreamExt;
use hive_core::TaskId;
use hive_proto::events::Event;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::tasks::{fetch, parse_task_id};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::events::Batch;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FollowParams {
    /// How long to follow before the stream ends, in ms (default and at most the hub's
    /// `max_wait`, 300000 unless configured).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 300_000)]
    timeout_ms: Option<String>,
}

/// Follow a task: its status and its running attempt's progress, as Server-Sent Events.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/events", operation_id = "follow_task", params(("id" = String, Path), FollowParams), responses(
    (status = 200, description = "Events `task` (JSON: the task, first and when it finished), `status` (an event of /ws/events), `progress` (ditto), `skipped` (`{\"count\": N}`)", content_type = "text/event-stream", body = String),
    (status = 404, body = hive_proto::api::ErrorBody),
))]
pub async fn follow(
    State(state): State<AppState>,
    who: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
    params: Result<Query<FollowParams>, QueryRejection>,
) -> Result<
    axum::response::sse::Sse<impl futures_util::Stream<Item = Result<Sse, Infallible>>>,
    ApiError,
> {
    let Query(params) = params.map_err(|e| ApiError::InvalidField {
        field: None,
        message: e.body_text(),
    })?;
    let id = parse_task_id(&id)?;
    let max = state.config.max_wait.as_millis() as u64;
    let timeout_ms = match params.timeout_ms.map(|t| t.parse::<u64>()) {
        None => max,
        Some(Ok(ms)) if ms <= max => ms,
        Some(_) => {
            return Err(ApiError::invalid(
                "timeout_ms",
                format!("must be a number from 0 to {max}"),
            ));
        }
    };
    // Subscribed before the first read, so that nothing between the two is missed.
    let events = state.events.subscribe();
    let task = fetch(&state, id).await?;
    let (sender, mut receiver) = mpsc::channel(64);
    let first = json_event("task", &task);
    let finished = task.status.is_finished();
    let _ = sender.try_send(first);
    if !finished {
        let deadline = Duration::from_millis(timeout_ms);
        let who = who.map(|axum::Extension(who)| who);
        tokio::spawn(async move {
            let relayed = relay(&state, id, events, &sender);
            // Over at the deadline, when the client goes, or when its token is revoked or expires
            // (as the other live streams are).
            tokio::select! {
                _ = tokio::time::timeout(deadline, relayed) => {}
                _ = sender.closed() => {}
                _ = crate::auth::token_ended(&state, who.as_ref()) => {}
            }
        });
    }
    let stream = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx)).map(Ok);
    Ok(axum::response::sse::Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Sse {
    Sse::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|_| Sse::default().event(name))
}

/// Passes the task's events on until it finishes, the client goes, or the hub stops.
async fn relay(
    state: &AppState,
    id: TaskId,
    mut events: broadcast::Receiver<Batch>,
    sender: &mpsc::Sender<Sse>,
) {
    let text = id.to_string();
    let stop = crate::state::stopped(state.shutdown.clone());
    tokio::pin!(stop);
    loop {
        let batch = tokio::select! {
            batch = events.recv() => batch,
            _ = &mut stop => return,
        };
        let mut ended = false;
        match batch {
            Ok(batch) => {
                for event in batch.iter() {
                    let out = match event {
                        Event::Progress { task_id, .. } if *task_id == text => {
                            json_event("progress", event)
                        }
                        Event::Task {
                            task_id, status, ..
                        } if *task_id == text => {
                            ended |= status.is_finished();
                            json_event("status", event)
                        }
                        _ => continue,
                    };
                    if sender.send(out).await.is_err() {
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(count)) => {
                let skipped = json_event("skipped", &serde_json::json!({ "count": count }));
                if sender.send(skipped).await.is_err() {
                    return;
                }
                // What was skipped may have been the end.
                ended = true;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
        if ended {
            match fetch(state, id).await {
                Ok(task) if task.status.is_finished() => {
                    let _ = sender.send(json_event("task", &task)).await;
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}
