//! The hub under test: a `hive serve` child process on a free loopback port with a temporary data
//! directory (so its memory and CPU are measured apart from the load generator), or an external
//! hub given by URL (then memory and CPU are not measured). With `--store postgres://...` the
//! spawned hub keeps its state in a new schema of that database, dropped when the hub stops
//! (the database server's own CPU and memory are not measured).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use hive_client::HubClient;
use tokio::process::{Child, Command};

use hive_metrics::procfs::{self as process, ProcessSample};
use hive_store::postgres::scratch::ScratchSchema;

pub struct HubUnderTest {
    pub url: String,
    child: Option<(Child, u32, tempfile::TempDir)>,
    /// Dropped after the hub stops.
    _schema: Option<ScratchSchema>,
}

impl HubUnderTest {
    /// `store`: a PostgreSQL server (a user that may create schemas); `None`: SQLite.
    pub async fn spawn(
        hive: &Path,
        config: Option<&Path>,
        store: Option<&str>,
    ) -> anyhow::Result<HubUnderTest> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let mut command = Command::new(hive);
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path());
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let schema = match store {
            Some(url) => Some(
                ScratchSchema::create(url, "hive_bench")
                    .context("--store: a schema for the hub")?,
            ),
            None => None,
        };
        if let Some(schema) = &schema {
            command.arg("--store").arg(schema.url());
        }
        let child = command
            .env("HIVE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} serve", hive.display()))?;
        let pid = child.id().context("the hub exited at once")?;
        let url = format!("http://127.0.0.1:{port}");
        let client = HubClient::new(&url);
        for _ in 0..200 {
            if client.status().await.is_ok() {
                return Ok(HubUnderTest {
                    url,
                    child: Some((child, pid, dir)),
                    _schema: schema,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the hub did not become ready on port {port}")
    }

    pub fn external(url: &str) -> HubUnderTest {
        HubUnderTest {
            url: url.trim_end_matches('/').to_string(),
            child: None,
            _schema: None,
        }
    }

    pub fn sample(&self) -> Option<ProcessSample> {
        self.child
            .as_ref()
            .and_then(|(_, pid, _)| process::sample(*pid))
    }

    pub async fn stop(self) {
        if let Some((mut child, pid, _dir)) = self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        }
    }
}
