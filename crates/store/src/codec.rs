//! Column encodings shared by both backends' readers and writers.

use hive_core::{AgentId, TaskId, TaskStatus, Timestamp};

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

/// A list of names (an agent token's capabilities or swarms) as kept: JSON, NULL for "any".
pub fn list_to_json(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|l| serde_json::to_string(l).expect("strings serialise"))
}

pub fn list_from_json(text: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}
