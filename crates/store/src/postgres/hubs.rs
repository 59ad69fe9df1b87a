//! Several hubs on one PostgreSQL database: joining, the lease, claiming from the pool, taking a
//! lost hub's tasks over, and the notifications that wake hubs when work is pooled.
//!
//! Ownership, in the database: each active task names the hub that holds it in memory
//! (`tasks.hub`), except queued tasks a hub let go, which wait in `pool` with no hub. A hub's
//! writes are fenced by its row in `hubs` (`hive_fence`, migration 0007): whoever takes a hub's
//! tasks over deletes that row in the same transaction, so nothing that hub commits afterwards
//! can land. Leases run on the database's clock.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Transaction};
use futures_util::StreamExt;
use hive_core::{Capability, TaskId, Timestamp};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use super::read::{ended_parents, recovered_tasks};
use super::{Shared, db_error};
use crate::StoreError;
use crate::codec::{from_ts, status, ts};
use crate::hubs::{
    Adopted, CANCEL_CHANNEL, CancelElsewhere, HubLoad, HubRecord, Membership, Renewal,
};
use crate::swarm::{SWARM_CHANNEL, SWARM_REPLY_CHANNEL};

/// The database's clock in milliseconds since the Unix epoch.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// The channel on which a commit that pooled tasks names their capabilities.
pub const POOL_CHANNEL: &str = "hive_pool";

/// How a hub is known among the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubIdentity {
    /// Unique among the hubs of a database; a hub starting under the name of one that is still
    /// listed (its previous run, killed) takes that one's tasks over at once. `None`: a name
    /// made from the hub's id.
    pub name: Option<String>,
    /// How long a heartbeat extends the lease; a hub silent this long loses its tasks.
    pub lease: Duration,
}

impl Default for HubIdentity {
    fn default() -> Self {
        HubIdentity {
            name: None,
            lease: Duration::from_secs(10),
        }
    }
}

/// Inserts this hub's row and takes over the tasks of an earlier hub of the same name and of
/// hubs whose lease ended.
pub(super) async fn join(
    shared: &Shared,
    identity: &HubIdentity,
) -> Result<(String, usize), StoreError> {
    let me = shared.hub;
    let name = identity
        .name
        .clone()
        // The id's random end: its start is a timestamp, alike for hubs started together.
        .unwrap_or_else(|| format!("hub-{}", &me.simple().to_string()[20..]));
    let lease_ms = lease_ms(identity.lease);
    let mut client = shared.connection().await?;
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute(
        &format!(
            "INSERT INTO hubs (id, name, address, started_at, heartbeat_at, lease_until)
             VALUES ($1, $2, '', {NOW_MS}, {NOW_MS}, {NOW_MS} + $3)"
        ),
        &[&me, &name, &lease_ms],
    )
    .await
    .map_err(db_error)?;
    // An earlier run of this hub: waits for a commit of it in flight (its fence holds the
    // row), then fences it out.
    let mut previous: Vec<Uuid> = tx
        .query(
            "SELECT id FROM hubs WHERE name = $1 AND id <> $2 FOR UPDATE",
            &[&name, &me],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // And hubs whose lease ended, that no other hub is taking over now.
    previous.extend(lost_hubs(&tx, me).await?);
    let taken = take_over(&tx, me, &previous).await?;
    tx.commit().await.map_err(db_error)?;
    if !previous.is_empty() {
        tracing::info!(hubs = previous.len(), %name, "took over the hubs of this name or with ended leases");
    }
    Ok((name, taken.len()))
}

/// Hubs other than `me` whose lease ended, locked for taking over. SKIP LOCKED: a lost hub
/// another hub is taking over, or one whose last commit is still in flight, is left for the
/// next round.
async fn lost_hubs(tx: &Transaction<'_>, me: Uuid) -> Result<Vec<Uuid>, StoreError> {
    Ok(tx
        .query(
            &format!(
                "SELECT id FROM hubs WHERE lease_until < {NOW_MS} AND id <> $1
                 FOR UPDATE SKIP LOCKED"
            ),
            &[&me],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Moves the active tasks of `lost` hubs to `me`, marks their agents offline, and deletes their
/// rows (which fences them out). Returns the ids of the tasks taken.
async fn take_over(tx: &Transaction<'_>, me: Uuid, lost: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
    if lost.is_empty() {
        return Ok(Vec::new());
    }
    let lost = lost.to_vec();
    let taken = tx
        .query(
            "UPDATE tasks SET hub = $1
             WHERE hub = ANY($2) AND status IN ('waiting', 'queued', 'running') RETURNING id",
            &[&me, &lost],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    tx.execute(
        "UPDATE agents SET state = 'offline' WHERE hub = ANY($1) AND state <> 'offline'",
        &[&lost],
    )
    .await
    .map_err(db_error)?;
    tx.execute("DELETE FROM hubs WHERE id = ANY($1)", &[&lost])
        .await
        .map_err(db_error)?;
    Ok(taken)
}

/// Takes up to `$2` pooled tasks of the capability `$1` that no other claim holds, in the order
/// of a hub's ready queue.
pub(super) const CLAIM: &str = "DELETE FROM pool WHERE task_id IN (
        SELECT task_id FROM pool WHERE capability = $1
        ORDER BY rank, task_id LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING task_id";

/// A transaction of hub `me`, fenced first (see `hive_fence`, migration 0007).
async fn fenced(
    client: &mut deadpool_postgres::Object,
    me: Uuid,
) -> Result<Transaction<'_>, StoreError> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT hive_fence($1)", &[&me])
        .await
        .map_err(db_error)?;
    Ok(tx)
}

/// Makes the tasks `ids` (just taken out of the pool, or parked) hub `me`'s, reads them as a
/// scheduler restores them, and commits.
async fn make_mine(tx: Transaction<'_>, me: Uuid, ids: Vec<Uuid>) -> Result<Adopted, StoreError> {
    if ids.is_empty() {
        tx.commit().await.map_err(db_error)?;
        return Ok(Adopted::default());
    }
    tx.execute("UPDATE tasks SET hub = $1 WHERE id = ANY($2)", &[&me, &ids])
        .await
        .map_err(db_error)?;
    let adopted = adopted(&tx, ids).await?;
    tx.commit().await.map_err(uncertain)?;
    Ok(adopted)
}

/// The tasks `ids` as a scheduler restores them, with their ended parents.
async fn adopted(client: &impl GenericClient, ids: Vec<Uuid>) -> Result<Adopted, StoreError> {
    if ids.is_empty() {
        return Ok(Adopted::default());
    }
    let tasks = recovered_tasks(client, "id = ANY($1)", &[&ids]).await?;
    let parents = ended_parents(client, &tasks).await?;
    Ok(Adopted { tasks, parents })
}

/// A failed `COMMIT` of a transaction that took tasks over: they may be this hub's now, and
/// nobody else's, though this hub never heard of them (see `StoreError::CommitUncertain`).
fn uncertain(e: tokio_postgres::Error) -> StoreError {
    StoreError::CommitUncertain(db_error(e).to_string())
}

fn lease_ms(lease: Duration) -> i64 {
    lease.as_millis().min(i64::MAX as u128) as i64
}

/// This hub's membership (see [`Membership`]).
pub struct PgMembership {
    shared: Arc<Shared>,
    lease_ms: i64,
    /// Renewals' own connection, outside the pool, so that a pool busy with requests never
    /// makes a healthy hub miss its renewals. Opened on first use, and again after it broke.
    lease_connection: Arc<tokio::sync::Mutex<Option<tokio_postgres::Client>>>,
}

impl PgMembership {
    pub(super) fn new(shared: Arc<Shared>, lease: Duration) -> Self {
        PgMembership {
            shared,
            lease_ms: lease_ms(lease),
            lease_connection: Arc::default(),
        }
    }
}

/// Renews hub `me`'s lease on `client` and counts the other live hubs.
async fn renew_on(
    client: &tokio_postgres::Client,
    me: Uuid,
    lease_ms: i64,
    load: &HubLoad,
) -> Result<Renewal, StoreError> {
    let renewed = client
        .execute(
            &format!(
                "UPDATE hubs SET heartbeat_at = {NOW_MS}, lease_until = {NOW_MS} + $2,
                    address = $3, agents = $4, slots = $5, tasks = $6, queued = $7
                 WHERE id = $1 AND lease_until <> 0"
            ),
            &[
                &me,
                &lease_ms,
                &load.address,
                &count(load.agents),
                &count(load.slots),
                &count(load.tasks),
                &count(load.queued),
            ],
        )
        .await
        .map_err(db_error)?;
    if renewed == 0 {
        return Ok(Renewal::Lost);
    }
    let others: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM hubs WHERE id <> $1 AND lease_until > {NOW_MS}"),
            &[&me],
        )
        .await
        .map_err(db_error)?
        .get(0);
    Ok(Renewal::Renewed {
        others: others.max(0) as usize,
    })
}

impl Membership for PgMembership {
    fn id(&self) -> Uuid {
        self.shared.hub
    }

    /// A lease ended by `leave` (0) stays ended: a renewal still in flight when the hub left
    /// must not extend it.
    fn renew(&self, load: &HubLoad) -> Result<Renewal, StoreError> {
        let lease_ms = self.lease_ms;
        let load = load.clone();
        let slot = self.lease_connection.clone();
        self.shared.block(|shared| async move {
            let mut slot = slot.lock().await;
            if slot.as_ref().is_none_or(|client| client.is_closed()) {
                let (client, connection) = shared.config.connect(NoTls).await.map_err(db_error)?;
                // Driven on the store's runtime, where this runs; ends when the client goes.
                tokio::spawn(connection);
                *slot = Some(client);
            }
            let client = slot.as_ref().expect("connected above");
            let renewed = renew_on(client, shared.hub, lease_ms, &load).await;
            if renewed.is_err() {
                // Not trusted again: the next renewal opens a new one.
                *slot = None;
            }
            renewed
        })
    }

    fn adopt_lost(&self) -> Result<Adopted, StoreError> {
        self.shared.block(|shared| async move {
            let me = shared.hub;
            let mut client = shared.connection().await?;
            let tx = fenced(&mut client, me).await?;
            let lost = lost_hubs(&tx, me).await?;
            let taken = take_over(&tx, me, &lost).await?;
            let adopted = adopted(&tx, taken).await?;
            tx.commit().await.map_err(uncertain)?;
            if !lost.is_empty() {
                tracing::warn!(
                    hubs = lost.len(),
                    tasks = adopted.tasks.len(),
                    "took over the tasks of hubs whose lease ended"
                );
            }
            Ok(adopted)
        })
    }

    fn adopt_unparked(&self) -> Result<Adopted, StoreError> {
        self.shared.block(|shared| async move {
            let me = shared.hub;
            let mut client = shared.connection().await?;
            let tx = fenced(&mut client, me).await?;
            let ids: Vec<Uuid> = tx
                .query(
                    "DELETE FROM parked WHERE task_id IN (
                        SELECT p.task_id FROM parked p
                        WHERE NOT EXISTS (
                            SELECT 1 FROM tasks t WHERE t.id = ANY(p.parents)
                            AND t.status IN ('waiting', 'queued', 'running'))
                        LIMIT 1000 FOR UPDATE OF p SKIP LOCKED)
                     RETURNING task_id",
                    &[],
                )
                .await
                .map_err(db_error)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            make_mine(tx, me, ids).await
        })
    }

    fn claim(&self, wants: &[(Capability, u32)]) -> Result<Adopted, StoreError> {
        let wants: Vec<(String, i64)> = wants
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| (c.as_str().to_string(), i64::from(*n)))
            .collect();
        if wants.is_empty() {
            return Ok(Adopted::default());
        }
        self.shared.block(|shared| async move {
            let me = shared.hub;
            let mut client = shared.connection().await?;
            let tx = fenced(&mut client, me).await?;
            tx.batch_execute(super::BY_INDEX).await.map_err(db_error)?;
            let mut ids: Vec<Uuid> = Vec::new();
            for (capability, n) in &wants {
                let rows = tx.query(CLAIM, &[capability, n]).await.map_err(db_error)?;
                ids.extend(rows.iter().map(|row| row.get::<_, Uuid>(0)));
            }
            make_mine(tx, me, ids).await
        })
    }

    fn hubs(&self) -> Result<Vec<HubRecord>, StoreError> {
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT id, name, address, started_at, heartbeat_at, lease_until, agents,
                            slots, tasks, queued, lease_until > {NOW_MS} FROM hubs
                         ORDER BY name, started_at"
                    ),
                    &[],
                )
                .await
                .map_err(db_error)?;
            Ok(rows
                .iter()
                .map(|row| HubRecord {
                    id: row.get(0),
                    name: row.get(1),
                    started_at: from_ts(row.get(3)),
                    heartbeat_at: from_ts(row.get(4)),
                    lease_until: from_ts(row.get(5)),
                    held: row.get(10),
                    load: HubLoad {
                        address: row.get(2),
                        agents: row.get::<_, i32>(6).max(0) as u32,
                        slots: row.get::<_, i32>(7).max(0) as u32,
                        tasks: row.get::<_, i32>(8).max(0) as u32,
                        queued: row.get::<_, i32>(9).max(0) as u32,
                    },
                })
                .collect())
        })
    }

    fn pooled(&self) -> Result<u64, StoreError> {
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let n: i64 = client
                .query_one("SELECT count(*) FROM pool", &[])
                .await
                .map_err(db_error)?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }

    fn cancel_elsewhere(&self, task: TaskId, at: Timestamp) -> Result<CancelElsewhere, StoreError> {
        self.shared.block(|shared| async move {
            let mut client = shared.connection().await?;
            let tx = client.transaction().await.map_err(db_error)?;
            // The pool's row first, as a claim locks it (then the task's): the same order, so
            // a claim and a cancel never wait for each other in a circle.
            let mut pooled = tx
                .execute("DELETE FROM pool WHERE task_id = $1", &[&task.0])
                .await
                .map_err(db_error)?;
            pooled += tx
                .execute("DELETE FROM parked WHERE task_id = $1", &[&task.0])
                .await
                .map_err(db_error)?;
            let outcome = if pooled > 0 {
                tx.execute(
                    "UPDATE tasks SET status = 'cancelled', error = 'cancelled', updated_at = $2
                     WHERE id = $1",
                    &[&task.0, &ts(at)],
                )
                .await
                .map_err(db_error)?;
                CancelElsewhere::CancelledInPool
            } else {
                let found = tx
                    .query_opt("SELECT status FROM tasks WHERE id = $1", &[&task.0])
                    .await
                    .map_err(db_error)?;
                match found {
                    None => CancelElsewhere::Unknown,
                    Some(row) => match status(&row.get::<_, String>(0))? {
                        s if s.is_terminal() => CancelElsewhere::Ended(s),
                        _ => {
                            tx.execute(
                                &format!("SELECT pg_notify('{CANCEL_CHANNEL}', $1)"),
                                &[&task.to_string()],
                            )
                            .await
                            .map_err(db_error)?;
                            CancelElsewhere::Forwarded
                        }
                    },
                }
            };
            tx.commit().await.map_err(db_error)?;
            Ok(outcome)
        })
    }

    fn ended_among(&self, tasks: &[TaskId]) -> Result<Vec<TaskId>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = tasks.iter().map(|t| t.0).collect();
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let rows = client
                .query(
                    "SELECT id FROM tasks WHERE id = ANY($1)
                     AND status NOT IN ('waiting', 'queued', 'running')",
                    &[&ids],
                )
                .await
                .map_err(db_error)?;
            Ok(rows.iter().map(|row| TaskId(row.get(0))).collect())
        })
    }

    fn leave(&self) -> Result<(), StoreError> {
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            client
                .execute(
                    "UPDATE hubs SET lease_until = 0 WHERE id = $1",
                    &[&shared.hub],
                )
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }
}

fn count(n: u32) -> i32 {
    n.min(i32::MAX as u32) as i32
}

/// What the hubs notify each other of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Tasks of this capability were pooled ([`POOL_CHANNEL`]).
    Pooled(String),
    /// A hub asks the hub holding this task to cancel it ([`CANCEL_CHANNEL`]).
    Cancel(String),
    /// A hub published this swarm message for the others to deliver ([`SWARM_CHANNEL`]).
    Swarm(String),
    /// Another hub delivered or relayed a reply to this swarm message
    /// ([`SWARM_REPLY_CHANNEL`]).
    SwarmReply(String),
    /// The listening connection was (re)established: notices may have been missed meanwhile.
    Listening,
}

/// Listens on [`POOL_CHANNEL`], [`CANCEL_CHANNEL`] and the swarm channels on a connection of
/// its own (outside the pool: it stays in LISTEN for the hub's life), reconnecting after a
/// second when it breaks. Ends when the receiver is dropped.
pub(super) fn listen(shared: &Arc<Shared>) -> mpsc::UnboundedReceiver<Notice> {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = shared.config.clone();
    let runtime = shared.runtime.as_ref().expect("taken only on drop");
    runtime.spawn(async move {
        while !tx.is_closed() {
            match config.connect(NoTls).await {
                Ok((client, mut connection)) => {
                    // The connection delivers notifications only while it is polled, which
                    // also carries the LISTEN itself: polled on a task of its own.
                    let forward_to = tx.clone();
                    let mut forward = tokio::spawn(async move {
                        let mut messages =
                            futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(Ok(message)) = messages.next().await {
                            if let AsyncMessage::Notification(n) = message {
                                let payload = n.payload().to_string();
                                let notice = match n.channel() {
                                    CANCEL_CHANNEL => Notice::Cancel(payload),
                                    SWARM_CHANNEL => Notice::Swarm(payload),
                                    SWARM_REPLY_CHANNEL => Notice::SwarmReply(payload),
                                    _ => Notice::Pooled(payload),
                                };
                                if forward_to.send(notice).is_err() {
                                    return;
                                }
                            }
                        }
                    });
                    let listening = client
                        .batch_execute(&format!(
                            "LISTEN {POOL_CHANNEL}; LISTEN {CANCEL_CHANNEL};
                             LISTEN {SWARM_CHANNEL}; LISTEN {SWARM_REPLY_CHANNEL}"
                        ))
                        .await
                        .is_ok();
                    if listening && tx.send(Notice::Listening).is_ok() {
                        tokio::select! {
                            _ = &mut forward => {}
                            _ = tx.closed() => {}
                        }
                    }
                    forward.abort();
                    drop(client);
                }
                Err(e) => tracing::debug!(error = %e, "cannot listen for pooled work"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}
