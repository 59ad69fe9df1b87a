//! `/api/v1/hubs`: the hubs sharing the store, their loads and leases (docs/scaling.md).

use axum::Json;
use axum::extract::State;
use hive_proto::api::{ErrorBody, HubList, HubView, LeaseState, StoreKind};
use hive_store::HubRecord;

use crate::actor::Command;
use crate::error::ApiError;
use crate::state::AppState;

/// The hubs sharing this hub's store. On SQLite, this hub alone.
#[utoipa::path(get, path = "/api/v1/hubs", operation_id = "list_hubs", responses(
    (status = 200, body = HubList),
    (status = 503, description = "The database cannot be read now", body = ErrorBody),
))]
pub async fn list(State(state): State<AppState>) -> Result<Json<HubList>, ApiError> {
    let Some(membership) = state.hubs.clone() else {
        return Ok(Json(alone(&state).await?));
    };
    let me = membership.id();
    let (records, pooled) = state
        .read(move |_| Ok((membership.hubs()?, membership.pooled()?)))
        .await?;
    let items = records.into_iter().map(|r| view(r, me)).collect();
    Ok(Json(HubList {
        store: StoreKind::Postgres,
        items,
        pooled,
    }))
}

fn view(record: HubRecord, me: uuid::Uuid) -> HubView {
    HubView {
        this: record.id == me,
        id: Some(record.id.to_string()),
        name: record.name,
        address: record.load.address,
        lease: if record.held {
            LeaseState::Held
        } else {
            LeaseState::Expired
        },
        lease_until_ms: Some(record.lease_until.0),
        heartbeat_at_ms: Some(record.heartbeat_at.0),
        started_at_ms: Some(record.started_at.0),
        agents: record.load.agents,
        slots: record.load.slots,
        tasks: record.load.tasks,
        queued: record.load.queued,
    }
}

/// A hub alone in its SQLite data directory, as its scheduler sees itself now.
async fn alone(state: &AppState) -> Result<HubList, ApiError> {
    let load = state.ask(|reply| Command::Overview { reply }).await?.load();
    Ok(HubList {
        store: StoreKind::Sqlite,
        items: vec![HubView {
            id: None,
            name: "local".into(),
            address: state.address.to_string(),
            this: true,
            lease: LeaseState::NoLease,
            lease_until_ms: None,
            heartbeat_at_ms: None,
            started_at_ms: None,
            agents: load.agents,
            slots: load.slots,
            tasks: load.tasks,
            queued: load.queued,
        }],
        pooled: 0,
    })
}
