//! The worker loop: connect to `/ws/agent`, say hello, run assigned tasks with an [`Executor`]
//! (as many at once as the hub assigns, at most `slots`), report results, send heartbeats, and
//! reconnect with backoff when the hub goes away.
//!
//! When the connection drops, the tasks in flight keep running. The worker reconnects and names
//! them in its `hello`; the hub binds those still current to the new connection (fencing follows
//! the attempt), sends `cancel` for the others, and accepts the results, including any that could
//! not be sent before the drop.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Fuse, FutureExt};
use futures_util::{SinkExt, StreamExt};
use hive_proto::RawValue;
use hive_proto::codec::{self, Encoded, FrameFormat, Incoming};
use hive_proto::protocol::{
    Assignment, Capabilities, Hello, HubMessage, RunningAttempt, TaskResult, WorkerMessage,
};
use tokio::task::{AbortHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What running one task came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    Success(Box<RawValue>),
    Failure { error: String, retry: bool },
}

impl Outcome {
    pub fn failure(error: impl Into<String>, retry: bool) -> Self {
        Outcome::Failure {
            error: error.into(),
            retry,
        }
    }

    /// A success whose output is `value` serialised.
    pub fn json(value: &impl serde::Serialize) -> Self {
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => Outcome::Success(raw),
            Err(e) => Outcome::failure(format!("output does not serialise: {e}"), false),
        }
    }
}

/// Runs one task.
pub trait Executor: Send + Sync + 'static {
    fn execute(&self, task: Assignment) -> Pin<Box<dyn Future<Output = Outcome> + Send>>;
}

impl<F, Fut> Executor for F
where
    F: Fn(Assignment) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    fn execute(&self, task: Assignment) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        Box::pin(self(task))
    }
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The hub's URL, e.g. `http://127.0.0.1:7700`.
    pub hub: String,
    pub name: String,
    /// Capability names and levels (0.0-1.0).
    pub capabilities: Vec<(String, f64)>,
    pub slots: u32,
    /// Swarms to join. A broadcast to one of them runs the executor too, with capability
    /// `swarm:<group>`, attempt 0 and the message id as task id; its output is the reply.
    pub groups: Vec<String>,
    /// The frames to ask the hub for (JSON text by default); this worker sends in the same
    /// encoding and compression, one message per frame.
    pub format: FrameFormat,
    /// Reconnect when the connection drops (otherwise return).
    pub reconnect: bool,
    pub max_reconnect_delay: Duration,
    /// On shutdown, how long running tasks may still finish before they are stopped.
    pub grace: Duration,
    /// An `agent` token, for a hub that wants one.
    pub token: Option<String>,
    /// For a `wss://` hub: trust the certificates in this PEM file besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

/// `HOST:CAPABILITIES` (`gpu-box:summarize+translate`, the capabilities sorted, each once), at
/// most 128 bytes: the worker's identity, which routing learns about (docs/routing.md), stable
/// across restarts of the worker (whatever the order it names its capabilities in), shared by
/// workers of one kind on one host and by no one else.
pub fn default_name(capabilities: &[&str]) -> String {
    let mut capabilities = capabilities.to_vec();
    capabilities.sort_unstable();
    capabilities.dedup();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let mut name = format!("{host}:{}", capabilities.join("+"));
    if name.len() > 128 {
        let mut end = 128;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

impl WorkerOptions {
    pub fn new(hub: &str, capabilities: &[&str], slots: u32) -> Self {
        WorkerOptions {
            hub: hub.to_string(),
            name: default_name(capabilities),
            capabilities: capabilities.iter().map(|c| (c.to_string(), 1.0)).collect(),
            slots,
            groups: Vec::new(),
            format: FrameFormat::default(),
            reconnect: true,
            max_reconnect_delay: Duration::from_secs(5),
            grace: Duration::from_secs(10),
            token: None,
            ca_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("the hub refused this worker: {0}")]
    Rejected(String),
    /// The handshake answered 401 or 403 (the token missing, wrong or not an agent's): the
    /// status, and the hub's reason as text.
    #[error("the hub refused this worker: {status}: {reason}")]
    Refused {
        status: reqwest::StatusCode,
        reason: String,
    },
    #[error("connection lost: {0}")]
    Lost(String),
}

/// Why [`run_worker`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// The hub drained this agent and its last task finished.
    Drained,
    /// The `shutdown` future resolved.
    Shutdown,
}

fn ws_url(hub: &str) -> String {
    let base = hub.trim_end_matches('/');
    let base = base
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            base.strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or_else(|| base.to_string());
    format!("{base}/ws/agent")
}

/// Runs until drained, until `shutdown` resolves, or (without `reconnect`) until the connection
/// drops.
///
/// On `shutdown` while connected, the worker stops taking work (a task assigned meanwhile is
/// given back at once with `release`: it did not start, so its attempt does not count), lets running tasks finish for up to
/// [`grace`](WorkerOptions::grace), then stops the rest (dropping their futures: a command's
/// whole process group is killed) and reports each as a retryable failure, so the hub retries
/// them at once instead of waiting out their leases.
///
/// Tasks keep running while the connection is down. The next `hello` names them, and the hub
/// binds those still current to the new connection, so their results count.
pub async fn run_worker(
    options: WorkerOptions,
    executor: Arc<dyn Executor>,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerExit, WorkerError> {
    let url = ws_url(&options.hub);
    let shutdown = shutdown.fuse();
    tokio::pin!(shutdown);
    let mut work = InFlight::default();
    let mut delay = Duration::from_millis(100);
    loop {
        let ended = session(
            &options,
            &url,
            executor.clone(),
            &mut work,
            shutdown.as_mut(),
        )
        .await;
        if work.stopping {
            // The connection dropped during the grace period: nothing more can be reported.
            return Ok(WorkerExit::Shutdown);
        }
        match ended {
            Ok(Session::Drained) => return Ok(WorkerExit::Drained),
            Ok(Session::Stopped) => return Ok(WorkerExit::Shutdown),
            Err(refused @ (WorkerError::Rejected(_) | WorkerError::Refused { .. })) => {
                return Err(refused);
            }
            Ok(Session::Lost { reason }) if options.reconnect => {
                // It had been working: retry soon, not after an earlier run's long backoff.
                delay = Duration::from_millis(100);
                tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, "connection to the hub lost");
            }
            Err(WorkerError::Lost(reason)) if options.reconnect => {
                tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, "connection to the hub lost");
            }
            Err(e @ WorkerError::Connect { .. }) if options.reconnect => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "hub unreachable");
            }
            Ok(Session::Lost { reason, .. }) => return Err(WorkerError::Lost(reason)),
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => return Ok(WorkerExit::Shutdown),
        }
        delay = (delay * 2).min(options.max_reconnect_delay);
    }
}

enum Session {
    Drained,
    /// Shut down: running tasks finished or were stopped and reported.
    Stopped,
    /// The connection dropped after the hub had welcomed this worker.
    Lost {
        reason: String,
    },
}

/// The attempts this worker holds, kept across connections.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<(String, u32, Outcome)>,
    running: HashMap<(String, u32), AbortHandle>,
    /// Results that could not be sent before the connection dropped.
    unsent: Vec<TaskResult>,
    /// Shutdown was asked for.
    stopping: bool,
}

impl InFlight {
    /// What the next `hello` names.
    fn held(&self) -> Vec<RunningAttempt> {
        let running = self
            .running
            .keys()
            .map(|(task_id, attempt)| (task_id, *attempt));
        let unsent = self.unsent.iter().map(|r| (&r.task_id, r.attempt));
        running
            .chain(unsent)
            .map(|(task_id, attempt)| RunningAttempt {
                task_id: task_id.clone(),
                attempt,
            })
            .collect()
    }
}

fn task_result(task_id: String, attempt: u32, outcome: Outcome) -> TaskResult {
    match outcome {
        Outcome::Success(output) => TaskResult {
            task_id,
            attempt,
            ok: true,
            output: Some(output),
            error: None,
            retry: false,
        },
        Outcome::Failure { error, retry } => TaskResult {
            task_id,
            attempt,
            ok: false,
            output: None,
            error: Some(error),
            retry,
        },
    }
}

/// The largest frame from the hub, as sent and as a compressed one expands to (the hub keeps its
/// assign frames far below: tungstenite's default of 16 MiB is too small for a task with large
/// inputs).
const MAX_FRAME_BYTES: usize = 64 << 20;

fn encode_frame(message: &WorkerMessage, format: FrameFormat) -> Message {
    match codec::encode(message, format) {
        Encoded::Text(text) => Message::Text(text.into()),
        Encoded::Binary(bytes) => Message::Binary(bytes.into()),
    }
}

/// A frame from the hub in any form, a batch flattened; `None` for control frames.
fn read(frame: &Message) -> Option<Result<Vec<HubMessage>, String>> {
    let incoming = match frame {
        Message::Text(text) => Incoming::Text(text.as_str()),
        Message::Binary(bytes) => Incoming::Binary(bytes),
        _ => return None,
    };
    Some(
        codec::decode(incoming, MAX_FRAME_BYTES)
            .map(|message| match message {
                HubMessage::Batch(messages) => messages,
                message => vec![message],
            })
            .map_err(|e| e.to_string()),
    )
}

type Sink = futures_util::stream::SplitSink<Socket, Message>;
type Stream = futures_util::stream::SplitStream<Socket>;
/// A WebSocket to the hub, over TLS or not.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the connection, says hello (naming the attempts held), and waits for the welcome.
async fn connect(
    options: &WorkerOptions,
    url: &str,
    running: Vec<RunningAttempt>,
) -> Result<(Sink, Stream, u64), WorkerError> {
    // TLS for a wss:// hub: the system's roots and the configured CA file, with ring.
    let tls = if url.starts_with("wss://") {
        let tls = hive_tls::client_config(options.ca_file.as_deref())
            .map_err(|e| WorkerError::Rejected(e.to_string()))?;
        Some(Arc::new(tls))
    } else {
        None
    };
    let socket = open_socket(url, options.token.as_deref(), tls).await?;
    let (mut sink, mut stream) = socket.split();

    let hello = WorkerMessage::Hello(Hello {
        name: options.name.clone(),
        capabilities: Capabilities::Levels(options.capabilities.iter().cloned().collect()),
        slots: options.slots,
        groups: options.groups.clone(),
        format: options.format,
        running,
    });
    // The hello is JSON text whatever is asked for: the hub reads it before any negotiation.
    sink.send(encode_frame(&hello, FrameFormat::default()))
        .await
        .map_err(|e| WorkerError::Lost(e.to_string()))?;
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(frame))) => match serde_json::from_str::<HubMessage>(&frame) {
                Ok(HubMessage::Welcome {
                    agent_id,
                    heartbeat_interval_ms,
                    format,
                    ..
                }) => {
                    tracing::info!(%agent_id, ?format, "registered with the hub");
                    return Ok((sink, stream, heartbeat_interval_ms));
                }
                Ok(HubMessage::Error { message, .. }) => {
                    return Err(WorkerError::Rejected(message));
                }
                _ => return Err(WorkerError::Lost(format!("expected welcome, got {frame}"))),
            },
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(WorkerError::Lost(e.to_string())),
            None => return Err(WorkerError::Lost("closed before welcome".into())),
        }
    }
}

/// Opens a WebSocket to the hub's `url` (`ws://` or `wss://`, with the path), sending `token` as
/// `Authorization: Bearer`; over TLS it trusts `tls` (the system's roots when `None`). Reads frames
/// up to 64 MiB. A 401 or 403 is [`WorkerError::Refused`]: retrying cannot help.
pub async fn open_socket(
    url: &str,
    token: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Socket, WorkerError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| WorkerError::Connect {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().map_err(|_| {
            WorkerError::Rejected("the token holds characters a header cannot".into())
        })?;
        request.headers_mut().insert("authorization", value);
    }
    let connector = match tls {
        Some(tls) => tokio_tungstenite::Connector::Rustls(tls),
        None if url.starts_with("wss://") => {
            let tls =
                hive_tls::client_config(None).map_err(|e| WorkerError::Rejected(e.to_string()))?;
            tokio_tungstenite::Connector::Rustls(Arc::new(tls))
        }
        None => tokio_tungstenite::Connector::Plain,
    };
    let frames = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(hive_proto::protocol::READ_BUFFER_BYTES);
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(frames),
        false,
        Some(connector),
    )
    .await
    .map_err(|e| match e {
        // 401/403: the token is missing, wrong or not an agent's.
        tokio_tungstenite::tungstenite::Error::Http(response)
            if matches!(response.status().as_u16(), 401 | 403) =>
        {
            let body = response.body().as_deref().unwrap_or_default();
            let reason = match crate::http::refusal(response.status(), body) {
                crate::ClientError::Api { message, .. } => message,
                _ => String::from_utf8_lossy(body).into_owned(),
            };
            WorkerError::Refused {
                status: response.status(),
                reason,
            }
        }
        e => WorkerError::Connect {
            url: url.to_string(),
            detail: e.to_string(),
        },
    })?;
    Ok(socket)
}

async fn session<S: Future<Output = ()>>(
    options: &WorkerOptions,
    url: &str,
    executor: Arc<dyn Executor>,
    work: &mut InFlight,
    mut shutdown: Pin<&mut Fuse<S>>,
) -> Result<Session, WorkerError> {
    let connecting = connect(options, url, work.held());
    let (mut sink, mut stream, heartbeat_ms) = tokio::select! {
        connected = connecting => connected?,
        // Not connected: nothing can be reported, so there is nothing to wait for.
        _ = shutdown.as_mut() => {
            work.stopping = true;
            return Ok(Session::Stopped);
        }
    };

    // Sends a result; one that cannot be sent is kept for the next connection.
    macro_rules! report {
        ($result:expr) => {{
            let result: TaskResult = $result;
            let frame = encode_frame(&WorkerMessage::Result(result.clone()), options.format);
            if let Err(e) = sink.send(frame).await {
                work.unsent.push(result);
                return Ok(Session::Lost {
                    reason: e.to_string(),
                });
            }
        }};
    }
    while let Some(result) = work.unsent.pop() {
        report!(result);
    }

    let mut heartbeat = tokio::time::interval(Duration::from_millis(heartbeat_ms.max(10)));
    heartbeat.tick().await;
    let mut messages: JoinSet<(String, Outcome)> = JoinSet::new();
    let mut draining = false;
    // Set on shutdown: when running tasks are stopped.
    let mut stop_at: Option<tokio::time::Instant> = None;
    loop {
        let grace_over = async {
            match stop_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Close(_))) | None => return Ok(Session::Lost { reason: "the hub closed the connection".into() }),
                Some(Err(e)) => return Ok(Session::Lost { reason: e.to_string() }),
                Some(Ok(frame)) => match read(&frame) {
                    Some(Ok(received)) => for message in received { match message {
                    HubMessage::Assign { tasks: assigned } => {
                        for task in assigned {
                            if stop_at.is_some() {
                                // Assigned before the hub saw our drain: given back unstarted,
                                // so the task keeps its attempts. Lost with the connection, it
                                // ends with its lease.
                                let held = RunningAttempt { task_id: task.task_id, attempt: task.attempt };
                                let frame = encode_frame(&WorkerMessage::Release(held), options.format);
                                if let Err(e) = sink.send(frame).await {
                                    return Ok(Session::Lost { reason: e.to_string() });
                                }
                                continue;
                            }
                            let key = (task.task_id.clone(), task.attempt);
                            let handle = work.tasks.spawn(run_one(executor.clone(), task));
                            work.running.insert(key, handle);
                        }
                    }
                    HubMessage::Cancel { task_id, attempt } => {
                        if let Some(handle) = work.running.remove(&(task_id, attempt)) {
                            handle.abort();
                        }
                    }
                    HubMessage::Drain => {
                        draining = true;
                        tracing::info!("drained by the hub: finishing running tasks");
                    }
                    HubMessage::Resume if stop_at.is_some() => {
                        // Shutting down: the undrain cannot stand; say so again.
                        if let Err(e) = sink.send(encode_frame(&WorkerMessage::Drain, options.format)).await {
                            return Ok(Session::Lost { reason: e.to_string() });
                        }
                    }
                    HubMessage::Resume => {
                        draining = false;
                        tracing::info!("the drain was undone: taking work again");
                    }
                    HubMessage::Error { code, message } => tracing::warn!(%code, %message, "hub reported an error"),
                    HubMessage::Message { message_id, group, payload } => {
                        let task = Assignment {
                            task_id: message_id.clone(),
                            attempt: 0,
                            capability: format!("swarm:{group}"),
                            payload,
                            priority: 5,
                            timeout_ms: 30_000,
                            deadline_ms: None,
                            inputs: None,
                            failed_inputs: Vec::new(),
                        };
                        let executor = executor.clone();
                        messages.spawn(async move { (message_id, executor.execute(task).await) });
                    }
                    HubMessage::Welcome { .. } | HubMessage::Batch(_) => {}
                    }},
                    Some(Err(e)) => tracing::warn!(error = %e, "unreadable frame from the hub"),
                    None => {}
                },
            },
            Some(joined) = work.tasks.join_next(), if !work.tasks.is_empty() => {
                // A cancelled task was aborted: nothing to report.
                if let Ok((task_id, attempt, outcome)) = joined {
                    work.running.remove(&(task_id.clone(), attempt));
                    report!(task_result(task_id, attempt, outcome));
                }
            },
            Some(Ok((message_id, outcome))) = messages.join_next(), if !messages.is_empty() => {
                // A failed message gets no reply: the broadcast lists this agent as missing.
                if let Outcome::Success(output) = outcome
                    && let Err(e) = sink.send(encode_frame(&WorkerMessage::Reply { message_id, output }, options.format)).await
                {
                    return Ok(Session::Lost { reason: e.to_string() });
                }
            },
            _ = heartbeat.tick() => {
                if let Err(e) = sink.send(encode_frame(&WorkerMessage::Heartbeat, options.format)).await {
                    return Ok(Session::Lost { reason: e.to_string() });
                }
            }
            _ = shutdown.as_mut(), if stop_at.is_none() => {
                tracing::info!(running = work.running.len(), grace_ms = options.grace.as_millis() as u64,
                    "shutting down: finishing running tasks");
                stop_at = Some(tokio::time::Instant::now() + options.grace);
                work.stopping = true;
                if let Err(e) = sink.send(encode_frame(&WorkerMessage::Drain, options.format)).await {
                    return Ok(Session::Lost { reason: e.to_string() });
                }
            }
            _ = grace_over => {
                // Dropping a task's future stops it (a command's process group is killed);
                // waiting for the aborted tasks makes sure that happened before the report.
                work.tasks.abort_all();
                // A task that finished meanwhile is reported as it came out.
                while let Some(joined) = work.tasks.join_next().await {
                    if let Ok((task_id, attempt, outcome)) = joined {
                        work.running.remove(&(task_id.clone(), attempt));
                        report!(task_result(task_id, attempt, outcome));
                    }
                }
                for (task_id, attempt) in std::mem::take(&mut work.running).into_keys() {
                    let stopped = Outcome::failure("stopped: the worker shut down before it finished", true);
                    report!(task_result(task_id, attempt, stopped));
                }
                let _ = sink.send(Message::Close(None)).await;
                return Ok(Session::Stopped);
            }
        }
        if stop_at.is_some() && work.tasks.is_empty() {
            let _ = sink.send(Message::Close(None)).await;
            return Ok(Session::Stopped);
        }
        if draining && work.tasks.is_empty() {
            let _ = sink.send(Message::Close(None)).await;
            return Ok(Session::Drained);
        }
    }
}

async fn run_one(executor: Arc<dyn Executor>, task: Assignment) -> (String, u32, Outcome) {
    let (task_id, attempt, timeout_ms) = (task.task_id.clone(), task.attempt, task.timeout_ms);
    let outcome =
        match tokio::time::timeout(Duration::from_millis(timeout_ms), executor.execute(task)).await
        {
            Ok(outcome) => outcome,
            Err(_) => Outcome::failure(format!("timed out after {timeout_ms} ms"), true),
        };
    (task_id, attempt, outcome)
}

#[cfg(test)]
mod tests {
    use super::{default_name, ws_url};

    #[test]
    fn the_default_name_is_the_host_and_the_capabilities_within_128_bytes() {
        let name = default_name(&["summarize", "translate"]);
        assert!(name.ends_with(":summarize+translate"), "{name}");
        assert_eq!(name, default_name(&["summarize", "translate"]), "stable");
        let reordered = default_name(&["translate", "summarize", "translate"]);
        assert_eq!(name, reordered, "whatever the order, each once");
        let long = "é".repeat(100);
        let name = default_name(&[long.as_str()]);
        assert!(name.len() <= 128 && name.ends_with('é'), "{name}");
    }

    #[test]
    fn hub_urls_become_websocket_urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:7700/"),
            "ws://127.0.0.1:7700/ws/agent"
        );
        assert_eq!(
            ws_url("https://hive.example"),
            "wss://hive.example/ws/agent"
        );
    }
}
