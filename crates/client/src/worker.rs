//! The worker loop: connect to `/ws/agent`, say hello, run assigned tasks with an [`Executor`]
//! (as many at once as the hub assigns, at most `slots`), report results, send heartbeats, and
//! reconnect with backoff when the hub goes away.
//!
//! When the connection drops, the tasks in flight are aborted (a spawned command is killed): the
//! hub will not accept their results over a new connection anyway, since fencing ties an attempt
//! to the connection it was assigned on, and their leases send them back to the queue.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hive_proto::RawValue;
use hive_proto::codec::{self, Encoded, FrameFormat, Incoming};
use hive_proto::protocol::{
    Assignment, Capabilities, Hello, HubMessage, TaskResult, WorkerMessage,
};
use tokio::task::{AbortHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;

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
}

impl WorkerOptions {
    pub fn new(hub: &str, capabilities: &[&str], slots: u32) -> Self {
        WorkerOptions {
            hub: hub.to_string(),
            name: format!("worker-{}", std::process::id()),
            capabilities: capabilities.iter().map(|c| (c.to_string(), 1.0)).collect(),
            slots,
            groups: Vec::new(),
            format: FrameFormat::default(),
            reconnect: true,
            max_reconnect_delay: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("the hub refused this worker: {0}")]
    Rejected(String),
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
pub async fn run_worker(
    options: WorkerOptions,
    executor: Arc<dyn Executor>,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerExit, WorkerError> {
    let url = ws_url(&options.hub);
    tokio::pin!(shutdown);
    let mut delay = Duration::from_millis(100);
    loop {
        let ended = tokio::select! {
            ended = session(&options, &url, executor.clone()) => ended,
            _ = &mut shutdown => return Ok(WorkerExit::Shutdown),
        };
        match ended {
            Ok(Session::Drained) => return Ok(WorkerExit::Drained),
            Err(WorkerError::Rejected(reason)) => return Err(WorkerError::Rejected(reason)),
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
    /// The connection dropped after the hub had welcomed this worker.
    Lost {
        reason: String,
    },
}

/// What a compressed frame from the hub may expand to.
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

async fn session(
    options: &WorkerOptions,
    url: &str,
    executor: Arc<dyn Executor>,
) -> Result<Session, WorkerError> {
    let (socket, _) =
        tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| WorkerError::Connect {
                url: url.to_string(),
                detail: e.to_string(),
            })?;
    let (mut sink, mut stream) = socket.split();
    let lost = |reason: String| Ok(Session::Lost { reason });

    let hello = WorkerMessage::Hello(Hello {
        name: options.name.clone(),
        capabilities: Capabilities::Levels(options.capabilities.iter().cloned().collect()),
        slots: options.slots,
        groups: options.groups.clone(),
        format: options.format,
    });
    // The hello is JSON text whatever is asked for: the hub reads it before any negotiation.
    sink.send(encode_frame(&hello, FrameFormat::default()))
        .await
        .map_err(|e| WorkerError::Lost(e.to_string()))?;
    let heartbeat_ms = loop {
        match stream.next().await {
            Some(Ok(Message::Text(frame))) => match serde_json::from_str::<HubMessage>(&frame) {
                Ok(HubMessage::Welcome {
                    agent_id,
                    heartbeat_interval_ms,
                    format,
                    ..
                }) => {
                    tracing::info!(%agent_id, ?format, "registered with the hub");
                    break heartbeat_interval_ms;
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
    };

    let mut heartbeat = tokio::time::interval(Duration::from_millis(heartbeat_ms.max(10)));
    heartbeat.tick().await;
    let mut running: HashMap<(String, u32), AbortHandle> = HashMap::new();
    let mut tasks: JoinSet<(String, u32, Outcome)> = JoinSet::new();
    let mut messages: JoinSet<(String, Outcome)> = JoinSet::new();
    let mut draining = false;
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Close(_))) | None => return lost("the hub closed the connection".into()),
                Some(Err(e)) => return lost(e.to_string()),
                Some(Ok(frame)) => match read(&frame) {
                    Some(Ok(received)) => for message in received { match message {
                    HubMessage::Assign { tasks: assigned } => {
                        for task in assigned {
                            let key = (task.task_id.clone(), task.attempt);
                            let handle = tasks.spawn(run_one(executor.clone(), task));
                            running.insert(key, handle);
                        }
                    }
                    HubMessage::Cancel { task_id, attempt } => {
                        if let Some(handle) = running.remove(&(task_id, attempt)) {
                            handle.abort();
                        }
                    }
                    HubMessage::Drain => {
                        draining = true;
                        tracing::info!("drained by the hub: finishing running tasks");
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
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                // A cancelled task was aborted: nothing to report.
                if let Ok((task_id, attempt, outcome)) = joined {
                    running.remove(&(task_id.clone(), attempt));
                    let result = match outcome {
                        Outcome::Success(output) => TaskResult { task_id, attempt, ok: true, output: Some(output), error: None, retry: false },
                        Outcome::Failure { error, retry } => TaskResult { task_id, attempt, ok: false, output: None, error: Some(error), retry },
                    };
                    if let Err(e) = sink.send(encode_frame(&WorkerMessage::Result(result), options.format)).await {
                        return lost(e.to_string());
                    }
                }
            },
            Some(Ok((message_id, outcome))) = messages.join_next(), if !messages.is_empty() => {
                // A failed message gets no reply: the broadcast lists this agent as missing.
                if let Outcome::Success(output) = outcome
                    && let Err(e) = sink.send(encode_frame(&WorkerMessage::Reply { message_id, output }, options.format)).await
                {
                    return lost(e.to_string());
                }
            },
            _ = heartbeat.tick() => {
                if let Err(e) = sink.send(encode_frame(&WorkerMessage::Heartbeat, options.format)).await {
                    return lost(e.to_string());
                }
            }
        }
        if draining && tasks.is_empty() {
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
    use super::ws_url;

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
