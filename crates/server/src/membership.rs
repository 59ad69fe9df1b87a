//! A hub's membership among several hubs sharing a PostgreSQL database (docs/scaling.md): the
//! heartbeat that keeps its lease, taking over the tasks of hubs whose lease ended, the claims
//! the actor asks for, the hubs' notifications (work pooled, a cancel for a task held here),
//! and long-polls on tasks that other hubs finish.
//!
//! One task does all of it, so store calls (blocking, made on the blocking pool) never overlap
//! and never run on the actor. What comes back goes to the actor as commands. A hub that finds
//! its lease lost (another hub took its tasks over, after a database outage longer than the
//! lease, or a stall) stops: its writes are fenced out in the database already, and its memory
//! no longer matches what it owns, so it signals [`Membership::lease_lost`] and the binary exits
//! for its supervisor to start it again.

use std::sync::Arc;
use std::time::Duration;

use hive_core::{Capability, TaskId};
use hive_store::postgres::Notice;
use hive_store::{Adopted, HubLoad, Membership as StoreMembership, Renewal, StoreError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::actor::Command;
use crate::actor::sharing::ClaimRequest;
use crate::waiters::Waiters;

/// Claims the actor may have asked for before the membership task takes the next.
const CLAIM_QUEUE: usize = 1;

/// How often the actor is told to look in the pool again without a notification: notifications
/// can be missed (a reconnect), and a hub with no room when one came may have room now.
const BACKSTOP: Duration = Duration::from_secs(1);

/// How often long-polls parked here are looked up in the store: a task another hub finishes
/// wakes its waiters here within this long (one query for all of them).
const WAITS_POLL: Duration = Duration::from_millis(200);

/// What the store gives a hub among several: its membership, and the notifications the hubs
/// send each other.
pub struct StoreLink {
    pub store: Arc<dyn StoreMembership>,
    pub notices: mpsc::UnboundedReceiver<Notice>,
}

/// The running membership of a hub.
pub struct Membership {
    store: Arc<dyn StoreMembership>,
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// Handed to the actor: where it sends its claims.
pub fn claim_channel() -> (mpsc::Sender<ClaimRequest>, mpsc::Receiver<ClaimRequest>) {
    mpsc::channel(CLAIM_QUEUE)
}

impl Membership {
    /// Starts the heartbeat. `address`: where this hub serves, for the list of hubs.
    pub fn start(
        link: StoreLink,
        claims: mpsc::Receiver<ClaimRequest>,
        commands: mpsc::Sender<Command>,
        waiters: Arc<Waiters>,
        address: String,
        lease: Duration,
        stopping: watch::Receiver<bool>,
    ) -> Membership {
        let StoreLink { store, notices } = link;
        let (lost_tx, lost) = watch::channel(false);
        let beat = Heartbeat {
            store: store.clone(),
            commands,
            waiters,
            address,
            lost: lost_tx,
        };
        let task = tokio::spawn(beat.run(notices, claims, lease, stopping));
        Membership { store, lost, task }
    }

    pub fn store(&self) -> &Arc<dyn StoreMembership> {
        &self.store
    }

    /// Resolves once this hub lost its lease (never, while it holds it).
    pub async fn lease_lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|lost| *lost).await;
        if !*lost.borrow() {
            std::future::pending::<()>().await;
        }
    }

    /// After the hub's last commit: ends the lease now (unless it was lost), so that the
    /// other hubs take over what is left at their next heartbeat.
    pub async fn leave(self) {
        self.task.abort();
        let _ = self.task.await;
        if *self.lost.borrow() {
            return;
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.leave()).await {
            Ok(Ok(())) => tracing::info!("left the hubs: the others take over what is left"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not end this hub's lease; it ends by itself")
            }
            Err(_) => {}
        }
    }
}

struct Heartbeat {
    store: Arc<dyn StoreMembership>,
    commands: mpsc::Sender<Command>,
    waiters: Arc<Waiters>,
    address: String,
    lost: watch::Sender<bool>,
}

impl Heartbeat {
    async fn run(
        self,
        mut notices: mpsc::UnboundedReceiver<Notice>,
        mut claims: mpsc::Receiver<ClaimRequest>,
        lease: Duration,
        stopping: watch::Receiver<bool>,
    ) {
        // Four beats per lease: a lease survives three missed ones.
        let mut heartbeat = tokio::time::interval(lease / 4);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backstop = tokio::time::interval(BACKSTOP);
        let mut waits = tokio::time::interval(WAITS_POLL);
        waits.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let keep_going = tokio::select! {
                _ = heartbeat.tick() => self.beat().await,
                _ = backstop.tick() => self.hint(None).await && self.unpark().await,
                _ = waits.tick() => self.wake_ended().await,
                Some(notice) = notices.recv() => match notice {
                    Notice::Listening => self.hint(None).await,
                    Notice::Cancel(id) => match id.parse::<uuid::Uuid>() {
                        Ok(id) => self
                            .commands
                            .send(Command::CancelHeld { task: TaskId(id) })
                            .await
                            .is_ok(),
                        Err(_) => true,
                    },
                    Notice::Pooled(name) => match Capability::parse(&name, "capability") {
                        Ok(capability) => self.hint(Some(capability)).await,
                        Err(_) => true,
                    },
                },
                Some(asked) = claims.recv() => self.claim(asked).await,
                _ = crate::state::stopped(stopping.clone()) => false,
            };
            if !keep_going {
                return;
            }
        }
    }

    /// Renews the lease with this hub's load, tells the actor how many peers it has, and takes
    /// over the tasks of hubs whose lease ended. False once the lease is lost.
    async fn beat(&self) -> bool {
        let load = self.load().await;
        let store = self.store.clone();
        match blocking(move || store.renew(&load)).await {
            Ok(Renewal::Renewed { others }) => {
                if self.commands.send(Command::Peers { others }).await.is_err() {
                    return false;
                }
            }
            Ok(Renewal::Lost) | Err(StoreError::LeaseLost) => return self.lose(),
            Err(e) => {
                // The database is away: the lease runs out unless it returns in time, and the
                // fence keeps this hub's late writes out if it does not.
                tracing::warn!(error = %e, "could not renew this hub's lease");
                return true;
            }
        }
        let store = self.store.clone();
        match blocking(move || store.adopt_lost()).await {
            Ok(adopted) if adopted.tasks.is_empty() => true,
            Ok(adopted) => self.send_adopted(adopted, None).await,
            Err(StoreError::LeaseLost) => self.lose(),
            Err(e) => {
                tracing::warn!(error = %e, "could not take over the tasks of lost hubs");
                true
            }
        }
    }

    /// Takes over parked tasks whose parents all ended (on any hub).
    async fn unpark(&self) -> bool {
        let store = self.store.clone();
        match blocking(move || store.adopt_unparked()).await {
            Ok(adopted) if adopted.tasks.is_empty() => true,
            Ok(adopted) => self.send_adopted(adopted, None).await,
            Err(StoreError::LeaseLost) => self.lose(),
            Err(e) => {
                tracing::warn!(error = %e, "could not take over parked tasks");
                true
            }
        }
    }

    /// Wakes the long-polls parked here whose task has ended (on any hub).
    async fn wake_ended(&self) -> bool {
        let parked = self.waiters.parked();
        if parked.is_empty() {
            return true;
        }
        let store = self.store.clone();
        match blocking(move || store.ended_among(&parked)).await {
            Ok(ended) => {
                for task in ended {
                    self.waiters.notify(task);
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not look up waited-on tasks"),
        }
        true
    }

    async fn claim(&self, asked: ClaimRequest) -> bool {
        let store = self.store.clone();
        let wants = asked.clone();
        let adopted = match blocking(move || store.claim(&wants)).await {
            Ok(adopted) => adopted,
            Err(StoreError::LeaseLost) => return self.lose(),
            Err(e) => {
                tracing::warn!(error = %e, "could not claim pooled work");
                // Answered empty, so the actor may ask again (at the next hint).
                Adopted::default()
            }
        };
        self.send_adopted(adopted, Some(asked)).await
    }

    async fn send_adopted(&self, adopted: Adopted, asked: Option<ClaimRequest>) -> bool {
        self.commands
            .send(Command::Adopt { adopted, asked })
            .await
            .is_ok()
    }

    async fn hint(&self, capability: Option<Capability>) -> bool {
        self.commands
            .send(Command::PoolHint { capability })
            .await
            .is_ok()
    }

    fn lose(&self) -> bool {
        tracing::error!(
            "this hub lost its lease: another hub took its tasks over; stopping (start it again)"
        );
        let _ = self.lost.send(true);
        false
    }

    /// Agents, slots and tasks as the actor sees them now.
    async fn load(&self) -> HubLoad {
        let (reply, overview) = oneshot::channel();
        let mut load = HubLoad {
            address: self.address.clone(),
            ..HubLoad::default()
        };
        if self
            .commands
            .send(Command::Overview { reply })
            .await
            .is_err()
        {
            return load;
        }
        if let Ok(overview) = overview.await {
            let connected = overview
                .agents
                .iter()
                .filter(|a| a.state != hive_core::AgentState::Offline);
            for agent in connected {
                load.agents += 1;
                load.slots += agent.spec.slots;
            }
            load.tasks = overview.memory.active_tasks as u32;
            load.queued = overview.queue_depths.iter().map(|(_, n)| *n as u32).sum();
        }
        load
    }
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|_| Err(StoreError::Database("a store call panicked".into())))
}
