//! The writer side: turns the scheduler's changes into rows, all batches of a group in one
//! transaction. A plain task's attempt lives in the task's row while it runs and, if it
//! succeeds, stays there: `attempts` gets a row for it only when it ends otherwise
//! (`migrations/0012_attempt_in_task.sql`; the reader puts the two together). Each statement is taken from rusqlite's cache once per transaction and reused for
//! every row ([`Statements`]): a cache lookup hashes and compares the whole SQL text, which per
//! row showed in the profile (BENCHMARKS.md). A task's row is normally updated by its integer key,
//! which the writer keeps from the task's insert ([`TaskRows`]), rather than found by its id.

use hive_core::{
    AgentId, Change, Feature, NextStatus, OnParentFailure, TaskId, TaskSpec, TaskStatus,
};
use rusqlite::types::ToSql;
use rusqlite::{CachedStatement, Connection, OptionalExtension, Params, params};

use super::rows::TaskRows;
use crate::codec::{agent_json, join_ids, ts};
use crate::{BatchWriter, StoreError};

pub struct SqliteWriter {
    conn: Connection,
    rows: TaskRows,
}

impl SqliteWriter {
    pub(super) fn new(conn: Connection) -> Result<Self, StoreError> {
        let rows = TaskRows::load(&conn)?;
        Ok(SqliteWriter { conn, rows })
    }
}

impl BatchWriter for SqliteWriter {
    fn apply(&mut self, batches: &[&[Change]]) -> Result<(), StoreError> {
        let applied = apply_all(&mut self.conn, &mut self.rows, batches);
        if applied.is_err() {
            // The transaction is rolled back, and with it the numbers its inserts were given.
            self.rows.clear();
        }
        applied
    }
}

fn apply_all(
    conn: &mut Connection,
    rows: &mut TaskRows,
    batches: &[&[Change]],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let mut st = Statements::new(&tx, rows);
    let mut changes = batches.iter().flat_map(|b| b.iter()).peekable();
    while let Some(change) = changes.next() {
        // A task created and assigned in the same scheduler turn (there was a free slot) is
        // inserted as running: one INSERT instead of an INSERT and an UPDATE that rewrites
        // its status index entry.
        if let Change::TaskCreated {
            spec,
            status: TaskStatus::Queued,
            error: None,
        } = change
            && let Some(Change::AttemptStarted { spec: started, .. }) = changes.peek()
            && started.id == spec.id
        {
            let Some(Change::AttemptStarted {
                attempt,
                agent,
                started_at,
                lease_until,
                identity,
                ..
            }) = changes.next()
            else {
                unreachable!("peeked an AttemptStarted")
            };
            let running = Running {
                attempt: *attempt,
                agent: *agent,
                started_at: *started_at,
                lease_until: *lease_until,
            };
            insert_task(&mut st, spec, TaskStatus::Running, None, Some(running))?;
            if spec.consensus.is_some() {
                let identity = identity.as_deref();
                insert_attempt(&mut st, spec.id, *attempt, *agent, *started_at, identity)?;
            }
            continue;
        }
        apply_one(&mut st, change)?;
    }
    // The statements borrow the transaction: back to the cache before the commit.
    drop(st);
    tx.commit()?;
    Ok(())
}

/// The statements the writer runs.
#[derive(Debug, Clone, Copy)]
enum Sql {
    InsertTask,
    InsertPlainTask,
    InsertAttempt,
    TaskReady,
    TaskRunning,
    AttemptEndedOtherwise,
    ReplicaEnded,
    TaskAfterAttempt,
    TaskFinished,
    TaskSeq,
    UpsertAgent,
    AttemptAgent,
    TaskAttemptAgent,
    DeleteAgent,
    UpsertEstimate,
}

impl Sql {
    const COUNT: usize = 15;

    fn text(self) -> &'static str {
        match self {
            Sql::InsertTask => {
                "INSERT INTO tasks (id, capability, payload, priority, max_attempts, timeout_ms,
            backoff_base_ms, backoff_max_ms, idempotency_key, depends_on, status, error,
            attempts, lease_until, created_at, updated_at, submitted_by, on_parent_failure,
            replicas, quorum, vote, features, finished_at, attempt_agent, attempt_started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25)"
            }
            // Most tasks set none of the optional columns: binding nine NULLs cost about
            // 4% of the store's instructions per task's life (BENCHMARKS.md).
            Sql::InsertPlainTask => {
                "INSERT INTO tasks (id, capability, payload, priority, max_attempts, timeout_ms,
            backoff_base_ms, backoff_max_ms, status, attempts, lease_until, created_at,
            updated_at, submitted_by, attempt_agent, attempt_started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
            }
            Sql::InsertAttempt => {
                "INSERT INTO attempts (task_id, attempt, agent_id, started_at, agent_name)
                 VALUES (?1, ?2, ?3, ?4, ?5)"
            }
            // The updates of a task's row find it by its integer key and check its id
            // (`Statements::update_task`).
            Sql::TaskReady => {
                "UPDATE tasks SET status = 'queued', updated_at = ?3 WHERE seq = ?1 AND id = ?2"
            }
            Sql::TaskRunning => {
                "UPDATE tasks SET status = 'running', attempts = ?3, lease_until = ?4,
                    not_before = NULL, updated_at = ?5, attempt_agent = ?6,
                    attempt_started_at = ?7 WHERE seq = ?1 AND id = ?2"
            }
            // The agent and start as the task's row has them: a task reloaded by a restarted hub
            // ends its attempt without knowing its agent until the agent rejoins. REPLACE: a row
            // of this number, had one been written, holds less than this one.
            Sql::AttemptEndedOtherwise => {
                "INSERT OR REPLACE INTO attempts
                    (task_id, attempt, agent_id, started_at, ended_at, outcome, error)
                 SELECT ?1, ?2, COALESCE(?3, attempt_agent), COALESCE(attempt_started_at, ?4),
                    ?5, ?6, ?7
                 FROM tasks WHERE id = ?1"
            }
            Sql::ReplicaEnded => {
                "UPDATE attempts SET ended_at = ?3, outcome = ?4, error = ?5, output = ?6
                 WHERE task_id = ?1 AND attempt = ?2"
            }
            Sql::TaskAfterAttempt => {
                "UPDATE tasks SET status = ?3, result = ?4, error = ?5, not_before = ?6,
                    lease_until = NULL, updated_at = ?7, finished_at = ?8
                 WHERE seq = ?1 AND id = ?2"
            }
            Sql::TaskFinished => {
                "UPDATE tasks SET status = ?3, error = ?4, result = ?6, not_before = NULL,
                    lease_until = NULL, updated_at = ?5, finished_at = ?5 WHERE seq = ?1 AND id = ?2"
            }
            Sql::TaskSeq => "SELECT seq FROM tasks WHERE id = ?1",
            Sql::UpsertAgent => {
                "INSERT OR REPLACE INTO agents
                    (id, name, capabilities, slots, state, connected_at, last_heartbeat, stats)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            }
            Sql::AttemptAgent => {
                "UPDATE attempts SET agent_id = ?3 WHERE task_id = ?1 AND attempt = ?2"
            }
            Sql::TaskAttemptAgent => {
                "UPDATE tasks SET attempt_agent = ?3
                 WHERE id = ?1 AND attempts = ?2 AND attempt_started_at IS NOT NULL"
            }
            Sql::DeleteAgent => "DELETE FROM agents WHERE id = ?1",
            Sql::UpsertEstimate => {
                "INSERT OR REPLACE INTO estimates (identity, capability, successes, failures,
                    latency_ms, deviation_ms, samples, updated_at, assigned, assigned_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            }
        }
    }
}

/// The prepared statements of one transaction, each prepared (from the cache) on first use, and
/// where the tasks' rows are.
struct Statements<'c> {
    conn: &'c Connection,
    prepared: [Option<CachedStatement<'c>>; Sql::COUNT],
    rows: &'c mut TaskRows,
}

impl<'c> Statements<'c> {
    fn new(conn: &'c Connection, rows: &'c mut TaskRows) -> Self {
        Statements {
            conn,
            prepared: Default::default(),
            rows,
        }
    }

    fn statement(&mut self, sql: Sql) -> Result<&mut CachedStatement<'c>, StoreError> {
        let slot = &mut self.prepared[sql as usize];
        Ok(match slot {
            Some(statement) => statement,
            None => slot.insert(self.conn.prepare_cached(sql.text())?),
        })
    }

    fn execute(&mut self, sql: Sql, params: impl Params) -> Result<usize, StoreError> {
        Ok(self.statement(sql)?.execute(params)?)
    }

    /// Runs `sql`, an update of `task`'s row found by `seq = ?1 AND id = ?2`, with `rest` as its
    /// parameters from ?3 on. A row number that is unknown, or stale (the update matches no row),
    /// is looked up by the id first. A task the store does not hold is left alone, as an update
    /// by id that matches no row would.
    fn update_task(
        &mut self,
        sql: Sql,
        task: TaskId,
        rest: &[&dyn ToSql],
    ) -> Result<(), StoreError> {
        if let Some(seq) = self.rows.get(task) {
            if self.update_row(sql, seq, task, rest)? == 1 {
                return Ok(());
            }
            self.rows.remove(task);
        }
        let found: Option<i64> = self
            .statement(Sql::TaskSeq)?
            .query_row(params![task.as_bytes()], |row| row.get(0))
            .optional()?;
        if let Some(seq) = found {
            self.rows.insert(task, seq);
            self.update_row(sql, seq, task, rest)?;
        }
        Ok(())
    }

    fn update_row(
        &mut self,
        sql: Sql,
        seq: i64,
        task: TaskId,
        rest: &[&dyn ToSql],
    ) -> Result<usize, StoreError> {
        let statement = self.statement(sql)?;
        debug_assert_eq!(statement.parameter_count(), rest.len() + 2, "{sql:?}");
        // Every parameter is bound on every run: a statement keeps its bindings across runs.
        statement.raw_bind_parameter(1, seq)?;
        statement.raw_bind_parameter(2, task.as_bytes())?;
        for (n, value) in rest.iter().enumerate() {
            statement.raw_bind_parameter(n + 3, value)?;
        }
        Ok(statement.raw_execute()?)
    }
}

/// The first attempt of a task inserted already running.
struct Running {
    attempt: u32,
    agent: AgentId,
    started_at: hive_core::Timestamp,
    lease_until: hive_core::Timestamp,
}

fn insert_task(
    st: &mut Statements<'_>,
    spec: &TaskSpec,
    status: TaskStatus,
    error: Option<&str>,
    running: Option<Running>,
) -> Result<(), StoreError> {
    if error.is_none() && !status.is_terminal() && is_plain(spec) {
        st.execute(
            Sql::InsertPlainTask,
            params![
                spec.id.as_bytes(),
                spec.capability.as_str(),
                &*spec.payload,
                spec.priority,
                spec.max_attempts,
                spec.timeout_ms as i64,
                spec.backoff.base_ms as i64,
                spec.backoff.max_ms as i64,
                status.as_str(),
                running.as_ref().map_or(0, |r| r.attempt),
                running.as_ref().map(|r| ts(r.lease_until)),
                ts(spec.created_at),
                ts(running.as_ref().map_or(spec.created_at, |r| r.started_at)),
                spec.submitted_by.as_deref(),
                running.as_ref().map(|r| r.agent.as_bytes()),
                running.as_ref().map(|r| ts(r.started_at)),
            ],
        )?;
        st.rows.insert(spec.id, st.conn.last_insert_rowid());
        return Ok(());
    }
    // A consensus task's replicas have rows of their own in `attempts` from their start.
    let plain = spec.consensus.is_none().then_some(());
    st.execute(
        Sql::InsertTask,
        params![
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
            running.as_ref().map_or(0, |r| r.attempt),
            running.as_ref().map(|r| ts(r.lease_until)),
            ts(spec.created_at),
            ts(running.as_ref().map_or(spec.created_at, |r| r.started_at)),
            spec.submitted_by.as_deref(),
            // NULL for the default keeps the common row as small as before.
            (spec.on_parent_failure != OnParentFailure::Fail)
                .then_some(spec.on_parent_failure.as_str()),
            spec.consensus.as_ref().map(|c| c.replicas),
            spec.consensus.as_ref().map(|c| c.quorum),
            spec.consensus.as_ref().and_then(|c| c.vote.as_deref()),
            spec.features.as_deref().map(Feature::to_json),
            // A task created already ended (its parent failed): `finished_at` keeps it out of
            // the unfinished tasks' index (migrations/0011_finished.sql).
            status.is_terminal().then(|| ts(spec.created_at)),
            plain.and(running.as_ref()).map(|r| r.agent.as_bytes()),
            plain.and(running.as_ref()).map(|r| ts(r.started_at)),
        ],
    )?;
    if !status.is_terminal() {
        st.rows.insert(spec.id, st.conn.last_insert_rowid());
    }
    Ok(())
}

/// Whether a task sets none of the columns [`Sql::InsertPlainTask`] leaves out (each would be
/// NULL there: `on_parent_failure` is stored only when it is not the default).
fn is_plain(spec: &TaskSpec) -> bool {
    spec.idempotency_key.is_none()
        && spec.depends_on.is_empty()
        && spec.on_parent_failure == OnParentFailure::Fail
        && spec.consensus.is_none()
        && spec.features.is_none()
}

fn insert_attempt(
    st: &mut Statements<'_>,
    task: TaskId,
    attempt: u32,
    agent: AgentId,
    started_at: hive_core::Timestamp,
    identity: Option<&str>,
) -> Result<(), StoreError> {
    st.execute(
        Sql::InsertAttempt,
        params![
            task.as_bytes(),
            attempt,
            agent.as_bytes(),
            ts(started_at),
            identity
        ],
    )?;
    Ok(())
}

fn apply_one(st: &mut Statements<'_>, change: &Change) -> Result<(), StoreError> {
    match change {
        Change::TaskCreated {
            spec,
            status,
            error,
        } => insert_task(st, spec, *status, error.as_deref(), None)?,
        Change::TaskReady { task, at, .. } => {
            st.update_task(Sql::TaskReady, *task, params![ts(*at)])?;
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
            let plain = spec.consensus.is_none();
            st.update_task(
                Sql::TaskRunning,
                spec.id,
                params![
                    attempt,
                    ts(*lease_until),
                    ts(*started_at),
                    plain.then(|| agent.as_bytes()),
                    plain.then(|| ts(*started_at)),
                ],
            )?;
            if !plain {
                insert_attempt(
                    st,
                    spec.id,
                    *attempt,
                    *agent,
                    *started_at,
                    identity.as_deref(),
                )?;
            }
        }
        Change::AttemptEnded {
            task,
            attempt,
            agent,
            started_at,
            ended_at,
            outcome,
            output,
            error,
            next,
            ..
        } => {
            if *next == NextStatus::Voting {
                // A replica: its result is kept on the attempt; the task runs on.
                st.execute(
                    Sql::ReplicaEnded,
                    params![
                        task.as_bytes(),
                        attempt,
                        ts(*ended_at),
                        outcome.as_str(),
                        error,
                        output.as_deref()
                    ],
                )?;
                return Ok(());
            }
            // Any other end is a plain task's (a replica's is `Voting`); one that succeeded
            // stays in the task's row.
            if *next != NextStatus::Succeeded {
                st.execute(
                    Sql::AttemptEndedOtherwise,
                    params![
                        task.as_bytes(),
                        attempt,
                        agent.as_ref().map(AgentId::as_bytes),
                        ts(*started_at),
                        ts(*ended_at),
                        outcome.as_str(),
                        error
                    ],
                )?;
            }
            let not_before = match next {
                NextStatus::Retry { not_before } => Some(ts(*not_before)),
                _ => None,
            };
            let status = next.status();
            let finished_at = status.is_terminal().then(|| ts(*ended_at));
            st.update_task(
                Sql::TaskAfterAttempt,
                *task,
                params![
                    status.as_str(),
                    output.as_deref(),
                    error,
                    not_before,
                    ts(*ended_at),
                    finished_at
                ],
            )?;
            if status.is_terminal() {
                st.rows.remove(*task);
            }
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
            st.update_task(
                Sql::TaskFinished,
                *task,
                params![status.as_str(), error, ts(*at), result.as_deref()],
            )?;
            st.rows.remove(*task);
        }
        Change::AgentChanged(agent) => {
            let (capabilities, stats) = agent_json(agent);
            st.execute(
                Sql::UpsertAgent,
                params![
                    agent.id.as_bytes(),
                    agent.spec.name,
                    capabilities,
                    agent.spec.slots,
                    agent.state.as_str(),
                    ts(agent.connected_at),
                    ts(agent.last_heartbeat),
                    stats,
                ],
            )?;
        }
        Change::AttemptReattached {
            task,
            attempt,
            agent,
        } => {
            // A replica's row, or a plain task's; one of the two matches.
            st.execute(
                Sql::AttemptAgent,
                params![task.as_bytes(), attempt, agent.as_bytes()],
            )?;
            st.execute(
                Sql::TaskAttemptAgent,
                params![task.as_bytes(), attempt, agent.as_bytes()],
            )?;
        }
        Change::AgentForgotten { agent } => {
            st.execute(Sql::DeleteAgent, params![agent.as_bytes()])?;
        }
        Change::TaskReleased { task, .. } | Change::TaskParked { task, .. } => {
            // A hub releases work only while other hubs share its database, which a SQLite
            // data directory never has: refusing the commit makes the hub load the task again.
            return Err(StoreError::Database(format!(
                "task {task} was handed to the other hubs of a database, which only PostgreSQL has"
            )));
        }
        Change::Learned(learned) => {
            let e = &learned.estimate;
            st.execute(
                Sql::UpsertEstimate,
                params![
                    &*learned.identity,
                    learned.capability.as_str(),
                    e.successes,
                    e.failures,
                    e.latency_ms,
                    e.deviation_ms,
                    e.samples as i64,
                    ts(e.updated_at),
                    e.assigned,
                    ts(e.assigned_at),
                ],
            )?;
        }
        Change::SendCancel { .. }
        | Change::SendResume { .. }
        | Change::SendDrain { .. }
        | Change::CloseAgent { .. } => {}
    }
    Ok(())
}
