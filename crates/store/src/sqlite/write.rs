//! The writer side: turns the scheduler's changes into rows, all batches of a group in one
//! transaction, with cached prepared statements.

use hive_core::{Change, NextStatus, TaskStatus};
use rusqlite::{Connection, params};

use super::codec::{join_ids, ts};
use crate::{BatchWriter, StoreError};

pub struct SqliteWriter {
    conn: Connection,
}

impl SqliteWriter {
    pub(super) fn new(conn: Connection) -> Self {
        SqliteWriter { conn }
    }
}

impl BatchWriter for SqliteWriter {
    fn apply(&mut self, batches: &[&[Change]]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for change in batches.iter().flat_map(|b| b.iter()) {
            apply_one(&tx, change)?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn apply_one(conn: &Connection, change: &Change) -> Result<(), StoreError> {
    match change {
        Change::TaskCreated {
            spec,
            status,
            error,
        } => {
            conn.prepare_cached(
                "INSERT INTO tasks (id, capability, payload, priority, max_attempts, timeout_ms,
                    backoff_base_ms, backoff_max_ms, idempotency_key, depends_on, status, error,
                    created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
            )?
            .execute(params![
                spec.id.as_bytes(),
                spec.capability.as_str(),
                &*spec.payload,
                spec.priority,
                spec.max_attempts,
                spec.timeout_ms as i64,
                spec.backoff.base_ms as i64,
                spec.backoff.max_ms as i64,
                spec.idempotency_key,
                join_ids(&spec.depends_on),
                status.as_str(),
                error,
                ts(spec.created_at),
            ])?;
        }
        Change::TaskReady { task, at } => {
            conn.prepare_cached(
                "UPDATE tasks SET status = 'queued', updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![task.as_bytes(), ts(*at)])?;
        }
        Change::AttemptStarted {
            spec,
            attempt,
            agent,
            started_at,
            lease_until,
        } => {
            conn.prepare_cached(
                "UPDATE tasks SET status = 'running', attempts = ?2, lease_until = ?3,
                    not_before = NULL, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![
                spec.id.as_bytes(),
                attempt,
                ts(*lease_until),
                ts(*started_at)
            ])?;
            conn.prepare_cached(
                "INSERT INTO attempts (task_id, attempt, agent_id, started_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![spec.id.as_bytes(), attempt, agent.as_bytes(), ts(*started_at)])?;
        }
        Change::AttemptEnded {
            task,
            attempt,
            ended_at,
            outcome,
            output,
            error,
            next,
            ..
        } => {
            conn.prepare_cached(
                "UPDATE attempts SET ended_at = ?3, outcome = ?4, error = ?5
                 WHERE task_id = ?1 AND attempt = ?2",
            )?
            .execute(params![
                task.as_bytes(),
                attempt,
                ts(*ended_at),
                outcome.as_str(),
                error
            ])?;
            let not_before = match next {
                NextStatus::Retry { not_before } => Some(ts(*not_before)),
                _ => None,
            };
            conn.prepare_cached(
                "UPDATE tasks SET status = ?2, result = ?3, error = ?4, not_before = ?5,
                    lease_until = NULL, updated_at = ?6 WHERE id = ?1",
            )?
            .execute(params![
                task.as_bytes(),
                next.status().as_str(),
                output,
                error,
                not_before,
                ts(*ended_at)
            ])?;
        }
        Change::TaskFinished {
            task,
            status,
            error,
            at,
        } => {
            debug_assert!(status.is_terminal() && *status != TaskStatus::Succeeded);
            conn.prepare_cached(
                "UPDATE tasks SET status = ?2, error = ?3, not_before = NULL, updated_at = ?4
                 WHERE id = ?1",
            )?
            .execute(params![task.as_bytes(), status.as_str(), error, ts(*at)])?;
        }
        Change::AgentChanged(agent) => {
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
            conn.prepare_cached(
                "INSERT OR REPLACE INTO agents
                    (id, name, capabilities, slots, state, connected_at, last_heartbeat, stats)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                agent.id.as_bytes(),
                agent.spec.name,
                serde_json::Value::Object(capabilities).to_string(),
                agent.spec.slots,
                agent.state.as_str(),
                ts(agent.connected_at),
                ts(agent.last_heartbeat),
                serde_json::Value::Object(stats).to_string(),
            ])?;
        }
        Change::SendCancel { .. } | Change::SendDrain { .. } | Change::CloseAgent { .. } => {}
    }
    Ok(())
}
