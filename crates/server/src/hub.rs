//! Starting and stopping a hub: open the store, recover, spawn the writer and the actor, serve.
//!
//! Recovery happens before the listener opens: every task not finished is loaded into the
//! scheduler, running tasks whose lease expired while the hub was down are re-queued, and those
//! decisions are committed. Only then does the hub accept requests.
//!
//! Shutdown runs in the reverse order: stop accepting, close worker connections and long-polls,
//! let the local agents report what they held (`local_agent`), let the actor flush its last
//! batch, let the writer commit everything queued.

use std::net::SocketAddr;
use std::sync::Arc;

use hive_core::{Clock, PolicyKind, SystemClock};
use hive_store::{BatchWriter, GroupCommit, StoreError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::actor::effects::Effects;
use crate::actor::rebuild::SchedulerSetup;
use crate::actor::sharing::Sharing;
use crate::actor::{Actor, Command};
use crate::admission::Admission;
use crate::alerts::Alerts;
use crate::auth::bootstrap_admin;
use crate::auth::rate::RateLimiter;
use crate::auth::tokens::Tokens;
use crate::backend::Backend;
use crate::config::HubConfig;
use crate::connections::Connections;
use crate::events::Events;
use crate::membership::{self, HubParts, Membership};
use crate::metrics::HubMetrics;
use crate::neural::NeuralRouting;
use crate::routes;
use crate::state::{AppState, HubState};
use crate::waiters::Waiters;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store ({place}): {source}")]
    Store { place: String, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("built-in executors: {0}")]
    Builtin(#[from] crate::builtin::BuiltinError),
    #[error(
        "{addr} is not a loopback address: turn authentication on (auth.enabled = true, or --auth) so that not everyone who reaches it may use it"
    )]
    Unprotected { addr: SocketAddr },
    #[error("authentication: {0}")]
    Auth(String),
    #[error("the neural routing model's training thread: {0}")]
    Trainer(std::io::Error),
    #[error("LLM providers: {0}")]
    Llm(#[from] crate::llm::LlmError),
    #[error("TLS (--tls-cert / --tls-key): {0}")]
    Tls(#[from] hive_tls::TlsError),
    #[error("alerts.webhook_ca_file: {0}")]
    WebhookCa(hive_tls::TlsError),
}

/// Commands that may wait for the actor before senders slow down.
const COMMAND_QUEUE: usize = 65_536;

pub struct Hub {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    commands: mpsc::Sender<Command>,
    connections: Arc<Connections>,
    server: JoinHandle<()>,
    actor: JoinHandle<()>,
    commit: GroupCommit,
    /// Held for the hub's life (SQLite's owns the data directory's lock).
    backend: Backend,
    /// Among several hubs on PostgreSQL.
    membership: Option<Membership>,
    recovered: usize,
    /// The neural routing model's trainer, and what tells it to stop; it saves the model as it
    /// ends.
    trainer: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// The local agents (built-in executors, LLM providers), each ending once it has left.
    local_agents: Vec<JoinHandle<()>>,
}

/// How long a stopping hub waits for its local agents to report what they held: they stop their
/// jobs at once (a built-in job looks at its cancel flag every 4,096 rounds), so this bounds only
/// one that is stuck, whose attempts then wait out their leases.
const LOCAL_AGENTS_LEAVE: std::time::Duration = std::time::Duration::from_secs(10);

impl Hub {
    pub async fn start(config: HubConfig) -> Result<Hub, StartError> {
        if !config.auth.enabled && !config.listen.ip().is_loopback() {
            return Err(StartError::Unprotected {
                addr: config.listen,
            });
        }
        // Read before anything else starts: a bad certificate is a start-up error.
        let tls = match &config.tls {
            Some(files) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
                hive_tls::server_config(&files.cert, &files.key)?,
            ))),
            None => None,
        };
        let place = Backend::describe(&config);
        let store_error = |source| StartError::Store {
            place: place.clone(),
            source,
        };
        let backend = Backend::open(&config).map_err(store_error)?;
        // Among several hubs the lease runs from the join: kept from now on, through the load.
        let mut membership = match (backend.membership(), &config.postgres) {
            (Some(link), Some(pg)) => Some(Membership::keep(link, pg.hub.lease)),
            _ => None,
        };
        let reader = backend.reader();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let seed = clock.now().0;
        let neural = match config.routing.policy {
            PolicyKind::Neural => {
                let store = backend.model_store().map_err(store_error)?;
                Some(
                    NeuralRouting::load(store, config.routing.seed.unwrap_or(seed))
                        .map_err(store_error)?,
                )
            }
            _ => None,
        };
        let setup = SchedulerSetup {
            config: config.scheduler,
            routing: config.routing,
            seed,
            neural: neural.as_ref().map(|n| n.shared.clone()),
        };
        let (mut scheduler, recovered) = setup.load(&*reader, clock.now()).map_err(store_error)?;
        let mut writer = backend.writer().map_err(store_error)?;
        writer
            .apply(&[&scheduler.take_changes()])
            .map_err(store_error)?;
        if recovered > 0 {
            tracing::info!(recovered, "recovered unfinished tasks");
        }

        let commit = GroupCommit::spawn(writer, config.commit_queue, config.max_changes_per_commit);
        let connections = Arc::new(Connections::default());
        let waiters = Arc::new(Waiters::default());
        let mut metrics = HubMetrics::new(config.metrics_enabled);
        metrics.store_stats = backend.monitor();
        metrics.neural = neural.as_ref().map(|n| n.shared.clone());
        let metrics = Arc::new(metrics);
        let events = Arc::new(Events::default());
        let alert_log = backend.alert_log().map_err(store_error)?;
        let alerts = Arc::new(
            Alerts::new(&config.alerts, alert_log, events.clone())
                .map_err(StartError::WebhookCa)?,
        );
        let effects = Arc::new(Effects::new(
            connections.clone(),
            waiters.clone(),
            metrics.clone(),
            events.clone(),
        ));
        let (commands, inbox) = mpsc::channel(COMMAND_QUEUE);
        let (sharing, claims) = match &membership {
            Some(membership) => {
                let (ask, claims) = membership::claim_channel();
                (
                    Sharing::with_peers(ask, membership.store().clone()),
                    Some(claims),
                )
            }
            None => (Sharing::alone(), None),
        };
        let actor = Actor::new(
            scheduler,
            setup,
            reader.clone(),
            commit.sender(),
            effects,
            clock.clone(),
            sharing,
        );
        let actor = tokio::spawn(actor.run(inbox));

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let (shutdown, stopping) = watch::channel(false);
        let swarms = Arc::new(crate::swarms::Swarms::default());
        let relay = backend.swarm_relay();
        if let (Some(membership), Some(claims), Some(pg), Some(relay)) =
            (&mut membership, claims, &config.postgres, &relay)
        {
            let parts = HubParts {
                claims,
                commands: commands.clone(),
                waiters: waiters.clone(),
                address: addr.to_string(),
                stopping: stopping.clone(),
                swarm: crate::membership::swarm::SwarmParts {
                    relay: relay.clone(),
                    swarms: swarms.clone(),
                    connections: connections.clone(),
                    me: membership.store().id(),
                },
            };
            membership.start_work(parts, pg.hub.lease);
        }
        let admission = Arc::new(Admission::new(config.admission, metrics.clone()));
        let tokens = if config.auth.enabled {
            let store = backend.token_store().map_err(store_error)?;
            let tokens = Tokens::load(store).map_err(store_error)?;
            if let Some(path) =
                bootstrap_admin(&tokens, &config.data_dir, clock.now()).map_err(StartError::Auth)?
            {
                tracing::warn!(path = %path.display(), "no admin token existed: one was written to this file (readable by its owner only)");
            }
            Some(Arc::new(tokens))
        } else {
            None
        };
        let rate_limiter = RateLimiter::new(config.auth.rate_limits.clone());
        let state = AppState::new(HubState {
            hubs: membership.as_ref().map(|m| m.store().clone()),
            address: addr,
            commands: commands.clone(),
            own_writes: crate::reads::OwnWrites::new(
                config
                    .postgres
                    .as_ref()
                    .filter(|pg| !pg.replicas.urls.is_empty())
                    .map(|pg| pg.replicas.max_lag),
            ),
            cache: crate::query_cache::QueryCache::default(),
            reader,
            connections: connections.clone(),
            waiters,
            swarms,
            relay,
            clock,
            metrics,
            snapshots: Arc::default(),
            events,
            alerts,
            config: Arc::new(config),
            admission,
            tokens,
            rate_limiter,
            neural: neural.as_ref().map(|n| n.shared.clone()),
            shutdown: stopping.clone(),
        });
        if state.config.metrics_enabled {
            crate::metrics::snapshot::start(state.clone(), state.config.metrics_interval).await;
        }
        let mut local_agents = Vec::new();
        if state.config.builtin_threads > 0 {
            local_agents.push(crate::builtin::start(&state, state.config.builtin_threads).await?);
        }
        local_agents.extend(crate::llm::start(&state, &state.config.llm).await?);
        let trainer = match &neural {
            Some(neural) => {
                let (stop, stopping) = watch::channel(false);
                let handle = neural
                    .start(state.clock.clone(), stopping)
                    .map_err(StartError::Trainer)?;
                Some((stop, handle))
            }
            None => None,
        };
        let limits = state.config.connections;
        let app = routes::app(state.clone());
        let server = tokio::spawn(crate::listener::serve(
            listener,
            app,
            limits,
            tls,
            state.metrics.clone(),
            stopping,
        ));
        tracing::info!(%addr, "hive listening");
        Ok(Hub {
            addr,
            shutdown,
            commands,
            connections,
            server,
            actor,
            commit,
            backend,
            membership,
            recovered,
            trainer,
            local_agents,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Unfinished tasks found in the store at start.
    pub fn recovered(&self) -> usize {
        self.recovered
    }

    /// Resolves if this hub lost its lease among several hubs (see [`crate::membership`]): it
    /// should then be shut down. Never resolves for a hub alone in its store.
    pub async fn lease_lost(&self) {
        match &self.membership {
            Some(membership) => membership.lease_lost().await,
            None => std::future::pending().await,
        }
    }

    /// Before [`shutdown`](Self::shutdown), with several hubs: hands queued work to the other
    /// hubs, starts nothing new, and waits up to `grace` for the tasks running here to finish,
    /// so that a rolling upgrade re-runs nothing. What still runs after `grace` is taken over by
    /// the other hubs once this one has left. Returns the attempts still running. Nothing to do
    /// for a hub alone in its store: its work waits for it in the store, and its workers
    /// re-attach what they run when it is back.
    pub async fn drain(&self, grace: std::time::Duration) -> u32 {
        if self.membership.is_none() {
            return 0;
        }
        let (reply, drained) = tokio::sync::oneshot::channel();
        if self
            .commands
            .send(Command::DrainHub { reply })
            .await
            .is_err()
        {
            return 0;
        }
        let _ = drained.await;
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let (reply, overview) = tokio::sync::oneshot::channel();
            if self
                .commands
                .send(Command::Overview { reply })
                .await
                .is_err()
            {
                return 0;
            }
            let Ok(overview) = overview.await else {
                return 0;
            };
            let running: u32 = overview.agents.iter().map(|a| a.running).sum();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Graceful stop: no new requests, connections closed, every accepted change committed.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.connections.close_all();
        let _ = self.server.await;
        let deadline = tokio::time::Instant::now() + LOCAL_AGENTS_LEAVE;
        for agent in self.local_agents {
            if tokio::time::timeout_at(deadline, agent).await.is_err() {
                tracing::warn!(
                    "a local agent did not leave in time: its attempts end with their leases"
                );
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { reply: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        drop(self.commands);
        let _ = self.actor.await;
        // After the scheduler: the attempts that ended while it stopped are learned from too.
        if let Some((stop, trainer)) = self.trainer {
            let _ = stop.send(true);
            let _ = trainer.await;
        }
        let (commit, backend) = (self.commit, self.backend);
        let _ = tokio::task::spawn_blocking(move || commit.close()).await;
        if let Some(membership) = self.membership {
            membership.leave().await;
        }
        // Last: releases the data directory's lock.
        let _ = tokio::task::spawn_blocking(move || backend.close()).await;
        tracing::info!("hive stopped");
    }
}
