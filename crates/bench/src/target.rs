//! How the bench reaches the hub it measures: the URL, and for an external hub with
//! authentication or TLS (`--hub` with `--token`, `--ca-file`) the token and the trust that every
//! HTTP client, worker and WebSocket of the bench uses. A hub the bench starts itself is plain
//! HTTP on loopback with authentication off.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use hive_client::worker::{Socket, open_socket};
use hive_client::{HubClient, WorkerOptions};

/// The hub's URL and what its clients show it and trust.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://` or `https://`, without a trailing slash.
    pub url: String,
    token: Option<String>,
    ca_file: Option<PathBuf>,
    /// For an `https://` hub: made once for every REST client and raw socket, as reading the
    /// system's roots for each would load the load generator (the workers, which connect once
    /// each, read them and the CA file at each connect, as `hive worker` does).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// A hub on plain HTTP with authentication off.
    pub fn plain(url: &str) -> Target {
        Target {
            url: url.trim_end_matches('/').to_string(),
            token: None,
            ca_file: None,
            tls: None,
        }
    }

    /// A hub that may want a token (an `admin` one: the workloads submit, connect agents and
    /// drain them) and may serve TLS, trusting `ca_file` besides the system's roots.
    pub fn external(
        url: &str,
        token: Option<String>,
        ca_file: Option<PathBuf>,
    ) -> anyhow::Result<Target> {
        let tls = if url.starts_with("https://") {
            let config = hive_tls::client_config(ca_file.as_deref()).context("--ca-file")?;
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(Target {
            token,
            ca_file,
            tls,
            ..Target::plain(url)
        })
    }

    /// A new REST client (with a connection pool of its own).
    pub fn client(&self) -> HubClient {
        match &self.tls {
            Some(tls) => HubClient::with_tls(&self.url, tls.as_ref().clone()),
            None => HubClient::new(&self.url),
        }
        .with_token(self.token.clone())
    }

    /// A worker's options for this hub.
    pub fn worker(&self, capabilities: &[&str], slots: u32) -> WorkerOptions {
        let mut options = WorkerOptions::new(&self.url, capabilities, slots);
        options.token = self.token.clone();
        options.ca_file = self.ca_file.clone();
        options
    }

    /// A WebSocket to `/ws/agent`, before any hello.
    pub async fn agent_socket(&self) -> anyhow::Result<Socket> {
        let url = if let Some(rest) = self.url.strip_prefix("https://") {
            format!("wss://{rest}/ws/agent")
        } else {
            self.url.replacen("http://", "ws://", 1) + "/ws/agent"
        };
        Ok(open_socket(&url, self.token.as_deref(), self.tls.clone()).await?)
    }
}
