//! Column encodings shared by both backends' readers and writers.

use hive_core::{AgentId, TaskEnd, TaskId, TaskStatus, Timestamp};

use crate::StoreError;

pub fn ts(t: Timestamp) -> i64 {
    t.0 as i64
}

pub fn from_ts(v: i64) -> Timestamp {
    Timestamp(v.max(0) as u64)
}

pub fn task_id(bytes: &[u8]) -> Result<TaskId, StoreError> {
    bytes
        .try_into()
        .map(TaskId::from_bytes)
        .map_err(|_| StoreError::Corrupt(format!("task id of {} bytes", bytes.len())))
}

pub fn agent_id(bytes: &[u8]) -> Result<AgentId, StoreError> {
    bytes
        .try_into()
        .map(AgentId::from_bytes)
        .map_err(|_| StoreError::Corrupt(format!("agent id of {} bytes", bytes.len())))
}

pub fn status(s: &str) -> Result<TaskStatus, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown task status {s:?}")))
}

pub fn join_ids(ids: &[TaskId]) -> Option<String> {
    (!ids.is_empty()).then(|| {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

pub fn split_ids(text: Option<String>) -> Result<Vec<TaskId>, StoreError> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => text
            .split(',')
            .map(|s| s.parse().map_err(|e| StoreError::Corrupt(format!("{e}"))))
            .collect(),
    }
}

/// A task's stored hints (`features`, a JSON object of numbers; NULL for none).
pub fn features_from(
    text: Option<String>,
) -> Result<Option<std::sync::Arc<[hive_core::Feature]>>, StoreError> {
    match text {
        None => Ok(None),
        Some(text) => hive_core::Feature::from_json(&text)
            .map(Some)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("features {text:?} is not an object of numbers"))
            }),
    }
}

/// A list of names (an agent token's capabilities or swarms) as kept: JSON, NULL for "any".
pub fn list_to_json(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|l| serde_json::to_string(l).expect("strings serialise"))
}

pub fn list_from_json(text: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

/// How a task ended, from its stored status, result and error; `None` while it is not finished.
pub fn task_end(
    status_text: &str,
    result: Option<String>,
    error: Option<String>,
) -> Result<Option<TaskEnd>, StoreError> {
    Ok(match status(status_text)? {
        TaskStatus::Succeeded => Some(TaskEnd::Succeeded(
            result.as_deref().unwrap_or("null").into(),
        )),
        status if status.is_terminal() => Some(TaskEnd::Unsuccessful {
            status,
            error: error.as_deref().unwrap_or(status.as_str()).into(),
        }),
        _ => None,
    })
}

/// An agent's capabilities (name -> level) and per-capability counters, as the JSON text kept in
/// its row.
pub fn agent_json(agent: &hive_core::AgentSnapshot) -> (String, String) {
    let capabilities: serde_json::Map<String, serde_json::Value> = agent
        .spec
        .capabilities
        .iter()
        .map(|(c, l)| (c.to_string(), serde_json::json!(l)))
        .collect();
    let stats: serde_json::Map<String, serde_json::Value> = agent
        .stats
        .iter()
        .map(|(c, s)| {
            let counters = serde_json::json!({
                "completed": s.completed, "failed": s.failed,
                "total_latency_ms": s.total_latency_ms,
            });
            (c.to_string(), counters)
        })
        .collect();
    (
        serde_json::Value::Object(capabilities).to_string(),
        serde_json::Value::Object(stats).to_string(),
    )
}
