//! `GET /api/v1/alerts`: what is pending or firing now, and the recent history.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use hive_proto::alerts::{AlertEvent, AlertList};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::rfc3339;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// History entries, newest first (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/alerts", operation_id = "list_alerts", tag = "system", params(AlertsQuery),
    responses((status = 200, body = AlertList), (status = 400, body = hive_proto::api::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<AlertsQuery>, QueryRejection>,
) -> Result<Json<AlertList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidField {
        field: Some("limit".into()),
        message: e.body_text(),
    })?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let alerts = state.alerts.clone();
    let recent = tokio::task::spawn_blocking(move || alerts.history(limit))
        .await
        .map_err(|_| ApiError::ShuttingDown)?
        .map_err(ApiError::Store)?;
    Ok(Json(AlertList {
        active: state.alerts.active(),
        recent: recent
            .into_iter()
            // Only the hub writes these rows, from the enum; a row edited by hand to another
            // word is left out rather than failing the list.
            .filter_map(|r| {
                Some(AlertEvent {
                    state: r.state.parse().ok()?,
                    rule: r.rule,
                    severity: r.severity,
                    value: r.value,
                    threshold: r.threshold,
                    message: r.message,
                    at: rfc3339(r.at),
                })
            })
            .collect(),
    }))
}
