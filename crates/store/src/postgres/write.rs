//! The writer side: the scheduler's changes as rows, every batch of a group in one transaction.
//!
//! The statements of a transaction are pipelined: all are sent before the first answer is
//! awaited (tokio-postgres writes them in the order they are polled, which is the changes'
//! order), so a group costs about one round trip and one commit, not one round trip per row.
//! Each statement is prepared once per connection (deadpool's statement cache).

use futures_util::future::try_join_all;
use hive_core::{Change, NextStatus, OnParentFailure, TaskSpec, TaskStatus};
use tokio_postgres::types::ToSql;

use super::{Shared, db_error};
use crate::codec::{join_ids, ts};
use crate::{BatchWriter, StoreError};

pub struct PgWriter {
    shared: std::sync::Arc<Shared>,
}

impl PgWriter {
    pub(super) fn new(shared: std::sync::Arc<Shared>) -> Self {
        PgWriter { shared }
    }
}

/// A statement's parameters, owned so that the rows outlive the loop that made them.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

impl BatchWriter for PgWriter {
    fn apply(&mut self, batches: &[&[Change]]) -> Result<(), StoreError> {
        let mut rows: Vec<(Sql, Params)> = Vec::new();
        for change in batches.iter().flat_map(|b| b.iter()) {
            rows_of(change, &mut rows);
        }
        if rows.is_empty() {
            return Ok(());
        }
        self.shared.block(|shared| async move {
            let mut client = shared.connection().await?;
            let tx = client.transaction().await.map_err(db_error)?;
            let mut prepared = Vec::with_capacity(Sql::COUNT);
            for sql in Sql::ALL {
                if rows.iter().any(|(s, _)| *s == sql) {
                    prepared.push(Some(tx.prepare_cached(sql.text()).await.map_err(db_error)?));
                } else {
                    prepared.push(None);
                }
            }
            let sent = rows.iter().map(|(sql, params)| {
                let statement = prepared[*sql as usize].as_ref().expect("prepared above");
                tx.execute_raw(
                    statement,
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)),
                )
            });
            try_join_all(sent).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        })
    }
}

/// The statements the writer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sql {
    InsertTask,
    InsertAttempt,
    TaskReady,
    TaskRunning,
    AttemptEnded,
    ReplicaEnded,
    TaskAfterAttempt,
    TaskFinished,
    UpsertAgent,
    AttemptAgent,
    DeleteAgent,
    UpsertEstimate,
}

impl Sql {
    const COUNT: usize = 12;
    const ALL: [Sql; Sql::COUNT] = [
        Sql::InsertTask,
        Sql::InsertAttempt,
        Sql::TaskReady,
        Sql::TaskRunning,
        Sql::AttemptEnded,
        Sql::ReplicaEnded,
        Sql::TaskAfterAttempt,
        Sql::TaskFinished,
        Sql::UpsertAgent,
        Sql::AttemptAgent,
        Sql::DeleteAgent,
        Sql::UpsertEstimate,
    ];

    fn text(self) -> &'static str {
        match self {
            Sql::InsertTask => {
                "INSERT INTO tasks (id, capability, payload, priority, max_attempts, timeout_ms,
                    backoff_base_ms, backoff_max_ms, idempotency_key, depends_on, status, error,
                    attempts, lease_until, created_at, updated_at, submitted_by, on_parent_failure,
                    replicas, quorum, vote)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, NULL, $13, $13,
                    $14, $15, $16, $17, $18)"
            }
            Sql::InsertAttempt => {
                "INSERT INTO attempts (task_id, attempt, agent_id, started_at, agent_name)
                 VALUES ($1, $2, $3, $4, $5)"
            }
            Sql::TaskReady => "UPDATE tasks SET status = 'queued', updated_at = $2 WHERE id = $1",
            Sql::TaskRunning => {
                "UPDATE tasks SET status = 'running', attempts = $2, lease_until = $3,
                    not_before = NULL, updated_at = $4 WHERE id = $1"
            }
            Sql::AttemptEnded => {
                "UPDATE attempts SET ended_at = $3, outcome = $4, error = $5
                 WHERE task_id = $1 AND attempt = $2"
            }
            Sql::ReplicaEnded => {
                "UPDATE attempts SET ended_at = $3, outcome = $4, error = $5, output = $6
                 WHERE task_id = $1 AND attempt = $2"
            }
            Sql::TaskAfterAttempt => {
                "UPDATE tasks SET status = $2, result = $3, error = $4, not_before = $5,
                    lease_until = NULL, updated_at = $6 WHERE id = $1"
            }
            Sql::TaskFinished => {
                "UPDATE tasks SET status = $2, error = $3, result = $5, not_before = NULL,
                    lease_until = NULL, updated_at = $4 WHERE id = $1"
            }
            Sql::UpsertAgent => {
                "INSERT INTO agents
                    (id, name, capabilities, slots, state, connected_at, last_heartbeat, stats)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
                    capabilities = EXCLUDED.capabilities, slots = EXCLUDED.slots,
                    state = EXCLUDED.state, connected_at = EXCLUDED.connected_at,
                    last_heartbeat = EXCLUDED.last_heartbeat, stats = EXCLUDED.stats"
            }
            Sql::AttemptAgent => {
                "UPDATE attempts SET agent_id = $3 WHERE task_id = $1 AND attempt = $2"
            }
            Sql::DeleteAgent => "DELETE FROM agents WHERE id = $1",
            Sql::UpsertEstimate => {
                "INSERT INTO estimates (identity, capability, successes, failures, latency_ms,
                    deviation_ms, samples, updated_at, assigned, assigned_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (identity, capability) DO UPDATE SET
                    successes = EXCLUDED.successes, failures = EXCLUDED.failures,
                    latency_ms = EXCLUDED.latency_ms, deviation_ms = EXCLUDED.deviation_ms,
                    samples = EXCLUDED.samples, updated_at = EXCLUDED.updated_at,
                    assigned = EXCLUDED.assigned, assigned_at = EXCLUDED.assigned_at"
            }
        }
    }
}

/// Boxes a parameter.
fn p(value: impl ToSql + Sync + Send + 'static) -> Box<dyn ToSql + Sync + Send> {
    Box::new(value)
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn insert_task(spec: &TaskSpec, status: TaskStatus, error: Option<&str>) -> Params {
    vec![
        p(spec.id.0),
        p(spec.capability.as_str().to_string()),
        p(spec.payload.to_string()),
        p(i32::from(spec.priority)),
        p(int(spec.max_attempts)),
        p(spec.timeout_ms as i64),
        p(spec.backoff.base_ms as i64),
        p(spec.backoff.max_ms as i64),
        p(spec.idempotency_key.clone()),
        p(join_ids(&spec.depends_on)),
        p(status.as_str()),
        p(error.map(str::to_string)),
        p(ts(spec.created_at)),
        p(spec.submitted_by.as_deref().map(str::to_string)),
        // NULL for the default keeps the common row as small as before.
        p((spec.on_parent_failure != OnParentFailure::Fail)
            .then_some(spec.on_parent_failure.as_str())),
        p(spec.consensus.as_ref().map(|c| i32::from(c.replicas))),
        p(spec.consensus.as_ref().map(|c| i32::from(c.quorum))),
        p(spec
            .consensus
            .as_ref()
            .and_then(|c| c.vote.as_deref().map(str::to_string))),
    ]
}

fn rows_of(change: &Change, rows: &mut Vec<(Sql, Params)>) {
    match change {
        Change::TaskCreated {
            spec,
            status,
            error,
        } => rows.push((
            Sql::InsertTask,
            insert_task(spec, *status, error.as_deref()),
        )),
        Change::TaskReady { task, at, .. } => {
            rows.push((Sql::TaskReady, vec![p(task.0), p(ts(*at))]));
        }
        Change::AttemptStarted {
            spec,
            attempt,
            agent,
            started_at,
            lease_until,
            identity,
            ..
        } => {
            rows.push((
                Sql::TaskRunning,
                vec![
                    p(spec.id.0),
                    p(int(*attempt)),
                    p(ts(*lease_until)),
                    p(ts(*started_at)),
                ],
            ));
            rows.push((
                Sql::InsertAttempt,
                vec![
                    p(spec.id.0),
                    p(int(*attempt)),
                    p(agent.0),
                    p(ts(*started_at)),
                    p(identity.as_deref().map(str::to_string)),
                ],
            ));
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
            let output = output.as_deref().map(str::to_string);
            if *next == NextStatus::Voting {
                // A replica: its result is kept on the attempt; the task runs on.
                rows.push((
                    Sql::ReplicaEnded,
                    vec![
                        p(task.0),
                        p(int(*attempt)),
                        p(ts(*ended_at)),
                        p(outcome.as_str()),
                        p(error.clone()),
                        p(output),
                    ],
                ));
                return;
            }
            rows.push((
                Sql::AttemptEnded,
                vec![
                    p(task.0),
                    p(int(*attempt)),
                    p(ts(*ended_at)),
                    p(outcome.as_str()),
                    p(error.clone()),
                ],
            ));
            let not_before = match next {
                NextStatus::Retry { not_before } => Some(ts(*not_before)),
                _ => None,
            };
            rows.push((
                Sql::TaskAfterAttempt,
                vec![
                    p(task.0),
                    p(next.status().as_str()),
                    p(output),
                    p(error.clone()),
                    p(not_before),
                    p(ts(*ended_at)),
                ],
            ));
        }
        Change::TaskFinished {
            task,
            status,
            error,
            result,
            at,
            ..
        } => {
            debug_assert!(status.is_terminal());
            rows.push((
                Sql::TaskFinished,
                vec![
                    p(task.0),
                    p(status.as_str()),
                    p(error.as_deref().map(str::to_string)),
                    p(ts(*at)),
                    p(result.as_deref().map(str::to_string)),
                ],
            ));
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
            rows.push((
                Sql::UpsertAgent,
                vec![
                    p(agent.id.0),
                    p(agent.spec.name.clone()),
                    p(serde_json::Value::Object(capabilities).to_string()),
                    p(int(agent.spec.slots)),
                    p(agent.state.as_str()),
                    p(ts(agent.connected_at)),
                    p(ts(agent.last_heartbeat)),
                    p(serde_json::Value::Object(stats).to_string()),
                ],
            ));
        }
        Change::AttemptReattached {
            task,
            attempt,
            agent,
        } => rows.push((
            Sql::AttemptAgent,
            vec![p(task.0), p(int(*attempt)), p(agent.0)],
        )),
        Change::AgentForgotten { agent } => rows.push((Sql::DeleteAgent, vec![p(agent.0)])),
        Change::Learned(learned) => {
            let e = &learned.estimate;
            rows.push((
                Sql::UpsertEstimate,
                vec![
                    p(learned.identity.to_string()),
                    p(learned.capability.as_str().to_string()),
                    p(e.successes),
                    p(e.failures),
                    p(e.latency_ms),
                    p(e.deviation_ms),
                    p(e.samples as i64),
                    p(ts(e.updated_at)),
                    p(e.assigned),
                    p(ts(e.assigned_at)),
                ],
            ));
        }
        Change::SendCancel { .. }
        | Change::SendResume { .. }
        | Change::SendDrain { .. }
        | Change::CloseAgent { .. } => {}
    }
}
