//! `/ws/events`: the hub's state changes as they are committed, in frames of
//! `{"type":"events","events":[...]}` (one frame per commit, so a busy hub sends fewer, larger
//! frames), or `{"type":"skipped","count":N}` when the client fell behind by N frames.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::enums::{AgentState, AttemptOutcome, TaskStatus};

/// One state change (in the OpenAPI document's components as `Event`, though no REST route
/// answers it: the live streams carry it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A task's status changed: created (`waiting`, `queued` or `failed`), `queued` again (ready,
    /// or retrying), `running` (an attempt started), or finished.
    Task {
        task_id: String,
        capability: String,
        status: TaskStatus,
        /// The attempt that started or ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_id: Option<String>,
        /// How the attempt ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<AttemptOutcome>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// RFC 3339.
        at: String,
    },
    /// An agent connected, started draining, or went offline.
    Agent {
        agent_id: String,
        name: String,
        state: AgentState,
        capabilities: Vec<String>,
    },
    /// A running attempt's progress, as its agent reported it (docs/protocol.md, "Progress").
    Progress {
        task_id: String,
        capability: String,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fraction: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Text to append to the attempt's partial output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// RFC 3339.
        at: String,
    },
    /// An alert started or stopped firing (sent to every subscriber, whatever the filter).
    Alert(crate::alerts::AlertEvent),
}

impl Event {
    /// Whether a client that asked for `capabilities` (none: all) wants this event. An agent
    /// event matches when the agent has one of them.
    pub fn matches(&self, capabilities: &[String]) -> bool {
        if capabilities.is_empty() {
            return true;
        }
        match self {
            Event::Task { capability, .. } | Event::Progress { capability, .. } => {
                capabilities.contains(capability)
            }
            Event::Agent {
                capabilities: has, ..
            } => has.iter().any(|c| capabilities.contains(c)),
            Event::Alert(_) => true,
        }
    }
}
