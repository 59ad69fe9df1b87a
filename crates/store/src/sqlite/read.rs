//! The reader side: point look-ups and listings on pooled read-only connections. In WAL mode
//! readers never block the writer nor wait for it.

use std::path::PathBuf;
use std::sync::Mutex;

use hive_core::{
    AttemptOutcome, Backoff, Capability, ConsensusSpec, Estimate, LearnedEstimate, OnParentFailure,
    RecoveredReplica, RecoveredTask, TaskEnd, TaskId, TaskSpec, TaskStatus,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use crate::codec::{
    agent_id, attempt_in_row, features_from, from_ts, split_ids, status, task_end, task_id,
    with_latest,
};
use crate::{StoreError, StoredAttempt, StoredTask, TaskFilter, TaskReader};

const TASK_COLUMNS: &str = "id, capability, payload, priority, max_attempts, timeout_ms,
    backoff_base_ms, backoff_max_ms, idempotency_key, depends_on, status, attempts, result, error,
    lease_until, not_before, created_at, updated_at, submitted_by, on_parent_failure, replicas,
    quorum, vote, features, attempt_agent, attempt_started_at, finished_at";

/// Idle connections kept for reuse; more are opened under load and closed after.
const POOL_SIZE: usize = 8;

pub struct SqliteReader {
    path: PathBuf,
    // A std Mutex, not tokio's: it is held only to push or pop a connection, never across I/O.
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    pub(super) fn new(path: PathBuf) -> Self {
        SqliteReader {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                conn
            }
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_SIZE {
            idle.push(conn);
        }
        result
    }
}

fn spec_from_row(row: &Row<'_>) -> Result<TaskSpec, StoreError> {
    let id: Vec<u8> = row.get(0)?;
    let capability: String = row.get(1)?;
    Ok(TaskSpec {
        id: task_id(&id)?,
        capability: Capability::parse(&capability, "capability")
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        payload: row.get::<_, String>(2)?.into(),
        priority: row.get(3)?,
        max_attempts: row.get(4)?,
        timeout_ms: row.get::<_, i64>(5)? as u64,
        backoff: Backoff {
            base_ms: row.get::<_, i64>(6)? as u64,
            max_ms: row.get::<_, i64>(7)? as u64,
        },
        idempotency_key: row.get(8)?,
        depends_on: split_ids(row.get(9)?)?,
        on_parent_failure: match row.get::<_, Option<String>>(19)? {
            Some(text) => OnParentFailure::parse(&text, "on_parent_failure")
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            None => OnParentFailure::Fail,
        },
        consensus: consensus_from_row(row)?,
        created_at: from_ts(row.get(16)?),
        submitted_by: row.get::<_, Option<String>>(18)?.map(Into::into),
        features: features_from(row.get(23)?)?,
    })
}

fn consensus_from_row(row: &Row<'_>) -> Result<Option<Box<ConsensusSpec>>, StoreError> {
    let replicas: Option<u32> = row.get(20)?;
    let quorum: Option<u32> = row.get(21)?;
    let vote: Option<String> = row.get(22)?;
    ConsensusSpec::from_fields(replicas, quorum, vote.as_deref())
        .map(|c| c.map(Box::new))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A task as its row has it; `attempt_log` holds only the latest attempt when the row keeps it
/// (see [`complete_attempt_log`]).
fn task_from_row(row: &Row<'_>) -> Result<StoredTask, StoreError> {
    let status = status(&row.get::<_, String>(10)?)?;
    let attempts = row.get(11)?;
    let latest = match row.get::<_, Option<i64>>(25)? {
        Some(started_at) => vec![attempt_in_row(
            attempts,
            row.get::<_, Option<Vec<u8>>>(24)?
                .map(|b| agent_id(&b))
                .transpose()?,
            from_ts(started_at),
            status,
            row.get::<_, Option<i64>>(26)?.map(from_ts),
        )],
        None => Vec::new(),
    };
    Ok(StoredTask {
        spec: spec_from_row(row)?,
        status,
        attempts,
        result: row.get(12)?,
        error: row.get(13)?,
        lease_until: row.get::<_, Option<i64>>(14)?.map(from_ts),
        not_before: row.get::<_, Option<i64>>(15)?.map(from_ts),
        updated_at: from_ts(row.get(17)?),
        attempt_log: latest,
    })
}

/// A task's attempts: the rows of `attempts`, and the latest attempt that [`task_from_row`]
/// read from the task's row when `attempts` has no row of its number. A plain task's attempt
/// is written to `attempts` only when it ends otherwise than by succeeding; until then, and if
/// it succeeds, the task's row has it (`migrations/0012_attempt_in_task.sql`).
fn complete_attempt_log(
    conn: &Connection,
    task: &mut StoredTask,
    outputs: bool,
) -> Result<(), StoreError> {
    let latest = task.attempt_log.pop();
    task.attempt_log = with_latest(attempts_of(conn, task.spec.id, outputs)?, latest);
    Ok(())
}

/// A consensus task's attempts with the names of the agents that ran them (the identities
/// asked, kept on the attempt; else the agent's row's, else its id).
/// Attempts of a task its agents gave back unstarted: they do not count toward its
/// `max_attempts`, so a restart must know them.
fn released_of(conn: &Connection, id: TaskId) -> Result<u32, StoreError> {
    let count: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM attempts WHERE task_id = ?1 AND outcome = 'released'",
        )?
        .query_row(params![id.as_bytes()], |row| row.get(0))?;
    Ok(count.max(0) as u32)
}

fn replicas_of(conn: &Connection, id: TaskId) -> Result<Vec<RecoveredReplica>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.attempt, a.agent_id, COALESCE(a.agent_name, g.name), a.started_at, a.outcome,
                a.output, a.error
         FROM attempts a LEFT JOIN agents g ON g.id = a.agent_id
         WHERE a.task_id = ?1 ORDER BY a.attempt",
    )?;
    let mut rows = stmt.query(params![id.as_bytes()])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let agent: Option<Vec<u8>> = row.get(1)?;
        let name: Option<String> = row.get(2)?;
        let identity = match (name, agent) {
            (Some(name), _) => name,
            (None, Some(agent)) => agent_id(&agent)?.to_string(),
            (None, None) => String::new(),
        };
        out.push(RecoveredReplica {
            attempt: row.get(0)?,
            identity: identity.into(),
            started_at: from_ts(row.get(3)?),
            outcome: row
                .get::<_, Option<String>>(4)?
                .and_then(|o| AttemptOutcome::parse(&o)),
            output: row.get::<_, Option<String>>(5)?.map(Into::into),
            error: row.get(6)?,
        });
    }
    Ok(out)
}

/// A task's attempts; `outputs`: with the replicas' results (a task's page), not in a listing,
/// where a thousand consensus tasks could carry 16 results of a MiB each.
fn attempts_of(
    conn: &Connection,
    id: TaskId,
    outputs: bool,
) -> Result<Vec<StoredAttempt>, StoreError> {
    let mut stmt = conn.prepare_cached(if outputs {
        "SELECT attempt, agent_id, started_at, ended_at, outcome, error, output
         FROM attempts WHERE task_id = ?1 ORDER BY attempt"
    } else {
        "SELECT attempt, agent_id, started_at, ended_at, outcome, error, NULL
         FROM attempts WHERE task_id = ?1 ORDER BY attempt"
    })?;
    let mut rows = stmt.query(params![id.as_bytes()])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(StoredAttempt {
            attempt: row.get(0)?,
            agent: row
                .get::<_, Option<Vec<u8>>>(1)?
                .map(|b| agent_id(&b))
                .transpose()?,
            started_at: from_ts(row.get(2)?),
            ended_at: row.get::<_, Option<i64>>(3)?.map(from_ts),
            outcome: row
                .get::<_, Option<String>>(4)?
                .and_then(|o| AttemptOutcome::parse(&o)),
            error: row.get(5)?,
            output: row.get(6)?,
        });
    }
    Ok(out)
}

/// A listing's SQL and its arguments, newest first.
pub(super) fn list_query(filter: &TaskFilter) -> (String, Vec<Box<dyn rusqlite::ToSql>>) {
    let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1=1");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(s) = filter.status {
        sql.push_str(" AND status = ?");
        // The term that lets SQLite use the partial index holding this status (the index's own
        // condition, word for word: migrations/0011_finished.sql). Succeeded tasks, in no
        // status index, are found walking the table newest first, where they are most of the
        // rows.
        sql.push_str(match s {
            TaskStatus::Waiting | TaskStatus::Queued | TaskStatus::Running => {
                " AND finished_at IS NULL"
            }
            TaskStatus::Failed | TaskStatus::Cancelled => " AND status IN ('failed', 'cancelled')",
            TaskStatus::Succeeded => "",
        });
        args.push(Box::new(s.as_str()));
    }
    if let Some(c) = &filter.capability {
        sql.push_str(" AND capability = ?");
        args.push(Box::new(c.clone()));
    }
    if let Some(before) = filter.before {
        // Listings walk `seq` (migrations/0015_index_by_seq.sql): the cursor's own `seq`, or,
        // for an id the store does not hold, just past the nearest older task's.
        sql.push_str(
            " AND seq < COALESCE((SELECT seq FROM tasks WHERE id = ?),
                (SELECT seq + 1 FROM tasks WHERE id < ? ORDER BY id DESC LIMIT 1), 0)",
        );
        args.push(Box::new(before.as_bytes().to_vec()));
        args.push(Box::new(before.as_bytes().to_vec()));
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    args.push(Box::new(filter.limit as i64));
    (sql, args)
}

impl TaskReader for SqliteReader {
    fn get_task(&self, id: TaskId) -> Result<Option<StoredTask>, StoreError> {
        self.with_conn(|conn| {
            let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![id.as_bytes()])?;
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            let mut task = task_from_row(row)?;
            complete_attempt_log(conn, &mut task, true)?;
            Ok(Some(task))
        })
    }

    fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<StoredTask>, StoreError> {
        self.with_conn(|conn| {
            let (sql, args) = list_query(filter);
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(task_from_row(row)?);
            }
            for task in &mut out {
                complete_attempt_log(conn, task, false)?;
            }
            Ok(out)
        })
    }

    fn count_by_status(&self) -> Result<Vec<(TaskStatus, u64)>, StoreError> {
        self.with_conn(|conn| {
            // Each status from the partial index that holds it; succeeded tasks, which none
            // holds, are the rest of the table's count (the smallest whole index's). One read
            // transaction, so that both counts see the same commits.
            let snapshot = conn.unchecked_transaction()?;
            let mut stmt = snapshot.prepare_cached(
                "SELECT status, count(*) FROM tasks WHERE finished_at IS NULL GROUP BY status
                 UNION ALL
                 SELECT status, count(*) FROM tasks WHERE status IN ('failed', 'cancelled')
                    GROUP BY status",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push((
                    status(&row.get::<_, String>(0)?)?,
                    row.get::<_, i64>(1)? as u64,
                ));
            }
            drop(rows);
            drop(stmt);
            let total: i64 = snapshot
                .prepare_cached("SELECT count(*) FROM tasks")?
                .query_row([], |row| row.get(0))?;
            snapshot.finish()?;
            let others: u64 = out.iter().map(|(_, n)| n).sum();
            let succeeded = (total as u64).saturating_sub(others);
            if succeeded > 0 {
                out.push((TaskStatus::Succeeded, succeeded));
            }
            Ok(out)
        })
    }

    fn task_status(&self, id: TaskId) -> Result<Option<TaskStatus>, StoreError> {
        self.with_conn(|conn| {
            let found: Option<String> = conn
                .prepare_cached("SELECT status FROM tasks WHERE id = ?1")?
                .query_row(params![id.as_bytes()], |row| row.get(0))
                .optional()?;
            found.map(|s| status(&s)).transpose()
        })
    }

    fn task_end(&self, id: TaskId) -> Result<Option<TaskEnd>, StoreError> {
        self.with_conn(|conn| {
            let found: Option<(String, Option<String>, Option<String>)> = conn
                .prepare_cached("SELECT status, result, error FROM tasks WHERE id = ?1")?
                .query_row(params![id.as_bytes()], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            let Some((text, result, error)) = found else {
                return Ok(None);
            };
            task_end(&text, result, error)
        })
    }

    fn find_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<(TaskId, TaskStatus)>, StoreError> {
        self.with_conn(|conn| {
            let found: Option<(Vec<u8>, String)> = conn
                .prepare_cached("SELECT id, status FROM tasks WHERE idempotency_key = ?1")?
                .query_row(params![key], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            found
                .map(|(id, text)| Ok((task_id(&id)?, status(&text)?)))
                .transpose()
        })
    }

    fn load_active(&self) -> Result<Vec<RecoveredTask>, StoreError> {
        self.with_conn(|conn| {
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks
                 WHERE finished_at IS NULL ORDER BY seq"
            );
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let task = task_from_row(row)?;
                let replicas = match task.spec.consensus {
                    Some(_) => replicas_of(conn, task.spec.id)?,
                    None => Vec::new(),
                };
                // A task never started has no attempts to look up (most of a long queue).
                let released = match task.attempts {
                    0 => 0,
                    _ => released_of(conn, task.spec.id)?,
                };
                out.push(RecoveredTask {
                    spec: task.spec,
                    status: task.status,
                    attempt: task.attempts,
                    released,
                    lease_until: task.lease_until,
                    not_before: task.not_before,
                    replicas,
                });
            }
            Ok(out)
        })
    }

    fn load_learned(&self) -> Result<Vec<LearnedEstimate>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT identity, capability, successes, failures, latency_ms, deviation_ms,
                    samples, updated_at, assigned, assigned_at FROM estimates",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let identity: String = row.get(0)?;
                let capability: String = row.get(1)?;
                let capability = Capability::parse(&capability, "capability")
                    .map_err(|e| StoreError::Corrupt(format!("estimate capability: {e}")))?;
                out.push(LearnedEstimate {
                    identity: identity.into(),
                    capability,
                    estimate: Estimate {
                        successes: row.get(2)?,
                        failures: row.get(3)?,
                        latency_ms: row.get(4)?,
                        deviation_ms: row.get(5)?,
                        samples: row.get::<_, i64>(6)?.max(0) as u64,
                        updated_at: from_ts(row.get(7)?),
                        assigned: row.get(8)?,
                        assigned_at: from_ts(row.get(9)?),
                    },
                });
            }
            Ok(out)
        })
    }
}
