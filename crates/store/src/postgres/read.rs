//! The reader side: point look-ups and listings on pooled connections, each statement prepared
//! once per connection. A listing reads its tasks' attempts in one more query, not one per task.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::GenericClient;
use hive_core::{
    AgentId, AttemptOutcome, Backoff, Capability, ConsensusSpec, Estimate, LearnedEstimate,
    OnParentFailure, RecoveredReplica, RecoveredTask, TaskEnd, TaskId, TaskSpec, TaskStatus,
};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};
use uuid::Uuid;

use super::replicas::Replica;
use super::{Shared, db_error};
use crate::codec::{
    attempt_in_row, features_from, from_ts, split_ids, status, task_end, with_latest,
};
use crate::{StoreError, StoredAttempt, StoredTask, TaskFilter, TaskReader};

const TASK_COLUMNS: &str = "id, capability, payload, priority, max_attempts, timeout_ms,
    backoff_base_ms, backoff_max_ms, idempotency_key, depends_on, status, attempts, result, error,
    lease_until, not_before, created_at, updated_at, submitted_by, on_parent_failure, replicas,
    quorum, vote, features, attempt_agent, attempt_started_at";

pub struct PgReader {
    shared: Arc<Shared>,
    /// Reads on this replica first (the primary answers when it fails); `None`: the primary.
    replica: Option<Arc<Replica>>,
}

impl PgReader {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        PgReader {
            shared,
            replica: None,
        }
    }

    /// Runs one query on a pooled connection and turns its rows into values.
    fn rows<T: Send + 'static>(
        &self,
        sql: String,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
        each: impl Fn(&Row) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Vec<T>, StoreError> {
        let replica = self.replica.clone();
        self.shared.block(|shared| async move {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            // Not on one that a failed read took out meanwhile (a listing's second query).
            if let Some(replica) = replica.filter(|r| r.answers()) {
                let answer = async {
                    let client = replica.connection().await?;
                    query(&client, &sql, &refs).await.map_err(|e| e.to_string())
                };
                match answer.await {
                    Ok(rows) => {
                        replica.answered();
                        return rows.iter().map(each).collect();
                    }
                    Err(e) => replica.failed(&e),
                }
            }
            let client = shared.connection().await?;
            let rows = query(&client, &sql, &refs).await.map_err(db_error)?;
            rows.iter().map(each).collect()
        })
    }

    fn tasks_with_attempts(
        &self,
        sql: String,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
        outputs: bool,
    ) -> Result<Vec<StoredTask>, StoreError> {
        let mut tasks = self.rows(sql, params, task_from_row)?;
        if tasks.is_empty() {
            return Ok(tasks);
        }
        let ids: Vec<Uuid> = tasks.iter().map(|t| t.spec.id.0).collect();
        let output = if outputs { "output" } else { "NULL::text" };
        let attempts = self.rows(
            format!(
                "SELECT task_id, attempt, agent_id, started_at, ended_at, outcome, error, {output}
                 FROM attempts WHERE task_id = ANY($1) ORDER BY task_id, attempt"
            ),
            vec![Box::new(ids)],
            |row| {
                Ok((
                    col::<Uuid>(row, 0)?,
                    StoredAttempt {
                        attempt: col::<i32>(row, 1)?.max(0) as u32,
                        agent: col::<Option<Uuid>>(row, 2)?.map(AgentId),
                        started_at: from_ts(col(row, 3)?),
                        ended_at: col::<Option<i64>>(row, 4)?.map(from_ts),
                        outcome: col::<Option<String>>(row, 5)?
                            .and_then(|o| AttemptOutcome::parse(&o)),
                        error: col(row, 6)?,
                        output: col(row, 7)?,
                    },
                ))
            },
        )?;
        let mut by_task: HashMap<Uuid, Vec<StoredAttempt>> = HashMap::new();
        for (task, attempt) in attempts {
            by_task.entry(task).or_default().push(attempt);
        }
        for task in &mut tasks {
            let rows = by_task.remove(&task.spec.id.0).unwrap_or_default();
            complete_attempt_log(task, rows);
        }
        Ok(tasks)
    }
}

async fn query(
    client: &deadpool_postgres::Object,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.query(&statement, params).await
}

/// A column, with a decoding failure as a store error.
pub(super) fn col<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, StoreError> {
    row.try_get(index).map_err(db_error)
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn spec_from_row(row: &Row) -> Result<TaskSpec, StoreError> {
    let replicas: Option<i32> = col(row, 20)?;
    let quorum: Option<i32> = col(row, 21)?;
    let vote: Option<String> = col(row, 22)?;
    let consensus = ConsensusSpec::from_fields(
        replicas.map(|n| n.max(0) as u32),
        quorum.map(|n| n.max(0) as u32),
        vote.as_deref(),
    )
    .map_err(corrupt)?;
    Ok(TaskSpec {
        id: TaskId(col(row, 0)?),
        capability: Capability::parse(&col::<String>(row, 1)?, "capability").map_err(corrupt)?,
        payload: col::<String>(row, 2)?.into(),
        priority: u8::try_from(col::<i32>(row, 3)?).map_err(corrupt)?,
        max_attempts: col::<i32>(row, 4)?.max(0) as u32,
        timeout_ms: col::<i64>(row, 5)?.max(0) as u64,
        backoff: Backoff {
            base_ms: col::<i64>(row, 6)?.max(0) as u64,
            max_ms: col::<i64>(row, 7)?.max(0) as u64,
        },
        idempotency_key: col(row, 8)?,
        depends_on: split_ids(col(row, 9)?)?,
        on_parent_failure: match col::<Option<String>>(row, 19)? {
            Some(text) => OnParentFailure::parse(&text, "on_parent_failure").map_err(corrupt)?,
            None => OnParentFailure::Fail,
        },
        consensus: consensus.map(Box::new),
        created_at: from_ts(col(row, 16)?),
        submitted_by: col::<Option<String>>(row, 18)?.map(Into::into),
        features: features_from(col(row, 23)?)?,
    })
}

/// A task as its row has it; `attempt_log` holds only the latest attempt when the row keeps it
/// (see [`complete_attempt_log`]).
fn task_from_row(row: &Row) -> Result<StoredTask, StoreError> {
    let status = status(&col::<String>(row, 10)?)?;
    let attempts = col::<i32>(row, 11)?.max(0) as u32;
    let updated_at = from_ts(col(row, 17)?);
    // A task's row is not updated after it ended: `updated_at` is when it succeeded.
    let latest = match col::<Option<i64>>(row, 25)? {
        Some(started_at) => vec![attempt_in_row(
            attempts,
            col::<Option<Uuid>>(row, 24)?.map(AgentId),
            from_ts(started_at),
            status,
            Some(updated_at),
        )],
        None => Vec::new(),
    };
    Ok(StoredTask {
        spec: spec_from_row(row)?,
        status,
        attempts,
        result: col(row, 12)?,
        error: col(row, 13)?,
        lease_until: col::<Option<i64>>(row, 14)?.map(from_ts),
        not_before: col::<Option<i64>>(row, 15)?.map(from_ts),
        updated_at,
        attempt_log: latest,
    })
}

/// A task's attempts: the rows of `attempts` (in order), and the latest attempt that
/// [`task_from_row`] read from the task's row when `attempts` has no row of its number. A plain
/// task's attempt is written to `attempts` only when it ends otherwise than by succeeding; until
/// then, and if it succeeds, the task's row has it (migrations/postgres/0016_attempt_in_task.sql).
/// A plain task's attempt row left open by a hub of an older version, which wrote one at every
/// start, on a task that succeeded since is shown ended with it: its end was written to the
/// task's row only. (A consensus task's replicas are all ended when it is decided.)
fn complete_attempt_log(task: &mut StoredTask, mut rows: Vec<StoredAttempt>) {
    let latest = task.attempt_log.pop();
    if task.status == TaskStatus::Succeeded
        && task.spec.consensus.is_none()
        && let Some(open) = rows
            .iter_mut()
            .find(|a| a.attempt == task.attempts && a.ended_at.is_none())
    {
        open.ended_at = Some(task.updated_at);
        open.outcome = Some(AttemptOutcome::Succeeded);
    }
    task.attempt_log = with_latest(rows, latest);
}

impl TaskReader for PgReader {
    fn replica(&self, after: u64) -> Option<Arc<dyn TaskReader>> {
        let replica = self.shared.replicas.get()?.pick(after)?;
        Some(Arc::new(PgReader {
            shared: self.shared.clone(),
            replica: Some(replica),
        }))
    }

    fn written(&self) -> u64 {
        self.shared.replicas.get().map_or(0, |set| set.written())
    }

    fn get_task(&self, id: TaskId) -> Result<Option<StoredTask>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        Ok(self
            .tasks_with_attempts(sql, vec![Box::new(id.0)], true)?
            .pop())
    }

    fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<StoredTask>, StoreError> {
        let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE true");
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(s) = filter.status {
            params.push(Box::new(s.as_str()));
            sql.push_str(&format!(" AND status = ${}", params.len()));
        }
        if let Some(c) = &filter.capability {
            params.push(Box::new(c.clone()));
            sql.push_str(&format!(" AND capability = ${}", params.len()));
        }
        if let Some(before) = filter.before {
            params.push(Box::new(before.0));
            sql.push_str(&format!(" AND id < ${}", params.len()));
        }
        params.push(Box::new(filter.limit as i64));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
        self.tasks_with_attempts(sql, params, false)
    }

    fn count_by_status(&self) -> Result<Vec<(TaskStatus, u64)>, StoreError> {
        // A scan of the whole table (no index holds the status, so that status changes stay
        // HOT): the hub's query cache keeps the answer a second.
        self.rows(
            "SELECT status, count(*) FROM tasks GROUP BY status".into(),
            Vec::new(),
            |row| {
                Ok((
                    status(&col::<String>(row, 0)?)?,
                    col::<i64>(row, 1)?.max(0) as u64,
                ))
            },
        )
    }

    fn task_status(&self, id: TaskId) -> Result<Option<TaskStatus>, StoreError> {
        let found = self.rows(
            "SELECT status FROM tasks WHERE id = $1".into(),
            vec![Box::new(id.0)],
            |row| status(&col::<String>(row, 0)?),
        )?;
        Ok(found.into_iter().next())
    }

    fn task_end(&self, id: TaskId) -> Result<Option<TaskEnd>, StoreError> {
        let found = self.rows(
            "SELECT status, result, error FROM tasks WHERE id = $1".into(),
            vec![Box::new(id.0)],
            |row| task_end(&col::<String>(row, 0)?, col(row, 1)?, col(row, 2)?),
        )?;
        Ok(found.into_iter().next().flatten())
    }

    fn find_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<(TaskId, TaskStatus)>, StoreError> {
        let found = self.rows(
            "SELECT id, status FROM tasks WHERE idempotency_key = $1".into(),
            vec![Box::new(key.to_string())],
            |row| Ok((TaskId(col(row, 0)?), status(&col::<String>(row, 1)?)?)),
        )?;
        Ok(found.into_iter().next())
    }

    fn load_active(&self) -> Result<Vec<RecoveredTask>, StoreError> {
        let hub = self.shared.hub;
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            recovered_tasks(&client, "hub = $1", &[&hub]).await
        })
    }

    fn load_learned(&self) -> Result<Vec<LearnedEstimate>, StoreError> {
        self.rows(
            "SELECT identity, capability, successes, failures, latency_ms, deviation_ms,
                samples, updated_at, assigned, assigned_at FROM estimates"
                .into(),
            Vec::new(),
            |row| {
                let identity: String = col(row, 0)?;
                let capability = Capability::parse(&col::<String>(row, 1)?, "capability")
                    .map_err(|e| StoreError::Corrupt(format!("estimate capability: {e}")))?;
                Ok(LearnedEstimate {
                    identity: identity.into(),
                    capability,
                    estimate: Estimate {
                        successes: col(row, 2)?,
                        failures: col(row, 3)?,
                        latency_ms: col(row, 4)?,
                        deviation_ms: col(row, 5)?,
                        samples: col::<i64>(row, 6)?.max(0) as u64,
                        updated_at: from_ts(col(row, 7)?),
                        assigned: col(row, 8)?,
                        assigned_at: from_ts(col(row, 9)?),
                    },
                })
            },
        )
    }
}

/// The active tasks matching `filter` (an SQL condition over `tasks`, with `params`), as a
/// scheduler restores them: a consensus task with its replicas' attempts. Runs on the given
/// client, so a hub taking tasks over reads them in the transaction that took them.
pub(super) async fn recovered_tasks(
    client: &impl GenericClient,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<RecoveredTask>, StoreError> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks
         WHERE {filter} AND status IN ('waiting', 'queued', 'running') ORDER BY id"
    );
    let rows = client.query(&sql, params).await.map_err(db_error)?;
    let tasks = rows
        .iter()
        .map(task_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let consensus: Vec<Uuid> = tasks
        .iter()
        .filter(|t| t.spec.consensus.is_some())
        .map(|t| t.spec.id.0)
        .collect();
    let mut replicas: HashMap<Uuid, Vec<RecoveredReplica>> = HashMap::new();
    if !consensus.is_empty() {
        // The identity asked is kept on the attempt; else the agent row's name, else its id.
        let rows = client
            .query(
                "SELECT a.task_id, a.attempt, a.agent_id, COALESCE(a.agent_name, g.name),
                        a.started_at, a.outcome, a.output, a.error
                 FROM attempts a LEFT JOIN agents g ON g.id = a.agent_id
                 WHERE a.task_id = ANY($1) ORDER BY a.task_id, a.attempt",
                &[&consensus],
            )
            .await
            .map_err(db_error)?;
        for row in &rows {
            let agent: Option<Uuid> = col(row, 2)?;
            let name: Option<String> = col(row, 3)?;
            let identity = match (name, agent) {
                (Some(name), _) => name,
                (None, Some(agent)) => AgentId(agent).to_string(),
                (None, None) => String::new(),
            };
            replicas
                .entry(col::<Uuid>(row, 0)?)
                .or_default()
                .push(RecoveredReplica {
                    attempt: col::<i32>(row, 1)?.max(0) as u32,
                    identity: identity.into(),
                    started_at: from_ts(col(row, 4)?),
                    outcome: col::<Option<String>>(row, 5)?.and_then(|o| AttemptOutcome::parse(&o)),
                    output: col::<Option<String>>(row, 6)?.map(Into::into),
                    error: col(row, 7)?,
                });
        }
    }
    // Attempts given back unstarted do not count toward `max_attempts`; only a task that was
    // started can have any.
    let started: Vec<Uuid> = tasks
        .iter()
        .filter(|t| t.attempts > 0)
        .map(|t| t.spec.id.0)
        .collect();
    let mut released: HashMap<Uuid, u32> = HashMap::new();
    if !started.is_empty() {
        let rows = client
            .query(
                "SELECT task_id, count(*) FROM attempts
                 WHERE task_id = ANY($1) AND outcome = 'released' GROUP BY task_id",
                &[&started],
            )
            .await
            .map_err(db_error)?;
        for row in &rows {
            released.insert(col(row, 0)?, col::<i64>(row, 1)?.max(0) as u32);
        }
    }
    Ok(tasks
        .into_iter()
        .map(|task| RecoveredTask {
            replicas: replicas.remove(&task.spec.id.0).unwrap_or_default(),
            released: released.remove(&task.spec.id.0).unwrap_or(0),
            spec: task.spec,
            status: task.status,
            attempt: task.attempts,
            lease_until: task.lease_until,
            not_before: task.not_before,
        })
        .collect())
}

/// How the parents of `tasks` that are not among them ended, for those that did: the inputs a
/// scheduler taking the tasks over hands on.
pub(super) async fn ended_parents(
    client: &impl GenericClient,
    tasks: &[RecoveredTask],
) -> Result<HashMap<TaskId, TaskEnd>, StoreError> {
    let own: std::collections::HashSet<TaskId> = tasks.iter().map(|t| t.spec.id).collect();
    let mut parents: Vec<Uuid> = tasks
        .iter()
        .flat_map(|t| t.spec.depends_on.iter())
        .filter(|p| !own.contains(p))
        .map(|p| p.0)
        .collect();
    parents.sort_unstable();
    parents.dedup();
    if parents.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            "SELECT id, status, result, error FROM tasks WHERE id = ANY($1)",
            &[&parents],
        )
        .await
        .map_err(db_error)?;
    let mut ended = HashMap::new();
    for row in &rows {
        if let Some(end) = task_end(&col::<String>(row, 1)?, col(row, 2)?, col(row, 3)?)? {
            ended.insert(TaskId(col(row, 0)?), end);
        }
    }
    Ok(ended)
}
