//! One module per group of subcommands.

pub mod bench;
pub mod client;
pub mod serve;
pub mod tokens;
pub mod worker;

/// The hub the client commands talk to, and the token they show it.
pub struct Target {
    pub url: String,
    pub token: Option<String>,
}

impl Target {
    pub fn client(&self) -> hive_client::HubClient {
        hive_client::HubClient::new(&self.url).with_token(self.token.clone())
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
