//! The hub under test: a `hive serve` child process on a free loopback port with a temporary data
//! directory (so its memory and CPU are measured apart from the load generator), or an external
//! hub given by URL, token and CA file (then memory and CPU are not measured). With `--store postgres://...` the
//! spawned hub keeps its state in a new schema of that database, dropped when the hub stops
//! (the database server's own CPU and memory are not measured); with `--hubs N`, N hubs share
//! that schema (memory and CPU are the first one's).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use hive_client::HubClient;
use tokio::process::{Child, Command};

use hive_metrics::procfs::{self as process, ProcessSample};
use hive_store::postgres::scratch::ScratchSchema;

use crate::target::Target;

pub struct HubUnderTest {
    pub target: Target,
    child: Option<(Child, u32, tempfile::TempDir)>,
    /// Dropped after the hub stops.
    _schema: Option<ScratchSchema>,
}

impl HubUnderTest {
    /// `count` hubs sharing one new schema of the PostgreSQL server `store` (dropped after the
    /// last stops), or one hub (`store`: `None`, SQLite).
    pub async fn spawn_several(
        hive: &Path,
        config: Option<&Path>,
        store: Option<&str>,
        count: usize,
    ) -> anyhow::Result<Vec<HubUnderTest>> {
        let Some(url) = store else {
            return Ok(vec![HubUnderTest::spawn(hive, config, None).await?]);
        };
        let schema = ScratchSchema::create(url, "hive_bench")
            .context("--store (or store.url in --hub-config): a schema for the hubs")?;
        let url = schema.url().to_string();
        let mut hubs = Vec::with_capacity(count);
        for n in 0..count {
            let name = format!("bench-hub{n}");
            hubs.push(Self::spawn_on(hive, config, Some((&url, &name)), None).await?);
        }
        // Kept by the last, which stops last.
        hubs.last_mut().expect("one at least")._schema = Some(schema);
        Ok(hubs)
    }

    /// `store`: a PostgreSQL server (a user that may create schemas); `None`: SQLite.
    pub async fn spawn(
        hive: &Path,
        config: Option<&Path>,
        store: Option<&str>,
    ) -> anyhow::Result<HubUnderTest> {
        let schema = match store {
            Some(url) => Some(
                ScratchSchema::create(url, "hive_bench")
                    .context("--store (or store.url in --hub-config): a schema for the hub")?,
            ),
            None => None,
        };
        let url = schema.as_ref().map(|s| s.url().to_string());
        let on = url.as_deref().map(|url| (url, "bench-hub"));
        Self::spawn_on(hive, config, on, schema).await
    }

    /// `on`: the schema's URL and the hub's name there.
    async fn spawn_on(
        hive: &Path,
        config: Option<&Path>,
        on: Option<(&str, &str)>,
        schema: Option<ScratchSchema>,
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
        if let Some((url, name)) = on {
            command.args(["--store", url, "--hub-name", name]);
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
                    target: Target::plain(&url),
                    child: Some((child, pid, dir)),
                    _schema: schema,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the hub did not become ready on port {port}")
    }

    pub fn external(target: Target) -> HubUnderTest {
        HubUnderTest {
            target,
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
