//! Starting `hive` processes for the tests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub fn hive() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hive"));
    command.env("HIVE_LOG", "warn").kill_on_drop(true);
    command
}

/// A port free right now (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct HubProcess {
    pub child: Child,
    pub url: String,
}

impl HubProcess {
    /// Starts `hive serve` and waits until its API answers.
    pub async fn start(dir: &Path, port: u16) -> HubProcess {
        HubProcess::start_with(dir, port, &[]).await
    }

    /// The same with more arguments for `serve`.
    pub async fn start_with(dir: &Path, port: u16, more: &[&str]) -> HubProcess {
        let child = hive()
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir)
            .args(more)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hive serve starts");
        HubProcess::ready(child, port).await
    }

    /// Waits until the hub `child` started on `port` answers.
    pub async fn ready(child: Child, port: u16) -> HubProcess {
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest_lite(&url);
        for _ in 0..300 {
            // Any answer from the API will do (a hub with authentication on answers 401).
            if let Ok(_) | Err(hive_client::http::ClientError::Api { .. }) = http.status().await {
                return HubProcess { child, url };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("hive serve on port {port} did not become ready");
    }

    /// SIGKILL: no chance to flush or clean up.
    pub async fn kill_9(&mut self) {
        self.child.kill().await.expect("kill -9");
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits")
            .unwrap()
    }
}

fn reqwest_lite(url: &str) -> hive_client::HubClient {
    hive_client::HubClient::new(url)
}
