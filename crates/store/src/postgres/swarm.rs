//! [`SwarmRelay`] on PostgreSQL: the `swarm_*` tables (migration 0008), with a notification in
//! the same transaction as each row, so that a hub woken by one finds the row.

use std::sync::Arc;

use uuid::Uuid;

use super::read::col;
use super::{Shared, db_error};
use crate::StoreError;
use crate::swarm::{Relayed, SWARM_CHANNEL, SWARM_REPLY_CHANNEL, SwarmMessage, SwarmRelay};

/// How long past its wait a message is kept at most (its sender deletes it at once, unless a
/// publish that timed out on its side committed after that delete).
const STALE_AFTER_MS: i64 = 60_000;

/// The database's clock, as the hubs' leases use it.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

pub struct PgSwarmRelay {
    shared: Arc<Shared>,
}

impl PgSwarmRelay {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        PgSwarmRelay { shared }
    }

    /// Runs `sql` with `params` and then notifies `channel` of message `id`, in one transaction.
    fn write_and_notify(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>,
        channel: &'static str,
        id: Uuid,
    ) -> Result<(), StoreError> {
        self.shared.block(|shared| async move {
            let mut client = shared.connection().await?;
            let tx = client.transaction().await.map_err(db_error)?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|p| &**p as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            tx.execute(sql, &refs).await.map_err(db_error)?;
            tx.execute("SELECT pg_notify($1, $2)", &[&channel, &id.to_string()])
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)
        })
    }
}

impl SwarmRelay for PgSwarmRelay {
    fn publish(&self, message: &SwarmMessage) -> Result<Vec<Uuid>, StoreError> {
        let message = message.clone();
        let hub = self.shared.hub;
        self.shared.block(|shared| async move {
            let mut client = shared.connection().await?;
            let tx = client.transaction().await.map_err(db_error)?;
            tx.execute(
                "INSERT INTO swarm_messages (id, grp, payload, origin, timeout_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &message.id,
                    &message.group,
                    &message.payload,
                    &message.origin,
                    &(message.timeout_ms as i64),
                ],
            )
            .await
            .map_err(db_error)?;
            let others = tx
                .query(
                    &format!("SELECT id FROM hubs WHERE id <> $1 AND lease_until > {NOW_MS}"),
                    &[&hub],
                )
                .await
                .map_err(db_error)?
                .iter()
                .map(|row| col(row, 0))
                .collect::<Result<Vec<Uuid>, _>>()?;
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&SWARM_CHANNEL, &message.id.to_string()],
            )
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            Ok(others)
        })
    }

    fn message(&self, id: Uuid) -> Result<Option<SwarmMessage>, StoreError> {
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let row = client
                .query_opt(
                    "SELECT grp, payload, origin, timeout_ms FROM swarm_messages WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(db_error)?;
            row.map(|row| {
                Ok(SwarmMessage {
                    id,
                    group: col(&row, 0)?,
                    payload: col(&row, 1)?,
                    origin: col(&row, 2)?,
                    timeout_ms: col::<i64>(&row, 3)?.max(0) as u64,
                })
            })
            .transpose()
        })
    }

    fn delivered(&self, id: Uuid, recipients: &[Uuid]) -> Result<(), StoreError> {
        self.write_and_notify(
            // Nothing when the origin deleted the message meanwhile (it stopped waiting).
            "INSERT INTO swarm_deliveries (message_id, hub, recipients)
             SELECT id, $2, $3 FROM swarm_messages WHERE id = $1
             ON CONFLICT DO NOTHING",
            vec![
                Box::new(id),
                Box::new(self.shared.hub),
                Box::new(recipients.to_vec()),
            ],
            SWARM_REPLY_CHANNEL,
            id,
        )
    }

    fn replied(&self, id: Uuid, agent: Uuid, output: &str) -> Result<(), StoreError> {
        self.write_and_notify(
            "INSERT INTO swarm_replies (message_id, agent_id, output)
             SELECT id, $2, $3 FROM swarm_messages WHERE id = $1
             ON CONFLICT DO NOTHING",
            vec![Box::new(id), Box::new(agent), Box::new(output.to_string())],
            SWARM_REPLY_CHANNEL,
            id,
        )
    }

    fn relayed(&self, id: Uuid) -> Result<Relayed, StoreError> {
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let delivered = client
                .query(
                    "SELECT hub, recipients FROM swarm_deliveries WHERE message_id = $1",
                    &[&id],
                )
                .await
                .map_err(db_error)?
                .iter()
                .map(|row| Ok((col(row, 0)?, col(row, 1)?)))
                .collect::<Result<_, StoreError>>()?;
            let replies = client
                .query(
                    "SELECT agent_id, output FROM swarm_replies WHERE message_id = $1",
                    &[&id],
                )
                .await
                .map_err(db_error)?
                .iter()
                .map(|row| Ok((col(row, 0)?, col(row, 1)?)))
                .collect::<Result<_, StoreError>>()?;
            Ok(Relayed { delivered, replies })
        })
    }

    fn unreported(&self) -> Result<Vec<Uuid>, StoreError> {
        let hub = self.shared.hub;
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            let rows = client
                .query(
                    "SELECT id FROM swarm_messages m WHERE origin <> $1 AND NOT EXISTS (
                        SELECT 1 FROM swarm_deliveries d WHERE d.message_id = m.id AND d.hub = $1)",
                    &[&hub],
                )
                .await
                .map_err(db_error)?;
            rows.iter().map(|row| col(row, 0)).collect()
        })
    }

    fn forget_orphans(&self) -> Result<u64, StoreError> {
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            client
                .execute(
                    &format!(
                        "DELETE FROM swarm_messages m
                         WHERE NOT EXISTS (SELECT 1 FROM hubs h WHERE h.id = m.origin)
                            OR sent_at + timeout_ms + $1 < {NOW_MS}"
                    ),
                    &[&STALE_AFTER_MS],
                )
                .await
                .map_err(db_error)
        })
    }

    fn forget(&self, id: Uuid) -> Result<(), StoreError> {
        self.shared.block(|shared| async move {
            let client = shared.connection().await?;
            client
                .execute("DELETE FROM swarm_messages WHERE id = $1", &[&id])
                .await
                .map_err(db_error)?;
            Ok(())
        })
    }
}
