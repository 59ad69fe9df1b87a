//! Column encodings shared by both backends' readers and writers.

use hive_core::{AgentId, TaskEnd, TaskId, TaskStatus, Timestamp};

use crate::{StoreError, StoredAttempt};

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
/// its row. Written entry by entry: building a `serde_json::Value` per entry and then printing
/// it cost an agent round about 6.5k instructions of ~220k (`hive-perf end-to-end`).
pub fn agent_json(agent: &hive_core::AgentSnapshot) -> (String, String) {
    #[derive(serde::Serialize)]
    struct Counters {
        completed: u64,
        failed: u64,
        total_latency_ms: u64,
    }
    let levels = object(
        agent
            .spec
            .capabilities
            .iter()
            .map(|(c, level)| (c.as_str(), *level)),
    );
    let stats = object(agent.stats.iter().map(|(c, s)| {
        let counters = Counters {
            completed: s.completed,
            failed: s.failed,
            total_latency_ms: s.total_latency_ms,
        };
        (c.as_str(), counters)
    }));
    (levels, stats)
}

/// Name -> value pairs as one JSON object, sorted by name, the last of equal names kept: what
/// collecting them into a `serde_json::Map` and printing it wrote.
fn object<'a, V: serde::Serialize>(entries: impl Iterator<Item = (&'a str, V)>) -> String {
    let sorted: std::collections::BTreeMap<&str, V> = entries.collect();
    serde_json::to_string(&sorted).expect("names and numbers serialise")
}

/// A plain task's latest attempt as its task's row keeps it (both stores: migrations
/// 0012_attempt_in_task.sql, postgres/0016_attempt_in_task.sql): its number, agent and start,
/// and, when the task succeeded, its end (`ended_at`); otherwise it is open.
pub fn attempt_in_row(
    attempt: u32,
    agent: Option<AgentId>,
    started_at: Timestamp,
    status: TaskStatus,
    ended_at: Option<Timestamp>,
) -> StoredAttempt {
    let succeeded = status == TaskStatus::Succeeded;
    StoredAttempt {
        attempt,
        agent,
        started_at,
        ended_at: ended_at.filter(|_| succeeded),
        outcome: succeeded.then_some(hive_core::AttemptOutcome::Succeeded),
        error: None,
        output: None,
    }
}

/// A task's attempt log: the rows of `attempts` (in order), with the task row's `latest` attempt
/// added when `attempts` has no row of its number (it is written there only when it ends
/// otherwise than by succeeding).
pub fn with_latest(
    mut rows: Vec<StoredAttempt>,
    latest: Option<StoredAttempt>,
) -> Vec<StoredAttempt> {
    if let Some(latest) = latest
        && !rows.iter().any(|a| a.attempt == latest.attempt)
    {
        rows.push(latest);
        rows.sort_by_key(|a| a.attempt);
    }
    rows
}

#[cfg(test)]
mod tests {
    use hive_core::{AgentId, AgentSnapshot, AgentSpec, AgentState, Capability, CapabilityStats};

    use super::*;

    /// What `agent_json` wrote before it skipped `serde_json::Value`: the reference its output
    /// must equal.
    fn through_values(agent: &AgentSnapshot) -> (String, String) {
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

    #[test]
    fn an_agents_columns_are_written_as_the_maps_wrote_them() {
        let cap = |name: &str| Capability::parse(name, "capability").unwrap();
        let stats = |n: u64| CapabilityStats {
            completed: n,
            failed: n / 2,
            total_latency_ms: n * 7,
        };
        let agent = |capabilities: Vec<(Capability, f64)>, stats| AgentSnapshot {
            id: AgentId(uuid::Uuid::from_u128(1)),
            spec: AgentSpec {
                name: "w".into(),
                capabilities,
                slots: 1,
            }
            .into(),
            state: AgentState::Idle,
            running: 0,
            connected_at: Timestamp(1),
            last_heartbeat: Timestamp(1),
            stats,
            routing: vec![],
        };
        for case in [
            agent(vec![(cap("echo"), 1.0)], vec![]),
            agent(
                vec![(cap("zeta"), 0.25), (cap("alpha"), 0.5), (cap("mid"), 0.0)],
                vec![(cap("zeta"), stats(3)), (cap("alpha"), stats(1_000_000))],
            ),
            // The same name twice: the later entry wins, as in a map.
            agent(
                vec![(cap("b"), 0.1), (cap("a"), 0.3), (cap("b"), 0.9)],
                vec![(cap("b"), stats(1)), (cap("b"), stats(2))],
            ),
        ] {
            assert_eq!(agent_json(&case), through_values(&case));
        }
    }
}
