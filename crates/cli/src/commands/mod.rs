//! One module per group of subcommands.

pub mod bench;
pub mod client;
pub mod mcp;
pub mod openapi;
pub mod serve;
pub mod tokens;
pub mod worker;

/// The hub the client commands talk to, the token they show it, and the CA they trust for it.
pub struct Target {
    pub url: String,
    pub token: Option<String>,
    pub ca_file: Option<std::path::PathBuf>,
}

impl Target {
    pub fn client(&self) -> Result<hive_client::HubClient, crate::Failure> {
        let client = hive_client::HubClient::with_ca_file(&self.url, self.ca_file.as_deref())
            .map_err(|e| crate::Failure::usage(anyhow::anyhow!("--ca-file: {e}")))?;
        Ok(client.with_token(self.token.clone()))
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
