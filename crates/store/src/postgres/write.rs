//! The writer side: the scheduler's changes as rows, every batch of a group in one transaction
//! (what routing learned apart, at most once a second, in a transaction of its own that does
//! not wait for the disk).
//!
//! A row per statement would cost PostgreSQL a parse-free but still full statement execution per
//! row (three per plain task: its insert, its start, its end). Instead the changes are cut into
//! *segments* in which no row (a task, an attempt, an agent, an estimate) is touched twice; a
//! segment's rows of one kind go into one multi-row statement over `unnest` of arrays, so a group
//! of thousands of changes is a handful of statements. Touching a row again starts a new
//! segment, so the changes still apply in their order, except when the row is one the segment
//! inserts: then the change is folded into the insert (a task created, run and finished within
//! one group is one task row written once, with no update; under load the group commit gathers
//! exactly that).
//! Statements are pipelined (all sent before the first answer is awaited, in order) and
//! prepared once per connection.

use std::collections::{BTreeMap, HashMap};

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::{MaybeDone, maybe_done};
use hive_core::{Change, Feature, NextStatus, OnParentFailure, TaskSpec, TaskStatus, Timestamp};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{Shared, db_error};
use crate::codec::{agent_json, join_ids, ts};
use crate::{BatchWriter, StoreError};

/// How often at most the learned estimates are written (with the commit that comes first after
/// this long since the last written; see [`PgWriter::unwritten`]).
const ESTIMATES_EVERY: Duration = Duration::from_secs(1);

pub struct PgWriter {
    shared: std::sync::Arc<Shared>,
    /// Learned estimates not written yet, the latest of each row: the scheduler hands each
    /// over once, when it changes, and they are written with the first commit at least
    /// `estimates_every` after the last write of them that succeeded (those of a failed write
    /// go again with the next commit), and when the writer is dropped. Written with every
    /// commit, their transaction was half of a hub's transactions when commits are small
    /// (BENCHMARKS.md, "PostgreSQL: learned estimates once a second").
    unwritten: BTreeMap<Key, Row>,
    estimates_every: Duration,
    /// When the estimates were last written; `None` before the first write.
    estimates_written_at: Option<Instant>,
}

impl PgWriter {
    pub(super) fn new(shared: std::sync::Arc<Shared>) -> Self {
        PgWriter {
            shared,
            unwritten: BTreeMap::new(),
            estimates_every: ESTIMATES_EVERY,
            estimates_written_at: None,
        }
    }

    /// Writes the learned estimates at most this often (tests: longer than they run).
    #[cfg(test)]
    pub(crate) fn writing_estimates_every(mut self, every: Duration) -> Self {
        self.estimates_every = every;
        self
    }

    /// The estimates to write with this commit: every one not written yet when they are due.
    fn estimates_due(&mut self, estimates: BTreeMap<Key, Row>) -> BTreeMap<Key, Row> {
        self.unwritten.extend(estimates);
        let due = self
            .estimates_written_at
            .is_none_or(|at| at.elapsed() >= self.estimates_every);
        if due {
            std::mem::take(&mut self.unwritten)
        } else {
            BTreeMap::new()
        }
    }

    /// The tasks' statements in one transaction and the estimates `learned` in another, in one
    /// round trip; the tasks' outcome. Estimates whose write failed go back to `unwritten`.
    fn commit(
        &mut self,
        mut statements: Vec<Statement>,
        learned: BTreeMap<Key, Row>,
    ) -> Result<(), StoreError> {
        if statements.is_empty() && learned.is_empty() {
            return Ok(());
        }
        // First in each transaction: fails it once another hub took this one's tasks over
        // (see `hive_fence`, migration 0007).
        let fence = || -> Statement { (Sql::Fence, vec![Box::new(self.shared.hub)]) };
        if !statements.is_empty() {
            statements.insert(0, fence());
        }
        let estimates: Vec<Statement> = if learned.is_empty() {
            Vec::new()
        } else {
            let rows = learned.values().map(|row| row.values.clone()).collect();
            vec![fence(), (Sql::UpsertEstimate, columns(rows))]
        };
        let written = self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let mut prepared = Vec::with_capacity(Sql::COUNT);
            for sql in Sql::ALL {
                let used = statements.iter().chain(&estimates).any(|(s, _)| *s == sql);
                prepared.push(if used {
                    Some(client.prepare_cached(sql.text()).await.map_err(db_error)?)
                } else {
                    None
                });
            }
            let conn: &tokio_postgres::Client = &client;
            let prepared = &prepared;
            let execute = move |sql: Sql, columns| {
                let statement = prepared[sql as usize].as_ref().expect("prepared above");
                request(conn, statement, columns)
            };
            let simple = |sql: &'static str| -> Request<'_> {
                Box::pin(maybe_done(Box::pin(conn.batch_execute(sql))))
            };
            // BEGIN, the statements and COMMIT in one pipeline: one round trip. Each request is
            // written to the connection when its future is first polled, so they are polled
            // once each, in order, before any answer is awaited (a combinator's polling order is
            // not promised: a statement sent after the COMMIT would run on its own). A request
            // that fails before it is sent (its parameters cannot be encoded) stops the
            // pipeline before the COMMIT goes out. Should a statement fail on the server, it
            // aborts the transaction and turns the COMMIT into a rollback; the first error in
            // the pipeline's order is what comes back.
            let mut pipeline: Vec<Request<'_>> = Vec::with_capacity(statements.len() + 6);
            if !statements.is_empty() {
                pipeline.push(simple("BEGIN"));
                pipeline.push(simple(super::BY_INDEX));
                pipeline.extend(statements.iter().map(|(sql, columns)| execute(*sql, columns)));
                send_in_order(&mut pipeline).await;
                let unsent = pipeline
                    .iter_mut()
                    .any(|request| matches!(request.as_mut().output_mut(), Some(Err(_))));
                if unsent {
                    let error = first_error(pipeline).await;
                    let _ = deadpool_postgres::Object::take(client);
                    return Ok((
                        Err(db_error(error.expect("a request failed to be sent"))),
                        false,
                    ));
                }
                pipeline.push(simple("COMMIT"));
            }
            // The estimates after it, in a transaction of their own (fenced too) that does not
            // wait for the disk: they are what routing has learned, not work anyone was told is
            // committed; should this write fail, they go again with the next commit. Workers of
            // one name connect to several hubs, and each hub writes their rows; inside the
            // tasks' transaction those row locks were held through its flush, so one hub's
            // commit waited for another's (BENCHMARKS.md, "Several hubs: plans made for an
            // empty table").
            let ours = pipeline.len();
            if !estimates.is_empty() {
                pipeline.push(simple("BEGIN; SET LOCAL synchronous_commit = off"));
                pipeline.extend(estimates.iter().map(|(sql, columns)| execute(*sql, columns)));
                pipeline.push(simple("COMMIT"));
            }
            send_in_order(&mut pipeline).await;
            let learned = pipeline.split_off(ours);
            let outcome = first_error(pipeline).await;
            let learned = first_error(learned).await;
            if let (None, Some(e)) = (&outcome, &learned) {
                tracing::warn!(error = %e, "cannot write the learned estimates; they go again with the next commit");
            }
            if let Some(e) = outcome {
                // Not handed out again: its state after a failed pipeline is not worth trusting,
                // and closing it rolls back a transaction left open without its COMMIT.
                let _ = deadpool_postgres::Object::take(client);
                return Ok((Err(db_error(e)), learned.is_none()));
            }
            if ours > 0
                && let Some(replicas) = shared.replicas.get()
            {
                // Read after the COMMIT answered, so at or past it: a replica that replayed up
                // to here shows this commit (how clients read their own writes). Should it fail,
                // the commit stands, and reads after writes go to the primary until a later
                // commit's position is read.
                replicas.record_written(super::replicas::position(&client).await);
            }
            if learned.is_some() {
                let _ = deadpool_postgres::Object::take(client);
            }
            Ok((Ok(()), learned.is_none()))
        });
        // The tasks' outcome, and whether the estimates were written (nothing was sent when
        // the connection or a statement's preparation failed).
        let (tasks, estimates_written) = written.unwrap_or_else(|e| (Err(e), false));
        if !learned.is_empty() {
            if estimates_written {
                self.estimates_written_at = Some(Instant::now());
            } else {
                // `unwritten` was emptied for this write (nothing is learned while it runs).
                self.unwritten = learned;
            }
        }
        tasks
    }
}

impl Drop for PgWriter {
    /// A hub that stops writes what it learned since its last successful write of estimates
    /// (held back until the next commit due, or this).
    fn drop(&mut self) {
        if self.unwritten.is_empty() {
            return;
        }
        let learned = std::mem::take(&mut self.unwritten);
        let rows = learned.len();
        let lost = "the learned estimates could not be written before the writer stopped";
        match self.commit(Vec::new(), learned) {
            Err(error) => tracing::warn!(rows, %error, "{lost}"),
            // The estimates' transaction failed: `commit` logged why.
            Ok(()) if !self.unwritten.is_empty() => tracing::warn!(rows, "{lost}"),
            Ok(()) => {}
        }
    }
}

impl BatchWriter for PgWriter {
    fn apply(&mut self, batches: &[&[Change]]) -> Result<(), StoreError> {
        let Plan {
            statements,
            estimates,
        } = plan(batches, self.shared.hub);
        let learned = self.estimates_due(estimates);
        self.commit(statements, learned)
    }
}

/// One prepared statement over `columns`, as a request of a pipeline.
fn request<'c>(
    client: &'c tokio_postgres::Client,
    statement: &'c tokio_postgres::Statement,
    columns: &'c [Box<dyn ToSql + Sync + Send>],
) -> Request<'c> {
    let params = columns.iter().map(|c| &**c as &(dyn ToSql + Sync));
    let execute = client.execute_raw(statement, params);
    Box::pin(maybe_done(Box::pin(
        async move { execute.await.map(|_| ()) },
    )))
}

/// Awaits every request of `pipeline`; the first error in its order, if any.
async fn first_error(pipeline: Vec<Request<'_>>) -> Option<tokio_postgres::Error> {
    let mut first = None;
    for mut request in pipeline {
        request.as_mut().await;
        if let Some(Err(e)) = request.as_mut().take_output()
            && first.is_none()
        {
            first = Some(e);
        }
    }
    first
}

/// Polls every request of the pipeline that has not answered yet once, in order, which sends it.
async fn send_in_order(pipeline: &mut [Request<'_>]) {
    std::future::poll_fn(|cx| {
        for request in pipeline.iter_mut() {
            let _ = request.as_mut().poll(cx);
        }
        Poll::Ready(())
    })
    .await
}

/// One request of the pipeline, its answer kept once it came.
type Request<'c> = Pin<
    Box<MaybeDone<Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + 'c>>>>,
>;

/// One multi-row statement: its kind and one array per column.
type Statement = (Sql, Vec<Box<dyn ToSql + Sync + Send>>);

/// What a group commit writes: its statements, in an order that applies them as written, and
/// the estimates learned in it, which are written apart (`PgWriter::apply`).
struct Plan {
    statements: Vec<Statement>,
    estimates: BTreeMap<Key, Row>,
}

/// The statements that write `batches` for the hub `hub`.
fn plan(batches: &[&[Change]], hub: Uuid) -> Plan {
    let mut segment = Segment::default();
    let mut statements = Vec::new();
    let mut rows = Vec::new();
    let mut pooled: Vec<String> = Vec::new();
    // Estimates are last-value rows that several hubs write (workers of one name connect to
    // any hub): each is written at most once per commit (the writer holds them back between
    // writes: `ESTIMATES_EVERY`), all in one statement, in key order, so that
    // two hubs' writes lock them in the same order and never deadlock.
    let mut estimates: BTreeMap<Key, Row> = BTreeMap::new();
    for change in batches.iter().flat_map(|b| b.iter()) {
        rows.clear();
        rows_of(change, hub, &mut rows);
        if let Change::Learned(_) = change {
            for row in rows.drain(..) {
                estimates.insert(row.key.clone(), row);
            }
            continue;
        }
        if let Change::TaskReleased { capability, .. } = change
            && !pooled.iter().any(|c| c == capability.as_str())
        {
            pooled.push(capability.as_str().to_string());
        }
        for mut row in rows.drain(..) {
            segment.take_attempt_from_insert(&mut row);
            if !segment.fold(&row) {
                if segment.touched.contains_key(&row.key) {
                    segment.flush(&mut statements);
                }
                segment.add(row);
            }
        }
    }
    segment.flush(&mut statements);
    if !pooled.is_empty() {
        // Delivered when the transaction commits: the other hubs claim what it pooled.
        statements.push((Sql::NotifyPool, vec![Box::new(pooled)]));
    }
    Plan {
        statements,
        estimates,
    }
}

/// The row a statement touches, so that no segment touches one twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Task(Uuid),
    Pool(Uuid),
    Parked(Uuid),
    Attempt(Uuid, i32),
    Agent(Uuid),
    Estimate(String, String),
}

/// One parameter of a row, NULL or not; a column's values are all of one variant (arrays of
/// options bind NOT NULL columns as well).
#[derive(Debug, Clone)]
enum Value {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    Int(Option<i32>),
    Big(Option<i64>),
    Float(Option<f64>),
}

struct Row {
    sql: Sql,
    key: Key,
    values: Vec<Value>,
}

/// Rows that touch distinct rows of the database, by kind.
#[derive(Default)]
struct Segment {
    /// Each row touched, with the statement and the place of its values.
    touched: HashMap<Key, (Sql, usize)>,
    rows: [Vec<Vec<Value>>; Sql::COUNT],
}

impl Segment {
    fn add(&mut self, row: Row) {
        let kind = &mut self.rows[row.sql as usize];
        self.touched.insert(row.key, (row.sql, kind.len()));
        kind.push(row.values);
    }

    /// Folds a change of a row this segment inserts into its insert; false when it cannot.
    fn fold(&mut self, row: &Row) -> bool {
        let Some(&(sql, at)) = self.touched.get(&row.key) else {
            return false;
        };
        let inserted = &mut self.rows[sql as usize][at];
        match (sql, row.sql) {
            (Sql::InsertTask, _) => fold_task(inserted, row),
            (Sql::InsertAttempt, _) => fold_attempt(inserted, row),
            _ => false,
        }
    }

    /// An attempt ending that reads its agent and start from the task's row
    /// ([`Sql::AttemptEndedOtherwise`]) takes them from the task's insert instead when this
    /// segment inserts the task: by the time the statement runs, later changes folded into the
    /// insert (the next attempt's start) may have replaced them there.
    fn take_attempt_from_insert(&self, row: &mut Row) {
        use ended_column::{AGENT, STARTED_AT};
        use task_column::{ATTEMPT_AGENT, ATTEMPT_STARTED_AT, ATTEMPTS};
        let (Sql::AttemptEndedOtherwise, Key::Attempt(task, attempt)) = (row.sql, &row.key) else {
            return;
        };
        let Some(&(Sql::InsertTask, at)) = self.touched.get(&Key::Task(*task)) else {
            return;
        };
        let inserted = &self.rows[Sql::InsertTask as usize][at];
        if let (Value::Int(Some(holds)), Value::Big(Some(started_at))) =
            (&inserted[ATTEMPTS], &inserted[ATTEMPT_STARTED_AT])
            && holds == attempt
        {
            if let Value::Uuid(None) = row.values[AGENT] {
                row.values[AGENT] = inserted[ATTEMPT_AGENT].clone();
            }
            row.values[STARTED_AT] = big(*started_at);
        }
    }

    /// One statement per kind with rows, in the order of [`Sql::ALL`], then an empty segment. No
    /// row is touched twice in a segment; what one statement reads of another's rows is said
    /// at `Sql::ALL`.
    fn flush(&mut self, statements: &mut Vec<Statement>) {
        for sql in Sql::ALL {
            let rows = std::mem::take(&mut self.rows[sql as usize]);
            if !rows.is_empty() {
                statements.push((sql, columns(rows)));
            }
        }
        self.touched.clear();
    }
}

/// Rows into one array per column.
fn columns(rows: Vec<Vec<Value>>) -> Vec<Box<dyn ToSql + Sync + Send>> {
    let width = rows[0].len();
    let mut by_column: Vec<Vec<Value>> =
        (0..width).map(|_| Vec::with_capacity(rows.len())).collect();
    for row in rows {
        debug_assert_eq!(row.len(), width);
        for (column, value) in by_column.iter_mut().zip(row) {
            column.push(value);
        }
    }
    by_column.into_iter().map(array).collect()
}

fn array(values: Vec<Value>) -> Box<dyn ToSql + Sync + Send> {
    macro_rules! collect {
        ($variant:ident) => {
            Box::new(
                values
                    .into_iter()
                    .map(|v| match v {
                        Value::$variant(x) => x,
                        other => unreachable!("a column mixes {other:?} in"),
                    })
                    .collect::<Vec<_>>(),
            )
        };
    }
    match values[0] {
        Value::Uuid(_) => collect!(Uuid),
        Value::Text(_) => collect!(Text),
        Value::Int(_) => collect!(Int),
        Value::Big(_) => collect!(Big),
        Value::Float(_) => collect!(Float),
    }
}

/// The statements the writer runs, each over `unnest` of one array per column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sql {
    InsertTask,
    InsertAttempt,
    TaskReady,
    TaskRunning,
    AttemptEndedOtherwise,
    ReplicaEnded,
    TaskAfterAttempt,
    TaskFinished,
    UpsertAgent,
    AttemptAgent,
    TaskAttemptAgent,
    DeleteAgent,
    UpsertEstimate,
    ReleaseTask,
    InsertPool,
    InsertParked,
    Fence,
    NotifyPool,
}

impl Sql {
    const COUNT: usize = 18;
    /// A segment's statements run in this order. Fence and NotifyPool are placed by hand (first
    /// and last), UpsertEstimate in a transaction of its own, never in a segment.
    /// `AttemptEndedOtherwise` reads the task's row, which `InsertTask` or `TaskRunning` may
    /// write: it comes after both.
    const ALL: [Sql; Sql::COUNT] = [
        Sql::InsertTask,
        Sql::InsertAttempt,
        Sql::TaskReady,
        Sql::TaskRunning,
        Sql::AttemptEndedOtherwise,
        Sql::ReplicaEnded,
        Sql::TaskAfterAttempt,
        Sql::TaskFinished,
        Sql::UpsertAgent,
        Sql::AttemptAgent,
        Sql::TaskAttemptAgent,
        Sql::DeleteAgent,
        Sql::UpsertEstimate,
        Sql::ReleaseTask,
        Sql::InsertPool,
        Sql::InsertParked,
        Sql::Fence,
        Sql::NotifyPool,
    ];

    pub(super) fn text(self) -> &'static str {
        match self {
            Sql::InsertTask => {
                "INSERT INTO tasks (id, capability, payload, priority, max_attempts, timeout_ms,
                    backoff_base_ms, backoff_max_ms, idempotency_key, depends_on, status, error,
                    attempts, lease_until, created_at, updated_at, submitted_by, on_parent_failure,
                    replicas, quorum, vote, result, not_before, hub, features, attempt_agent,
                    attempt_started_at)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[],
                    $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::text[],
                    $12::text[], $13::int[], $14::bigint[], $15::bigint[], $16::bigint[],
                    $17::text[], $18::text[], $19::int[], $20::int[], $21::text[], $22::text[],
                    $23::bigint[], $24::uuid[], $25::text[], $26::uuid[], $27::bigint[])"
            }
            Sql::InsertAttempt => {
                "INSERT INTO attempts (task_id, attempt, agent_id, started_at, agent_name,
                    ended_at, outcome, error, output)
                 SELECT * FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::bigint[],
                    $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[])"
            }
            Sql::TaskReady => {
                "UPDATE tasks t SET status = 'queued', updated_at = u.at
                 FROM unnest($1::uuid[], $2::bigint[]) AS u(id, at) WHERE t.id = u.id"
            }
            // A plain task's attempt is kept in its row (NULL for a consensus task's replicas,
            // which have rows of their own): migrations/postgres/0016_attempt_in_task.sql.
            Sql::TaskRunning => {
                "UPDATE tasks t SET status = 'running', attempts = u.attempt,
                    lease_until = u.lease_until, not_before = NULL, updated_at = u.at,
                    attempt_agent = u.agent, attempt_started_at = u.started_at
                 FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[], $5::uuid[],
                    $6::bigint[]) AS u(id, attempt, lease_until, at, agent, started_at)
                 WHERE t.id = u.id"
            }
            // The agent and start as the task's row has them when it holds this attempt: a task
            // reloaded by a restarted hub ends its attempt without knowing its agent until the
            // agent rejoins. A row of this number is there when a hub of an older version
            // started the attempt (it wrote one at every start): it is ended in place, its
            // agent kept (the task's row may still name an earlier attempt's, which that hub's
            // start left there; a reattach updates both).
            Sql::AttemptEndedOtherwise => {
                "INSERT INTO attempts (task_id, attempt, agent_id, started_at, ended_at, outcome,
                    error)
                 SELECT u.task_id, u.attempt, COALESCE(u.agent, t.attempt_agent),
                    COALESCE(t.attempt_started_at, u.started_at), u.ended_at, u.outcome, u.error
                 FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::text[], $5::text[],
                    $6::uuid[], $7::bigint[])
                    AS u(task_id, attempt, ended_at, outcome, error, agent, started_at)
                 LEFT JOIN tasks t ON t.id = u.task_id AND t.attempts = u.attempt
                 ON CONFLICT (task_id, attempt) DO UPDATE SET ended_at = EXCLUDED.ended_at,
                    outcome = EXCLUDED.outcome, error = EXCLUDED.error,
                    agent_id = COALESCE(attempts.agent_id, EXCLUDED.agent_id)"
            }
            Sql::ReplicaEnded => {
                "UPDATE attempts a SET ended_at = u.ended_at, outcome = u.outcome, error = u.error,
                    output = u.output
                 FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::text[], $5::text[],
                    $6::text[]) AS u(task_id, attempt, ended_at, outcome, error, output)
                 WHERE a.task_id = u.task_id AND a.attempt = u.attempt"
            }
            Sql::TaskAfterAttempt => {
                "UPDATE tasks t SET status = u.status, result = u.result, error = u.error,
                    not_before = u.not_before, lease_until = NULL, updated_at = u.at
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                    $6::bigint[]) AS u(id, status, result, error, not_before, at)
                 WHERE t.id = u.id"
            }
            Sql::TaskFinished => {
                "UPDATE tasks t SET status = u.status, error = u.error, result = u.result,
                    not_before = NULL, lease_until = NULL, updated_at = u.at
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[])
                    AS u(id, status, error, at, result)
                 WHERE t.id = u.id"
            }
            Sql::UpsertAgent => {
                "INSERT INTO agents
                    (id, name, capabilities, slots, state, connected_at, last_heartbeat, stats,
                    hub)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[],
                    $6::bigint[], $7::bigint[], $8::text[], $9::uuid[])
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, hub = EXCLUDED.hub,
                    capabilities = EXCLUDED.capabilities, slots = EXCLUDED.slots,
                    state = EXCLUDED.state, connected_at = EXCLUDED.connected_at,
                    last_heartbeat = EXCLUDED.last_heartbeat, stats = EXCLUDED.stats"
            }
            Sql::AttemptAgent => {
                "UPDATE attempts a SET agent_id = u.agent
                 FROM unnest($1::uuid[], $2::int[], $3::uuid[]) AS u(task_id, attempt, agent)
                 WHERE a.task_id = u.task_id AND a.attempt = u.attempt"
            }
            Sql::TaskAttemptAgent => {
                "UPDATE tasks t SET attempt_agent = u.agent
                 FROM unnest($1::uuid[], $2::int[], $3::uuid[]) AS u(id, attempt, agent)
                 WHERE t.id = u.id AND t.attempts = u.attempt AND t.attempt_started_at IS NOT NULL"
            }
            Sql::DeleteAgent => "DELETE FROM agents WHERE id = ANY($1::uuid[])",
            Sql::ReleaseTask => "UPDATE tasks SET hub = NULL WHERE id = ANY($1::uuid[])",
            Sql::InsertPool => {
                "INSERT INTO pool (task_id, capability, priority, created_at, rank)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bigint[],
                    $5::bigint[])"
            }
            Sql::InsertParked => {
                "INSERT INTO parked (task_id, parents)
                 SELECT u.id, string_to_array(u.parents, ',')::uuid[]
                 FROM unnest($1::uuid[], $2::text[]) AS u(id, parents)"
            }
            Sql::Fence => "SELECT hive_fence($1::uuid)",
            // The channel is `POOL_CHANNEL` (a test checks).
            Sql::NotifyPool => "SELECT pg_notify('hive_pool', c) FROM unnest($1::text[]) AS c",
            Sql::UpsertEstimate => {
                "INSERT INTO estimates (identity, capability, successes, failures, latency_ms,
                    deviation_ms, samples, updated_at, assigned, assigned_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[],
                    $5::float8[], $6::float8[], $7::bigint[], $8::bigint[], $9::float8[],
                    $10::bigint[])
                 ON CONFLICT (identity, capability) DO UPDATE SET
                    successes = EXCLUDED.successes, failures = EXCLUDED.failures,
                    latency_ms = EXCLUDED.latency_ms, deviation_ms = EXCLUDED.deviation_ms,
                    samples = EXCLUDED.samples, updated_at = EXCLUDED.updated_at,
                    assigned = EXCLUDED.assigned, assigned_at = EXCLUDED.assigned_at
                 WHERE estimates.updated_at <= EXCLUDED.updated_at"
            }
        }
    }
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(Some(s.into()))
}

fn uuid(id: Uuid) -> Value {
    Value::Uuid(Some(id))
}

fn int_v(n: i32) -> Value {
    Value::Int(Some(n))
}

fn big(n: i64) -> Value {
    Value::Big(Some(n))
}

fn float(x: f64) -> Value {
    Value::Float(Some(x))
}

fn opt_text(s: Option<&str>) -> Value {
    Value::Text(s.map(str::to_string))
}

fn insert_task(spec: &TaskSpec, status: TaskStatus, error: Option<&str>, hub: Uuid) -> Row {
    let consensus = spec.consensus.as_deref();
    Row {
        sql: Sql::InsertTask,
        key: Key::Task(spec.id.0),
        values: vec![
            uuid(spec.id.0),
            text(spec.capability.as_str()),
            text(&*spec.payload),
            int_v(i32::from(spec.priority)),
            int_v(int(spec.max_attempts)),
            big(spec.timeout_ms as i64),
            big(spec.backoff.base_ms as i64),
            big(spec.backoff.max_ms as i64),
            opt_text(spec.idempotency_key.as_deref()),
            Value::Text(join_ids(&spec.depends_on)),
            text(status.as_str()),
            opt_text(error),
            int_v(0),
            Value::Big(None),
            big(ts(spec.created_at)),
            big(ts(spec.created_at)),
            opt_text(spec.submitted_by.as_deref()),
            // NULL for the default keeps the common row as small as before.
            opt_text(
                (spec.on_parent_failure != OnParentFailure::Fail)
                    .then_some(spec.on_parent_failure.as_str()),
            ),
            Value::Int(consensus.map(|c| i32::from(c.replicas))),
            Value::Int(consensus.map(|c| i32::from(c.quorum))),
            opt_text(consensus.and_then(|c| c.vote.as_deref())),
            Value::Text(None),
            Value::Big(None),
            uuid(hub),
            Value::Text(spec.features.as_deref().map(Feature::to_json)),
            Value::Uuid(None),
            Value::Big(None),
        ],
    }
}

/// Where `insert_task` puts the columns a later change may set.
mod task_column {
    pub const STATUS: usize = 10;
    pub const ERROR: usize = 11;
    pub const ATTEMPTS: usize = 12;
    pub const LEASE_UNTIL: usize = 13;
    pub const UPDATED_AT: usize = 15;
    pub const RESULT: usize = 21;
    pub const NOT_BEFORE: usize = 22;
    pub const HUB: usize = 23;
    pub const ATTEMPT_AGENT: usize = 25;
    pub const ATTEMPT_STARTED_AT: usize = 26;
}

/// Where `rows_of` puts the columns of an attempt's end ([`Sql::AttemptEndedOtherwise`]) that
/// the planner may take from the task's insert.
mod ended_column {
    pub const AGENT: usize = 5;
    pub const STARTED_AT: usize = 6;
}

/// Applies a later change of a task to the values of its insert, as its UPDATE would.
fn fold_task(inserted: &mut [Value], row: &Row) -> bool {
    use task_column::*;
    let v = &row.values;
    match row.sql {
        Sql::TaskReady => {
            inserted[STATUS] = text("queued");
            inserted[UPDATED_AT] = v[1].clone();
        }
        Sql::TaskRunning => {
            inserted[STATUS] = text("running");
            inserted[ATTEMPTS] = v[1].clone();
            inserted[LEASE_UNTIL] = v[2].clone();
            inserted[NOT_BEFORE] = Value::Big(None);
            inserted[UPDATED_AT] = v[3].clone();
            inserted[ATTEMPT_AGENT] = v[4].clone();
            inserted[ATTEMPT_STARTED_AT] = v[5].clone();
        }
        Sql::TaskAfterAttempt => {
            inserted[STATUS] = v[1].clone();
            inserted[RESULT] = v[2].clone();
            inserted[ERROR] = v[3].clone();
            inserted[NOT_BEFORE] = v[4].clone();
            inserted[LEASE_UNTIL] = Value::Big(None);
            inserted[UPDATED_AT] = v[5].clone();
        }
        Sql::ReleaseTask => inserted[HUB] = Value::Uuid(None),
        Sql::TaskFinished => {
            inserted[STATUS] = v[1].clone();
            inserted[ERROR] = v[2].clone();
            inserted[UPDATED_AT] = v[3].clone();
            inserted[RESULT] = v[4].clone();
            inserted[NOT_BEFORE] = Value::Big(None);
            inserted[LEASE_UNTIL] = Value::Big(None);
        }
        _ => return false,
    }
    true
}

/// Applies a later change of an attempt to the values of its insert.
fn fold_attempt(inserted: &mut [Value], row: &Row) -> bool {
    const AGENT: usize = 2;
    const ENDED_AT: usize = 5;
    let v = &row.values;
    match row.sql {
        Sql::ReplicaEnded => {
            inserted[ENDED_AT] = v[2].clone();
            inserted[ENDED_AT + 1] = v[3].clone();
            inserted[ENDED_AT + 2] = v[4].clone();
            inserted[ENDED_AT + 3] = v[5].clone();
        }
        Sql::AttemptAgent => inserted[AGENT] = v[2].clone(),
        _ => return false,
    }
    true
}

fn insert_attempt(
    task: Uuid,
    attempt: u32,
    agent: Uuid,
    started_at: Timestamp,
    identity: Option<&str>,
) -> Row {
    Row {
        sql: Sql::InsertAttempt,
        key: Key::Attempt(task, int(attempt)),
        values: vec![
            uuid(task),
            int_v(int(attempt)),
            uuid(agent),
            big(ts(started_at)),
            opt_text(identity),
            Value::Big(None),
            Value::Text(None),
            Value::Text(None),
            Value::Text(None),
        ],
    }
}

fn rows_of(change: &Change, hub: Uuid, rows: &mut Vec<Row>) {
    match change {
        Change::TaskCreated {
            spec,
            status,
            error,
        } => rows.push(insert_task(spec, *status, error.as_deref(), hub)),
        Change::TaskParked { task, parents } => {
            // Held by no hub, like a released task, until its parents ended.
            rows.push(Row {
                sql: Sql::ReleaseTask,
                key: Key::Task(task.0),
                values: vec![uuid(task.0)],
            });
            rows.push(Row {
                sql: Sql::InsertParked,
                key: Key::Parked(task.0),
                values: vec![uuid(task.0), Value::Text(join_ids(parents))],
            });
        }
        Change::TaskReleased {
            task,
            capability,
            priority,
            created_at,
            rank,
        } => {
            rows.push(Row {
                sql: Sql::ReleaseTask,
                key: Key::Task(task.0),
                values: vec![uuid(task.0)],
            });
            rows.push(Row {
                sql: Sql::InsertPool,
                key: Key::Pool(task.0),
                values: vec![
                    uuid(task.0),
                    text(capability.as_str()),
                    int_v(i32::from(*priority)),
                    big(ts(*created_at)),
                    big(*rank),
                ],
            });
        }
        Change::TaskReady { task, at, .. } => rows.push(Row {
            sql: Sql::TaskReady,
            key: Key::Task(task.0),
            values: vec![uuid(task.0), big(ts(*at))],
        }),
        Change::AttemptStarted {
            spec,
            attempt,
            agent,
            started_at,
            lease_until,
            identity,
            ..
        } => {
            // A consensus task's replicas have rows of their own in `attempts` from their start.
            let plain = spec.consensus.is_none();
            rows.push(Row {
                sql: Sql::TaskRunning,
                key: Key::Task(spec.id.0),
                values: vec![
                    uuid(spec.id.0),
                    int_v(int(*attempt)),
                    big(ts(*lease_until)),
                    big(ts(*started_at)),
                    Value::Uuid(plain.then_some(agent.0)),
                    Value::Big(plain.then(|| ts(*started_at))),
                ],
            });
            if !plain {
                rows.push(insert_attempt(
                    spec.id.0,
                    *attempt,
                    agent.0,
                    *started_at,
                    identity.as_deref(),
                ));
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
            let attempt_key = Key::Attempt(task.0, int(*attempt));
            let mut ended = vec![
                uuid(task.0),
                int_v(int(*attempt)),
                big(ts(*ended_at)),
                text(outcome.as_str()),
                opt_text(error.as_deref()),
            ];
            if *next == NextStatus::Voting {
                // A replica: its result is kept on the attempt; the task runs on.
                ended.push(opt_text(output.as_deref()));
                rows.push(Row {
                    sql: Sql::ReplicaEnded,
                    key: attempt_key,
                    values: ended,
                });
                return;
            }
            // Any other end is a plain task's; one that succeeded stays in the task's row.
            if *next != NextStatus::Succeeded {
                ended.push(Value::Uuid(agent.map(|a| a.0)));
                ended.push(big(ts(*started_at)));
                rows.push(Row {
                    sql: Sql::AttemptEndedOtherwise,
                    key: attempt_key,
                    values: ended,
                });
            }
            let not_before = match next {
                NextStatus::Retry { not_before } => Some(ts(*not_before)),
                _ => None,
            };
            rows.push(Row {
                sql: Sql::TaskAfterAttempt,
                key: Key::Task(task.0),
                values: vec![
                    uuid(task.0),
                    text(next.status().as_str()),
                    opt_text(output.as_deref()),
                    opt_text(error.as_deref()),
                    Value::Big(not_before),
                    big(ts(*ended_at)),
                ],
            });
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
            rows.push(Row {
                sql: Sql::TaskFinished,
                key: Key::Task(task.0),
                values: vec![
                    uuid(task.0),
                    text(status.as_str()),
                    opt_text(error.as_deref()),
                    big(ts(*at)),
                    opt_text(result.as_deref()),
                ],
            });
        }
        Change::AgentChanged(agent) => {
            let (capabilities, stats) = agent_json(agent);
            rows.push(Row {
                sql: Sql::UpsertAgent,
                key: Key::Agent(agent.id.0),
                values: vec![
                    uuid(agent.id.0),
                    text(agent.spec.name.as_str()),
                    text(capabilities),
                    int_v(int(agent.spec.slots)),
                    text(agent.state.as_str()),
                    big(ts(agent.connected_at)),
                    big(ts(agent.last_heartbeat)),
                    text(stats),
                    uuid(hub),
                ],
            });
        }
        Change::AttemptReattached {
            task,
            attempt,
            agent,
        } => {
            // A replica's row, or a plain task's (both, for an attempt a hub of a version before
            // migration 16 started: it wrote a row, and the task's row may hold the attempt too).
            let values = vec![uuid(task.0), int_v(int(*attempt)), uuid(agent.0)];
            rows.push(Row {
                sql: Sql::AttemptAgent,
                key: Key::Attempt(task.0, int(*attempt)),
                values: values.clone(),
            });
            rows.push(Row {
                sql: Sql::TaskAttemptAgent,
                key: Key::Task(task.0),
                values,
            });
        }
        Change::AgentForgotten { agent } => rows.push(Row {
            sql: Sql::DeleteAgent,
            key: Key::Agent(agent.0),
            values: vec![uuid(agent.0)],
        }),
        Change::Learned(learned) => {
            let e = &learned.estimate;
            rows.push(Row {
                sql: Sql::UpsertEstimate,
                key: Key::Estimate(
                    learned.identity.to_string(),
                    learned.capability.as_str().to_string(),
                ),
                values: vec![
                    text(&*learned.identity),
                    text(learned.capability.as_str()),
                    float(e.successes),
                    float(e.failures),
                    float(e.latency_ms),
                    float(e.deviation_ms),
                    big(e.samples as i64),
                    big(ts(e.updated_at)),
                    float(e.assigned),
                    big(ts(e.assigned_at)),
                ],
            });
        }
        Change::SendCancel { .. }
        | Change::SendResume { .. }
        | Change::SendDrain { .. }
        | Change::CloseAgent { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hive_core::{AgentId, AttemptOutcome, TaskId};

    use super::*;
    use crate::suite::spec;

    fn started(n: u128, attempt: u32) -> Change {
        Change::AttemptStarted {
            spec: spec(n),
            attempt,
            agent: AgentId(Uuid::from_u128(9)),
            started_at: Timestamp(15),
            lease_until: Timestamp(1_015),
            queued_ms: 0,
            inputs: vec![],
            identity: None,
        }
    }

    fn failed(n: u128, attempt: u32) -> Change {
        Change::AttemptEnded {
            task: TaskId(Uuid::from_u128(n)),
            capability: spec(n).capability.clone(),
            attempt,
            agent: None,
            created_at: Timestamp(10),
            started_at: Timestamp(15),
            ended_at: Timestamp(20),
            outcome: AttemptOutcome::Failed,
            output: None,
            error: Some("no".into()),
            next: NextStatus::Retry {
                not_before: Timestamp(30),
            },
        }
    }

    fn kinds(statements: &[Statement]) -> Vec<Sql> {
        statements.iter().map(|(sql, _)| *sql).collect()
    }

    #[test]
    fn estimates_are_written_once_each_in_key_order_apart_from_the_tasks() {
        let learned = |identity: &str, samples: u64| {
            Change::Learned(hive_core::LearnedEstimate {
                identity: identity.into(),
                capability: hive_core::Capability::parse("echo", "c").unwrap(),
                estimate: hive_core::Estimate {
                    samples,
                    ..Default::default()
                },
            })
        };
        let first = [learned("w-b", 1), learned("w-a", 1), started(1, 1)];
        let second = [learned("w-b", 2)];
        let Plan {
            statements,
            estimates,
        } = plan(&[&first, &second], Uuid::nil());
        assert!(!kinds(&statements).contains(&Sql::UpsertEstimate));
        assert!(estimates.values().all(|row| row.sql == Sql::UpsertEstimate));
        let estimates = columns(estimates.into_values().map(|row| row.values).collect());
        let rendered = format!("{:?} {:?}", estimates[0], estimates[6]);
        assert_eq!(rendered, r#"[Some("w-a"), Some("w-b")] [Some(1), Some(2)]"#);
    }

    #[test]
    fn the_pool_is_notified_on_the_channel_hubs_listen_to() {
        let channel = format!("pg_notify('{}'", super::super::POOL_CHANNEL);
        assert!(Sql::NotifyPool.text().contains(&channel));
    }

    #[test]
    fn rows_of_distinct_tasks_share_one_statement_per_kind() {
        let created: Vec<Change> = (1..=50)
            .map(|n| Change::TaskCreated {
                spec: spec(n),
                status: TaskStatus::Waiting,
                error: None,
            })
            .collect();
        let statements = plan(&[&created[..25], &created[25..]], Uuid::nil()).statements;
        assert_eq!(kinds(&statements), vec![Sql::InsertTask]);
        assert_eq!(statements[0].1.len(), 27, "one array per column");
    }

    #[test]
    fn changes_of_a_row_inserted_in_the_segment_fold_into_its_insert() {
        let queued = Change::TaskCreated {
            spec: Arc::new((*spec(1)).clone()),
            status: TaskStatus::Queued,
            error: None,
        };
        // Task 1 is created, started, fails and is started again; task 2 starts beside it.
        let changes = [
            queued,
            started(1, 1),
            started(2, 1),
            failed(1, 1),
            started(1, 2),
        ];
        let statements = plan(&[&changes], Uuid::nil()).statements;
        assert_eq!(
            kinds(&statements),
            vec![
                Sql::InsertTask,
                Sql::TaskRunning,
                Sql::AttemptEndedOtherwise
            ],
            "task 1 written once, as it ends up, and its failed attempt once"
        );
    }

    #[test]
    fn a_row_updated_again_waits_for_the_next_segment_so_changes_apply_in_order() {
        // Task 1 exists already: its updates cannot fold into an insert.
        let changes = [started(1, 1), failed(1, 1), started(1, 2)];
        let statements = plan(&[&changes], Uuid::nil()).statements;
        assert_eq!(
            kinds(&statements),
            vec![
                Sql::TaskRunning,
                Sql::AttemptEndedOtherwise,
                Sql::TaskAfterAttempt,
                Sql::TaskRunning,
            ]
        );
    }

    #[test]
    fn an_attempt_ended_in_the_segment_that_inserts_its_task_takes_its_agent_and_start_from_the_insert()
     {
        // Task 1 is created and started at 15 by agent 9; its attempt fails, reported without
        // the agent and with another start (as by a hub that reloaded it), and the task starts
        // again at 40 by agent 8: all folded into the task's insert by the time it runs.
        let queued = Change::TaskCreated {
            spec: spec(1),
            status: TaskStatus::Queued,
            error: None,
        };
        let mut again = started(1, 2);
        if let Change::AttemptStarted {
            agent, started_at, ..
        } = &mut again
        {
            (*agent, *started_at) = (AgentId(Uuid::from_u128(8)), Timestamp(40));
        }
        let mut reloaded = failed(1, 1);
        if let Change::AttemptEnded { started_at, .. } = &mut reloaded {
            *started_at = Timestamp(19);
        }
        let statements = plan(&[&[queued, started(1, 1), reloaded, again]], Uuid::nil()).statements;
        let (sql, columns) = &statements[1];
        assert_eq!(*sql, Sql::AttemptEndedOtherwise);
        let rendered = format!(
            "{:?} {:?}",
            columns[ended_column::AGENT],
            columns[ended_column::STARTED_AT]
        );
        assert_eq!(
            rendered,
            "[Some(00000000-0000-0000-0000-000000000009)] [Some(15)]"
        );
    }

    #[test]
    fn a_plain_attempt_is_kept_in_its_task_row_and_a_replica_in_a_row_of_its_own() {
        let mut succeeded = failed(1, 1);
        if let Change::AttemptEnded { next, outcome, .. } = &mut succeeded {
            (*next, *outcome) = (NextStatus::Succeeded, AttemptOutcome::Succeeded);
        }
        let statements = plan(&[&[started(1, 1), succeeded]], Uuid::nil()).statements;
        assert_eq!(
            kinds(&statements),
            vec![Sql::TaskRunning, Sql::TaskAfterAttempt],
            "no row of `attempts` for an attempt that succeeded"
        );
        let mut replica = started(2, 1);
        if let Change::AttemptStarted { spec, identity, .. } = &mut replica {
            let mut replicated = (**spec).clone();
            replicated.consensus = hive_core::ConsensusSpec::from_fields(Some(3), Some(2), None)
                .unwrap()
                .map(Box::new);
            *spec = Arc::new(replicated);
            *identity = Some("w".into());
        }
        let statements = plan(&[&[replica]], Uuid::nil()).statements;
        assert_eq!(
            kinds(&statements),
            vec![Sql::InsertAttempt, Sql::TaskRunning]
        );
    }
}
