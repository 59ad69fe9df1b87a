//! The work loop of a hub among several (see the module above): take-overs, claims,
//! notifications (swarm broadcasts are handed to tasks of their own), long-polls on tasks other
//! hubs finish. One loop, so that its store calls never
//! overlap; the lease is kept elsewhere.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hive_core::{Capability, TaskId};
use hive_store::postgres::Notice;
use hive_store::{Adopted, StoreError};
use tokio::sync::{mpsc, oneshot};

use super::{HubParts, Shared, blocking, lock};
use crate::actor::Command;
use crate::actor::sharing::ClaimRequest;

/// How often the actor is told to look in the pool again without a notification, and parked
/// tasks are looked at: notifications can be missed (a reconnect), and a hub with no room when
/// one came may have room now.
const BACKSTOP: Duration = Duration::from_secs(1);

/// How often long-polls parked here are looked up in the store: a task another hub finishes
/// wakes its waiters here within this long (one query for all of them).
const WAITS_POLL: Duration = Duration::from_millis(200);

/// How long the loop waits for the actor's overview (its load) before keeping the last one.
const OVERVIEW_WAIT: Duration = Duration::from_secs(1);

struct Work {
    shared: Arc<Shared>,
    parts: HubParts,
    /// The peers last told to the actor.
    told_peers: Option<usize>,
    draining: bool,
}

pub(super) async fn run(
    shared: Arc<Shared>,
    parts: HubParts,
    mut notices: mpsc::UnboundedReceiver<Notice>,
    lease: Duration,
) {
    let stopping = parts.stopping.clone();
    let mut work = Work {
        shared,
        parts,
        told_peers: None,
        draining: false,
    };
    let mut beat = tokio::time::interval(lease / 4);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backstop = tokio::time::interval(BACKSTOP);
    backstop.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waits = tokio::time::interval(WAITS_POLL);
    waits.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let keep_going = tokio::select! {
            _ = beat.tick() => work.beat().await,
            _ = backstop.tick() => work.hint(None).await && work.unpark().await,
            _ = waits.tick() => work.wake_ended().await,
            Some(notice) = notices.recv() => match notice {
                Notice::Listening => {
                    tokio::spawn(super::swarm::deliver_missed(work.parts.swarm.clone()));
                    work.hint(None).await
                }
                Notice::Cancel(id) => match id.parse::<uuid::Uuid>() {
                    Ok(id) => work.tell(Command::CancelHeld { task: TaskId(id) }).await,
                    Err(_) => true,
                },
                Notice::Pooled(name) => match Capability::parse(&name, "capability") {
                    Ok(capability) => work.hint(Some(capability)).await,
                    Err(_) => true,
                },
                // Broadcasts run apart: a slow swarm must not hold up claims.
                Notice::Swarm(id) => {
                    if let Ok(id) = id.parse::<uuid::Uuid>() {
                        tokio::spawn(super::swarm::deliver(work.parts.swarm.clone(), id));
                    }
                    true
                }
                Notice::SwarmReply(id) => {
                    if let Ok(id) = id.parse::<uuid::Uuid>() {
                        work.parts.swarm.swarms.wake_relayed(id);
                    }
                    true
                }
            },
            Some(asked) = work.parts.claims.recv() => work.claim(asked).await,
            _ = crate::state::stopped(stopping.clone()) => false,
        };
        if !keep_going {
            return;
        }
    }
}

impl Work {
    /// Refreshes the load the lease keeper reports, tells the actor how many peers it has, and
    /// takes over the tasks of hubs whose lease ended.
    async fn beat(&mut self) -> bool {
        self.refresh_load().await;
        tokio::spawn(super::swarm::sweep(self.parts.swarm.relay.clone()));
        let others = self.shared.others.load(Ordering::Relaxed);
        if self.told_peers != Some(others) {
            if !self.tell(Command::Peers { others }).await {
                return false;
            }
            self.told_peers = Some(others);
        }
        if self.draining {
            // A stopping hub takes nothing on that it would only hand back.
            return true;
        }
        let store = self.shared.store.clone();
        let adopted = blocking(move || store.adopt_lost()).await;
        self.take(adopted, None).await
    }

    /// Takes over parked tasks whose parents all ended (on any hub).
    async fn unpark(&mut self) -> bool {
        if self.draining {
            return true;
        }
        let store = self.shared.store.clone();
        let adopted = blocking(move || store.adopt_unparked()).await;
        self.take(adopted, None).await
    }

    async fn claim(&mut self, asked: ClaimRequest) -> bool {
        let store = self.shared.store.clone();
        let wants = asked.clone();
        let adopted = blocking(move || store.claim(&wants)).await;
        self.take(adopted, Some(asked)).await
    }

    /// Hands what a take-over brought to the actor. A failed claim is answered empty (the
    /// actor may ask again); a take-over whose commit may have landed unheard stops the hub.
    async fn take(
        &mut self,
        adopted: Result<Adopted, StoreError>,
        asked: Option<ClaimRequest>,
    ) -> bool {
        let adopted = match adopted {
            Ok(adopted) => adopted,
            Err(StoreError::LeaseLost) => {
                self.shared
                    .lose("this hub lost its lease: another hub took its tasks over");
                return false;
            }
            Err(StoreError::CommitUncertain(e)) => {
                // Tasks may be this hub's now without its scheduler knowing them; nobody else
                // would run them while it lives. A restart under its name loads them.
                tracing::error!(error = %e, "a take-over's commit may or may not have landed");
                self.shared
                    .lose("this hub cannot tell which tasks it holds");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not take tasks over");
                Adopted::default()
            }
        };
        if adopted.tasks.is_empty() && asked.is_none() {
            return true;
        }
        self.tell(Command::Adopt { adopted, asked }).await
    }

    /// Wakes the long-polls parked here whose task has ended (on any hub).
    async fn wake_ended(&mut self) -> bool {
        let parked = self.parts.waiters.parked();
        if parked.is_empty() {
            return true;
        }
        let store = self.shared.store.clone();
        match blocking(move || store.ended_among(&parked)).await {
            Ok(ended) => {
                for task in ended {
                    self.parts.waiters.notify(task);
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not look up waited-on tasks"),
        }
        true
    }

    async fn hint(&mut self, capability: Option<Capability>) -> bool {
        self.tell(Command::PoolHint { capability }).await
    }

    async fn tell(&self, command: Command) -> bool {
        self.parts.commands.send(command).await.is_ok()
    }

    /// Agents, slots and tasks as the actor sees them now, for the lease keeper to report. Not
    /// waited for long: a busy actor keeps the last load.
    async fn refresh_load(&mut self) {
        let (reply, overview) = oneshot::channel();
        if self
            .parts
            .commands
            .try_send(Command::Overview { reply })
            .is_err()
        {
            return;
        }
        let Ok(Ok(overview)) = tokio::time::timeout(OVERVIEW_WAIT, overview).await else {
            return;
        };
        self.draining = overview.hub_draining;
        let mut load = lock(&self.shared.load);
        *load = hive_store::HubLoad {
            address: std::mem::take(&mut load.address),
            ..overview.load()
        };
    }
}
