//! `GET /api/v1/alerts`: the alerts now pending or firing, and the recent history of firing and
//! resolving (kept in the store). The same [`AlertEvent`] is the webhook's body (with a
//! Slack-compatible `text`) and an `alert` event on `/ws/events`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::enums::{AlertChange, AlertState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    pub rule: String,
    pub state: AlertState,
    pub severity: String,
    /// The metric at the last evaluation.
    #[schema(required)]
    pub value: Option<f64>,
    pub threshold: f64,
    /// When it entered its state (RFC 3339).
    pub since: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertEvent {
    pub rule: String,
    pub state: AlertChange,
    pub severity: String,
    #[schema(required)]
    pub value: Option<f64>,
    pub threshold: f64,
    pub message: String,
    /// RFC 3339.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    pub active: Vec<Alert>,
    /// Newest first.
    pub recent: Vec<AlertEvent>,
}
