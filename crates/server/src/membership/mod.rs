//! A hub's membership among several hubs sharing a PostgreSQL database (docs/scaling.md).
//!
//! Two tasks, so that keeping the lease never waits behind anything else:
//! - the **lease keeper** ([`lease`]) renews the lease from the moment the hub joined (before it
//!   loads its tasks, which on a large table may take longer than a lease), reporting the last
//!   load the work loop saw, and counts the other live hubs;
//! - the **work loop** ([`work`]), started once the hub serves: takes over the tasks of hubs
//!   whose lease ended and parked tasks whose parents ended, makes the claims the actor asks
//!   for, passes the hubs' notifications on (work pooled, a cancel for a task held here), and
//!   wakes long-polls on tasks that other hubs finish.
//!
//! Store calls block; both run them on the blocking pool, never on the actor. A hub that finds
//! its lease lost (another hub took its tasks over, after a database outage longer than the
//! lease, or a stall), or that cannot tell whether a take-over committed, stops: its memory no
//! longer matches what it owns, so it signals [`Membership::lease_lost`] and the binary exits for
//! its supervisor to start it again (under its name, it takes its tasks back at once).

mod lease;
pub mod swarm;
mod work;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_store::postgres::Notice;
use hive_store::{HubLoad, Membership as StoreMembership, StoreError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::actor::Command;
use crate::actor::sharing::ClaimRequest;
use crate::waiters::Waiters;

/// Claims the actor may have asked for before the work loop takes the next.
const CLAIM_QUEUE: usize = 1;

/// What the store gives a hub among several: its membership, and the notifications the hubs
/// send each other.
pub struct StoreLink {
    pub store: Arc<dyn StoreMembership>,
    pub notices: mpsc::UnboundedReceiver<Notice>,
}

/// Handed to the actor: where it sends its claims.
pub fn claim_channel() -> (mpsc::Sender<ClaimRequest>, mpsc::Receiver<ClaimRequest>) {
    mpsc::channel(CLAIM_QUEUE)
}

/// What the two tasks share.
struct Shared {
    store: Arc<dyn StoreMembership>,
    /// The hub's load as the work loop last saw it, reported at each renewal.
    load: Mutex<HubLoad>,
    /// Other hubs holding live leases, as of the last renewal.
    others: AtomicUsize,
    lost: watch::Sender<bool>,
}

impl Shared {
    fn lose(&self, why: &str) {
        tracing::error!("{why}; stopping (start it again)");
        let _ = self.lost.send(true);
    }
}

/// The running membership of a hub.
pub struct Membership {
    shared: Arc<Shared>,
    notices: Option<mpsc::UnboundedReceiver<Notice>>,
    lost: watch::Receiver<bool>,
    /// Aborted on drop (a hub that failed to start stops renewing at once).
    lease: Option<JoinHandle<()>>,
    work: Option<JoinHandle<()>>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        for task in [self.lease.take(), self.work.take()].into_iter().flatten() {
            task.abort();
        }
    }
}

/// What the work loop needs of the rest of the hub.
pub struct HubParts {
    pub claims: mpsc::Receiver<ClaimRequest>,
    pub commands: mpsc::Sender<Command>,
    pub waiters: Arc<Waiters>,
    /// Where this hub serves, for the list of hubs.
    pub address: String,
    pub stopping: watch::Receiver<bool>,
    /// For swarm broadcasts other hubs publish.
    pub swarm: swarm::SwarmParts,
}

impl Membership {
    /// Starts keeping the lease the store's join began (call it right after the store opened).
    pub fn keep(link: StoreLink, lease: Duration) -> Membership {
        let StoreLink { store, notices } = link;
        let (lost_tx, lost) = watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            load: Mutex::new(HubLoad::default()),
            others: AtomicUsize::new(0),
            lost: lost_tx,
        });
        let lease = tokio::spawn(lease::keep(shared.clone(), lease));
        Membership {
            shared,
            notices: Some(notices),
            lost,
            lease: Some(lease),
            work: None,
        }
    }

    /// Starts the work loop, once the hub serves.
    pub fn start_work(&mut self, parts: HubParts, lease: Duration) {
        let Some(notices) = self.notices.take() else {
            return;
        };
        lock(&self.shared.load).address = parts.address.clone();
        self.work = Some(tokio::spawn(work::run(
            self.shared.clone(),
            parts,
            notices,
            lease,
        )));
    }

    pub fn store(&self) -> &Arc<dyn StoreMembership> {
        &self.shared.store
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
    pub async fn leave(mut self) {
        for task in [self.lease.take(), self.work.take()].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
        if *self.lost.borrow() {
            return;
        }
        let store = self.shared.store.clone();
        match blocking(move || store.leave()).await {
            Ok(()) => tracing::info!("left the hubs: the others take over what is left"),
            Err(e) => {
                tracing::warn!(error = %e, "could not end this hub's lease; it ends by itself")
            }
        }
    }
}

/// A std Mutex, not tokio's: held for a copy, never across an await.
fn lock(load: &Mutex<HubLoad>) -> std::sync::MutexGuard<'_, HubLoad> {
    load.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a store call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|_| Err(StoreError::Database("a store call panicked".into())))
}
