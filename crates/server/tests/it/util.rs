//! Helpers shared by the integration tests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hive_client::worker::{Executor, Outcome, WorkerExit, run_worker};
use hive_client::{HubClient, WorkerOptions};
use hive_proto::api::Task;
use hive_server::{Durability, Hub, HubConfig};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestHub {
    pub hub: Hub,
    pub url: String,
    pub client: HubClient,
    pub dir: TempDir,
}

pub async fn start_hub() -> TestHub {
    start_hub_with(|_| {}).await
}

pub async fn start_hub_with(adjust: impl FnOnce(&mut HubConfig)) -> TestHub {
    hub_on(tempfile::tempdir().expect("temp dir"), adjust).await
}

/// Shuts the hub down and starts another on its data directory, as a restart would.
pub async fn restart(t: TestHub) -> TestHub {
    restart_with(t, |_| {}).await
}

/// [`restart`] with a configuration of its own.
pub async fn restart_with(t: TestHub, adjust: impl FnOnce(&mut HubConfig)) -> TestHub {
    t.hub.shutdown().await;
    hub_on(t.dir, adjust).await
}

async fn hub_on(dir: TempDir, adjust: impl FnOnce(&mut HubConfig)) -> TestHub {
    let mut config = HubConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    // Tests survive a killed process, not a power cut: skip the fsync to keep them quick.
    config.durability = Durability::Normal;
    adjust(&mut config);
    let hub = Hub::start(config).await.expect("hub starts");
    let url = format!("http://{}", hub.addr());
    TestHub {
        client: HubClient::new(&url),
        url,
        hub,
        dir,
    }
}

pub struct TestWorker {
    /// Dropping it shuts the worker down.
    stop: oneshot::Sender<()>,
    pub handle: JoinHandle<Result<WorkerExit, hive_client::worker::WorkerError>>,
}

impl TestWorker {
    /// Stops the worker as SIGTERM does: it drains, closes its connection cleanly and ends.
    pub async fn stop(self) {
        drop(self.stop);
        let _ = self.handle.await;
    }

    /// Ends the worker abruptly, as a crash would: the connection drops and its running tasks
    /// are dropped with it.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

pub fn spawn_worker(
    url: &str,
    capabilities: &[&str],
    slots: u32,
    executor: impl Executor,
) -> TestWorker {
    spawn_worker_with(WorkerOptions::new(url, capabilities, slots), executor)
}

/// A worker of its own identity (`name`), for consensus tasks: replicas go to distinct names.
pub fn spawn_named_worker(
    url: &str,
    name: &str,
    capabilities: &[&str],
    executor: impl Executor,
) -> TestWorker {
    let mut options = WorkerOptions::new(url, capabilities, 1);
    options.name = name.to_string();
    spawn_worker_with(options, executor)
}

pub fn spawn_worker_with(options: WorkerOptions, executor: impl Executor) -> TestWorker {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(run_worker(options, Arc::new(executor), async move {
        let _ = stopped.await;
    }));
    TestWorker { stop, handle }
}

/// An executor answering with its payload.
pub fn echo() -> impl Executor {
    |task: hive_proto::protocol::Assignment| async move { Outcome::Success(task.payload) }
}

/// Polls `probe` until it returns Some, for at most `limit`; panics naming `what` otherwise.
/// A bound against hanging, not a timing assertion.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("gave up waiting for {what} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (long-poll) until the task is finished.
pub async fn finished(client: &HubClient, id: &str) -> Task {
    for _ in 0..6 {
        let task = client
            .wait(id, Duration::from_secs(10))
            .await
            .expect("wait");
        if task.status.is_finished() {
            return task;
        }
    }
    panic!("task {id} did not finish within 60 s");
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("valid JSON")
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `path` of the hub at `url`.
pub async fn ws(url: &str, path: &str) -> Socket {
    let address = url.replace("http://", "ws://") + path;
    tokio_tungstenite::connect_async(address).await.unwrap().0
}

/// Sends `value` as a JSON text frame.
pub async fn send(socket: &mut Socket, value: serde_json::Value) {
    use futures_util::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            value.to_string().into(),
        ))
        .await
        .unwrap();
}

/// The hub's latest metrics snapshot (`GET /api/v1/metrics`).
pub async fn snapshot(url: &str) -> hive_proto::metrics::MetricsSnapshot {
    get_json(&format!("{url}/api/v1/metrics")).await
}

/// The JSON answer of `GET url`.
pub async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// The next frame of `socket`, bounded at 10 s (against hanging, not a timing check).
pub async fn next_frame(socket: &mut Socket) -> tokio_tungstenite::tungstenite::Message {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a frame in time")
        .unwrap()
        .unwrap()
}

/// The next text frame, as JSON (control frames are skipped).
pub async fn next_json(socket: &mut Socket) -> serde_json::Value {
    loop {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = next_frame(socket).await {
            return json(&text);
        }
    }
}

/// A small tmpfs mounted for one test, to run a hub out of disk space. Mounting needs root (CI
/// runs as root): elsewhere the test says so and passes, unless `HIVE_REQUIRE_TMPFS` is set
/// (as `.ci/run` does), where a failed mount fails it.
pub struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(
                std::env::var_os("HIVE_REQUIRE_TMPFS").is_none(),
                "HIVE_REQUIRE_TMPFS is set but a tmpfs cannot be mounted (not root?)"
            );
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(SmallDisk { dir })
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full; removing it gives the space back.
    pub fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        // Single bytes fill the last partial block.
        while file.write_all(&[0]).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A plain HTTP client for raw requests, with TLS configured the way the hub's clients have it
/// (the ring provider; reqwest has no default provider here).
pub fn http() -> reqwest::Client {
    let tls = hive_tls::client_config(None).expect("TLS config");
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("an HTTP client")
}

/// A plain HTTP client whose connections come from another loopback address: another client
/// to the hub when no tokens tell clients apart.
pub fn http_from_other_address() -> reqwest::Client {
    let tls = hive_tls::client_config(None).expect("TLS config");
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .expect("an HTTP client")
}

/// The ids `GET /api/v1/tasks?limit=LIMIT` lists, newest first (each limit is a listing of its
/// own to the query cache).
pub async fn listed_ids(client: &reqwest::Client, url: &str, limit: usize) -> Vec<String> {
    let list: hive_proto::api::TaskList = client
        .get(format!("{url}/api/v1/tasks?limit={limit}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.items.into_iter().map(|t| t.id).collect()
}

/// The hub's Prometheus exposition (`GET /metrics`).
pub async fn metrics_text(url: &str) -> String {
    http()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
