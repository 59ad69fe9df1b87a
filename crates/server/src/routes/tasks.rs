//! `/api/v1/tasks`: submit (one or a batch), read, list, cancel, and wait for a task.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hive_core::TaskId;
use hive_proto::api::{self, BatchCreated, ErrorBody, NewTask, NewTaskBatch, Task, TaskList};
use hive_store::TaskFilter;
use serde::Deserialize;

use crate::actor::{Cancelled, Command, Submitted};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::query_cache::ListKey;
use crate::reads::Client;
use crate::state::AppState;
use crate::views;

/// Most tasks in one page of a listing.
pub const MAX_PAGE: usize = 1_000;

/// The `limit` query parameter of a listing: 1 to [`MAX_PAGE`], `default` when absent.
pub fn page_limit(text: Option<&str>, default: usize) -> Result<usize, ApiError> {
    match text.map(str::parse::<usize>) {
        None => Ok(default),
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("must be a number from 1 to {MAX_PAGE}"),
        )),
    }
}

pub fn parse_task_id(id: &str) -> Result<TaskId, ApiError> {
    id.parse()
        .map_err(|e: hive_core::IdParseError| ApiError::invalid("id", e.to_string()))
}

pub(super) async fn fetch(state: &AppState, id: TaskId) -> Result<Task, ApiError> {
    if let Some(task) = state.cache.finished(id) {
        return Ok((*task).clone());
    }
    let task = state
        .read(move |r| r.get_task(id))
        .await?
        .map(|task| views::stored_task(task, true))
        .ok_or_else(|| ApiError::NotFound {
            what: format!("task {id}"),
        })?;
    state.cache.keep_if_finished(id, &task);
    Ok(task)
}

async fn submit(
    state: &AppState,
    specs: Vec<hive_core::TaskSpec>,
    batch: bool,
) -> Result<Vec<Submitted>, ApiError> {
    // Kept only for the answer to a key taken meanwhile (empty, not allocated, without keys).
    let keys: Vec<(usize, String)> = specs
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, s.idempotency_key.clone()?)))
        .collect();
    let outcome = state
        .ask(|reply| Command::Submit {
            specs,
            batch,
            reply,
        })
        .await?;
    outcome.map_err(|e| key_taken(e, &keys, batch))
}

/// The answer to a request whose commit failed on a key another hub took meanwhile: 409
/// naming the key's field for the request that carried it; for the others committed with it,
/// the store error stays (503, try again).
fn key_taken(e: ApiError, keys: &[(usize, String)], batch: bool) -> ApiError {
    let ApiError::Store(hive_store::StoreError::IdempotencyKeyTaken(taken)) = &e else {
        return e;
    };
    match keys.iter().find(|(_, key)| key == taken) {
        Some((i, key)) => ApiError::KeyTaken {
            field: if batch {
                format!("tasks[{i}].idempotency_key")
            } else {
                "idempotency_key".into()
            },
            key: key.clone(),
        },
        None => e,
    }
}

/// Submit one task.
#[utoipa::path(post, path = "/api/v1/tasks", operation_id = "submit_task", request_body = NewTask, responses(
    (status = 201, description = "Created and committed", body = Task),
    (status = 200, description = "The idempotency key matched an earlier task, returned as is", body = Task),
    (status = 400, description = "Invalid input; `field` names the culprit", body = ErrorBody),
    (status = 409, description = "Several hubs: another hub's task took the idempotency key while this one was being committed (`idempotency_key_taken`); nothing was kept, and submitting again returns that task", body = ErrorBody),
    (status = 413, description = "Payload or body over the limit", body = ErrorBody),
    (status = 503, description = "Overloaded or the store refuses commits; `Retry-After` says when to try again", body = ErrorBody),
))]
pub async fn create(
    State(state): State<AppState>,
    who: Option<Extension<Principal>>,
    client: Client,
    ApiJson(new): ApiJson<NewTask>,
) -> Result<Response, ApiError> {
    let _admitted = state.admission.admit(1)?;
    let by = who.as_ref().map(|w| &w.name);
    let spec = views::spec_from_new(new, state.clock.now(), &state.config.limits, None, by)?;
    // Written now, so that the spec goes to the scheduler without a copy kept for the answer.
    let accepted = crate::task_view::Accepted::of(&spec);
    let outcome = submit(&state, vec![spec], false).await?;
    state.wrote(&client);
    let submitted = &outcome[0];
    if submitted.existing {
        Ok((StatusCode::OK, TaskJson(fetch(&state, submitted.id).await?)).into_response())
    } else {
        let body = accepted.with_status(submitted.status);
        Ok((StatusCode::CREATED, json_body(Bytes::from(body))).into_response())
    }
}

/// Submit many tasks in one transaction: all are accepted or none.
#[utoipa::path(post, path = "/api/v1/tasks/batch", operation_id = "submit_tasks", request_body = NewTaskBatch, responses(
    (status = 201, description = "All committed; ids in request order", body = BatchCreated),
    (status = 400, description = "Invalid input; `field` is e.g. `tasks[3].priority`", body = ErrorBody),
    (status = 409, description = "Several hubs: another hub's task took an idempotency key of the batch while it was being committed (`idempotency_key_taken`, `field` names it); nothing was kept", body = ErrorBody),
    (status = 413, description = "Payload or body over the limit", body = ErrorBody),
    (status = 503, description = "Overloaded or the store refuses commits; `Retry-After` says when to try again", body = ErrorBody),
))]
pub async fn create_batch(
    State(state): State<AppState>,
    who: Option<Extension<Principal>>,
    client: Client,
    ApiJson(batch): ApiJson<NewTaskBatch>,
) -> Result<(StatusCode, Json<BatchCreated>), ApiError> {
    if batch.tasks.is_empty() {
        return Err(ApiError::invalid("tasks", "must hold at least one task"));
    }
    // More than `hive_proto::api::MAX_BATCH_TASKS` were refused while parsing.
    let _admitted = state.admission.admit(batch.tasks.len())?;
    let now = state.clock.now();
    let specs = batch
        .tasks
        .into_iter()
        .enumerate()
        .map(|(i, new)| {
            let by = who.as_ref().map(|w| &w.name);
            views::spec_from_new(new, now, &state.config.limits, Some(i), by)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = submit(&state, specs, true).await?;
    state.wrote(&client);
    let ids = outcome.iter().map(|s| s.id.to_string()).collect();
    Ok((StatusCode::CREATED, Json(BatchCreated { ids })))
}

/// A task with its attempts and result.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", operation_id = "get_task", params(("id" = String, Path)), responses(
    (status = 200, body = Task), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody),
))]
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<TaskJson, ApiError> {
    let id = parse_task_id(&id)?;
    let mut task = fetch(&state, id).await?;
    if task.status == api::TaskStatus::Running {
        task.progress =
            state
                .events
                .progress
                .latest(id)
                .map(|latest| hive_proto::api::TaskProgress {
                    attempt: latest.attempt,
                    fraction: latest.fraction,
                    message: latest.message,
                    at: crate::views::rfc3339(latest.at),
                });
    }
    Ok(TaskJson(task))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[param(value_type = Option<api::TaskStatus>)]
    status: Option<String>,
    #[param(pattern = r"^[A-Za-z0-9_.:/-]+$", min_length = 1, max_length = 128)]
    capability: Option<String>,
    /// 1-1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Tasks, newest first, filtered and paged.
#[utoipa::path(get, path = "/api/v1/tasks", operation_id = "list_tasks", params(ListParams), responses(
    (status = 200, body = TaskList), (status = 400, body = ErrorBody),
))]
pub async fn list(
    State(state): State<AppState>,
    client: Client,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::InvalidField {
        field: None,
        message: e.body_text(),
    })?;
    let status = params
        .status
        .map(|s| s.parse::<api::TaskStatus>().map(views::domain_status))
        .transpose()
        .map_err(|e| ApiError::invalid("status", e.to_string()))?;
    let limit = page_limit(params.limit.as_deref(), 100)?;
    if let Some(capability) = &params.capability {
        hive_core::Capability::parse(capability, "capability")
            .map_err(|e| ApiError::from_validation(e, ""))?;
    }
    let before = params
        .cursor
        .map(|c| c.parse::<TaskId>())
        .transpose()
        .map_err(|e| ApiError::invalid("cursor", e.to_string()))?;
    let key = ListKey {
        status,
        capability: params.capability,
        cursor: before,
        limit,
    };
    if let Some(body) = state.cache.list(&key, state.may_use_cache(&client)) {
        return Ok(json_body(body));
    }
    // One more than the page: a next page is named only when there is one.
    let filter = TaskFilter {
        status: key.status,
        capability: key.capability.clone(),
        before,
        limit: limit + 1,
    };
    let began = std::time::Instant::now();
    let mut tasks = state
        .read_stale(&client, move |r| r.list_tasks(&filter))
        .await?;
    let next_cursor = (tasks.len() > limit).then(|| tasks[limit - 1].spec.id.to_string());
    tasks.truncate(limit);
    let items: Vec<Task> = tasks
        .into_iter()
        .map(|task| views::stored_task(task, false))
        .collect();
    let body = Bytes::from(hive_proto::fast_json::task_list(
        &items,
        next_cursor.as_deref(),
    ));
    state.cache.keep_list(key, began, body.clone());
    Ok(json_body(body))
}

/// A JSON body encoded already (a cached listing, a view written by `hive_proto::fast_json`).
pub(super) fn json_body(body: Bytes) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// A task as a response body, written by [`hive_proto::fast_json::task`] (serde's bytes, in a
/// fraction of the instructions: every single submit answers with one).
pub struct TaskJson(pub Task);

impl IntoResponse for TaskJson {
    fn into_response(self) -> Response {
        json_body(Bytes::from(hive_proto::fast_json::task(&self.0)))
    }
}

/// Cancel a task that has not finished; a running attempt is told to stop.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", operation_id = "cancel_task", params(("id" = String, Path)), responses(
    (status = 200, description = "Cancelled", body = Task),
    (status = 202, body = Task,
        description = "Another hub holds the task and was asked to cancel it; not done yet \
            (after 1.5 leases: its hub may be gone, its tasks not yet taken over)"),
    (status = 404, body = ErrorBody),
    (status = 409, description = "The task already finished", body = ErrorBody),
))]
pub async fn cancel(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
) -> Result<(StatusCode, TaskJson), ApiError> {
    let task = parse_task_id(&id)?;
    let cancelled = cancel_task(&state, task).await;
    if cancelled.is_ok() {
        // The cancel may have been committed by the hub holding the task, at a position this
        // hub does not know: the client's reads go to the primary for a while.
        state.own_writes.wrote(&client, u64::MAX);
    }
    cancelled
}

/// Cancels `task` here, or asks the hub holding it and waits to see it done (up to
/// [`forwarded_cancel_wait`]).
async fn cancel_task(state: &AppState, task: TaskId) -> Result<(StatusCode, TaskJson), ApiError> {
    let deadline = tokio::time::Instant::now() + forwarded_cancel_wait(state);
    let mut forwarded = false;
    loop {
        // Parked before asking, so that the end of a cancel forwarded to another hub wakes it.
        let mut parked = state.waiters.park(task);
        let outcome = state.ask(|reply| Command::Cancel { task, reply }).await;
        let ended_meanwhile = match outcome {
            Ok(Ok(Cancelled::Requested)) => {
                forwarded = true;
                false
            }
            // Asked again after a forward: it ended meanwhile; what it became decides, below.
            Ok(Err(ApiError::Conflict { .. })) if forwarded => true,
            outcome => {
                drop(parked);
                outcome??;
                return Ok((StatusCode::OK, TaskJson(fetch(state, task).await?)));
            }
        };
        if !ended_meanwhile {
            // Asked again now and then: a hub in the middle of handing the task to the pool,
            // or a lost hub's task not yet taken over, had nobody act on the first request.
            let again = (tokio::time::Instant::now() + CANCEL_AGAIN_AFTER).min(deadline);
            tokio::select! {
                _ = parked.woken() => {}
                _ = tokio::time::sleep_until(again) => {}
                _ = crate::state::stopped(state.shutdown.clone()) => {}
            }
        }
        drop(parked);
        let current = fetch(state, task).await?;
        match current.status {
            api::TaskStatus::Cancelled => return Ok((StatusCode::OK, TaskJson(current))),
            status if status.is_finished() => {
                return Err(ApiError::Conflict {
                    message: format!("task {task} is already {status}"),
                });
            }
            _ if tokio::time::Instant::now() >= deadline || *state.shutdown.borrow() => {
                return Ok((StatusCode::ACCEPTED, TaskJson(current)));
            }
            _ => {}
        }
    }
}

/// How often a cancel forwarded to another hub is asked again while it waits.
const CANCEL_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// How long a cancel forwarded to the hub holding the task waits to see it done: long enough
/// for a lost hub's tasks to be taken over (its lease and a heartbeat), 5 s at least.
fn forwarded_cancel_wait(state: &AppState) -> Duration {
    let lease = state
        .config
        .postgres
        .as_ref()
        .map_or(Duration::ZERO, |pg| pg.hub.lease);
    (lease + lease / 2).max(Duration::from_secs(5))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// How long to wait for the task to finish, in ms (default 30000, at most the hub's
    /// `max_wait`, 300000 unless configured).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 300_000)]
    timeout_ms: Option<String>,
}

/// Long-poll: answers as soon as the task finishes, or with its current state at the timeout.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/wait", operation_id = "wait_task", params(("id" = String, Path), WaitParams), responses(
    (status = 200, description = "The task, finished or as it stands at the timeout", body = Task),
    (status = 404, body = ErrorBody),
))]
pub async fn wait(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<WaitParams>, QueryRejection>,
) -> Result<TaskJson, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::InvalidField {
        field: None,
        message: e.body_text(),
    })?;
    let id = parse_task_id(&id)?;
    let max = state.config.max_wait.as_millis() as u64;
    let timeout_ms = match params.timeout_ms {
        None => 30_000.min(max),
        Some(text) => match text.parse::<u64>() {
            Ok(ms) if ms <= max => ms,
            _ => {
                return Err(ApiError::invalid(
                    "timeout_ms",
                    format!("must be a number from 0 to {max}"),
                ));
            }
        },
    };
    // Park before reading, so an end committed in between still wakes us.
    let mut parked = state.waiters.park(id);
    let task = fetch(&state, id).await?;
    if task.status.is_finished() {
        return Ok(TaskJson(task));
    }
    tokio::select! {
        _ = parked.woken() => {}
        _ = tokio::time::sleep(Duration::from_millis(timeout_ms)) => {}
        _ = crate::state::stopped(state.shutdown.clone()) => {}
    }
    drop(parked);
    Ok(TaskJson(fetch(&state, id).await?))
}

#[cfg(test)]
mod tests {
    use hive_store::StoreError;

    use super::*;

    #[test]
    fn a_key_taken_meanwhile_is_a_409_for_the_request_that_carried_it_only() {
        let taken = || ApiError::Store(StoreError::IdempotencyKeyTaken("k".into()));
        let keys = vec![(0, "a".to_string()), (3, "k".to_string())];
        match key_taken(taken(), &keys, true) {
            ApiError::KeyTaken { field, key } => {
                assert_eq!(
                    (field.as_str(), key.as_str()),
                    ("tasks[3].idempotency_key", "k")
                );
            }
            other => panic!("{other:?}"),
        }
        let one = vec![(0, "k".to_string())];
        let answer = key_taken(taken(), &one, false);
        assert!(
            matches!(&answer, ApiError::KeyTaken { field, .. } if field == "idempotency_key"),
            "{answer:?}"
        );
        assert_eq!(answer.into_response().status(), StatusCode::CONFLICT);
        // A request committed with it but without the key: the store error, to try again.
        let other = key_taken(taken(), &keys[..1], true);
        assert!(matches!(other, ApiError::Store(_)), "{other:?}");
        assert_eq!(
            other.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
