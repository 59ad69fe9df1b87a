//! `AppState`: what every handler can reach, and the two ways it talks to the rest of the hub:
//! commands to the scheduler actor, and reads from the store on the blocking pool.

use std::sync::Arc;

use hive_core::Clock;
use hive_store::{StoreError, TaskReader};
use tokio::sync::{mpsc, oneshot, watch};

use crate::actor::Command;
use crate::alerts::Alerts;
use crate::config::HubConfig;
use crate::connections::Connections;
use crate::error::ApiError;
use crate::events::Events;
use crate::metrics::HubMetrics;
use crate::metrics::snapshot::Snapshots;
use crate::swarms::Swarms;
use crate::waiters::Waiters;

/// Cloned for every request (axum hands each handler its own): one reference count, not one per
/// part (the parts' count updates showed as 3% of the hub's CPU under the agents workload).
#[derive(Clone)]
pub struct AppState(Arc<HubState>);

impl AppState {
    pub fn new(state: HubState) -> Self {
        AppState(Arc::new(state))
    }
}

impl std::ops::Deref for AppState {
    type Target = HubState;
    fn deref(&self) -> &HubState {
        &self.0
    }
}

pub struct HubState {
    pub config: Arc<HubConfig>,
    pub commands: mpsc::Sender<Command>,
    pub reader: Arc<dyn TaskReader>,
    /// Each client's latest write, for reads that tolerate staleness (see [`crate::reads`]).
    pub own_writes: crate::reads::OwnWrites,
    /// Answers to hot reads (see [`crate::query_cache`]).
    pub cache: crate::query_cache::QueryCache,
    pub connections: Arc<Connections>,
    pub waiters: Arc<Waiters>,
    pub swarms: Arc<Swarms>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<HubMetrics>,
    pub snapshots: Arc<Snapshots>,
    pub events: Arc<Events>,
    pub alerts: Arc<Alerts>,
    pub admission: Arc<crate::admission::Admission>,
    /// The API tokens; `None` with authentication off.
    pub tokens: Option<Arc<crate::auth::tokens::Tokens>>,
    pub rate_limiter: crate::auth::rate::RateLimiter,
    /// The neural routing model (`[routing] policy = "neural"`), for its predictions in views.
    pub neural: Option<hive_neural::SharedModel>,
    /// Turns true when the hub begins shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Where this hub listens (the bound address: port 0 configured is a real port here).
    pub address: std::net::SocketAddr,
    /// The hubs sharing the store, with this one among them; `None` on SQLite (one hub).
    pub hubs: Option<Arc<dyn hive_store::Membership>>,
    /// Passes swarm broadcasts to the other hubs; `None` on SQLite.
    pub relay: Option<Arc<dyn hive_store::SwarmRelay>>,
}

impl AppState {
    /// Sends a command that answers, and waits for the answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ApiError::ShuttingDown)?;
        rx.await.map_err(|_| ApiError::ShuttingDown)
    }

    /// Runs a store read on the blocking pool (SQLite calls block).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn TaskReader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(reader.as_ref()))
            .await
            .map_err(|_| ApiError::ShuttingDown)?
            .map_err(ApiError::Store)
    }
}

impl AppState {
    /// A store read that tolerates staleness, for `client`: on a read replica that has replayed
    /// the client's own writes when there is one, else like [`read`](Self::read).
    pub async fn read_stale<T: Send + 'static>(
        &self,
        client: &crate::reads::Client,
        f: impl FnOnce(&dyn TaskReader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (after, _) = self.own_writes.after(client);
        let reader = self
            .reader
            .replica(after)
            .unwrap_or_else(|| self.reader.clone());
        tokio::task::spawn_blocking(move || f(reader.as_ref()))
            .await
            .map_err(|_| ApiError::ShuttingDown)?
            .map_err(ApiError::Store)
    }

    /// Whether cached answers may serve `client`: not while its latest write is recent (they
    /// may predate it).
    pub fn may_use_cache(&self, client: &crate::reads::Client) -> bool {
        !self.own_writes.after(client).1
    }

    /// `client`'s write was acknowledged: its later reads see it.
    pub fn wrote(&self, client: &crate::reads::Client) {
        self.own_writes.wrote(client, self.reader.written());
    }
}

/// Resolves once the hub is shutting down.
pub async fn stopped(mut shutdown: watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across an await by the caller.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
