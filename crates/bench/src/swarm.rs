//! The swarm workload: 100 agents (raw WebSocket connections in this process that answer every
//! message at once) join one swarm; concurrent clients broadcast to it through the API and wait
//! for all replies. Counted per delivery: a message sent to an agent whose reply came back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hive_proto::RawValue;
use hive_proto::api::NewSwarmMessage;
use hive_proto::codec::{self, Encoded, FrameFormat};
use indicatif::ProgressBar;
use tokio_tungstenite::tungstenite::Message;

use crate::target::Target;

pub const GROUP: &str = "bench-swarm";

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SwarmRun {
    pub agents: usize,
    pub messages: u64,
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    pub errors: u64,
}

/// What a member reads of the hub's frames: the type and, for messages, the id. A batch
/// carries several.
#[derive(serde::Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    message_id: Option<String>,
    #[serde(default)]
    frames: Vec<Incoming>,
}

fn encode(message: &serde_json::Value, format: FrameFormat) -> Message {
    match codec::encode(message, format) {
        Encoded::Text(text) => Message::Text(text.into()),
        Encoded::Binary(bytes) => Message::Binary(bytes.into()),
    }
}

async fn member(
    hub: Target,
    n: usize,
    format: FrameFormat,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let mut socket = hub.agent_socket().await?;
    let mut hello = serde_json::json!({
        "type": "hello", "name": format!("swarm-{n}"), "capabilities": ["swarm-bench"],
        "slots": 1, "groups": [GROUP], "batch": format.batch,
    });
    hello["encoding"] = serde_json::to_value(format.encoding)?;
    hello["compression"] = serde_json::to_value(format.compression)?;
    socket.send(Message::Text(hello.to_string().into())).await?;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(3));
    let mut welcomed = false;
    loop {
        tokio::select! {
            frame = socket.next() => {
                let incoming: Incoming = match frame {
                    None => return Ok(()),
                    Some(Ok(Message::Text(text))) => codec::decode(codec::Incoming::Text(&text), 1 << 24)?,
                    Some(Ok(Message::Binary(bytes))) => codec::decode(codec::Incoming::Binary(&bytes), 1 << 24)?,
                    Some(_) => continue,
                };
                if incoming.kind == "welcome" && !welcomed {
                    welcomed = true;
                    let _ = ready.send(()).await;
                    continue;
                }
                let messages = if incoming.kind == "batch" { incoming.frames } else { vec![incoming] };
                let replies: Vec<serde_json::Value> = messages
                    .into_iter()
                    .filter(|m| m.kind == "message")
                    .filter_map(|m| m.message_id)
                    .map(|id| serde_json::json!({"type": "reply", "message_id": id, "output": "null"}))
                    .collect();
                // One batch frame for everything that came together, when batching.
                if format.batch && replies.len() > 1 {
                    let batch = serde_json::json!({"type": "batch", "frames": replies});
                    socket.send(encode(&batch, format)).await?;
                } else {
                    for reply in &replies {
                        socket.send(encode(reply, format)).await?;
                    }
                }
            }
            _ = heartbeat.tick() => socket.send(Message::Text(r#"{"type":"heartbeat"}"#.into())).await?,
        }
    }
}

pub async fn fan_out(
    hub: &Target,
    agents: usize,
    duration: Duration,
    broadcasters: usize,
    format: FrameFormat,
    bar: &ProgressBar,
) -> anyhow::Result<SwarmRun> {
    let (ready, mut joined) = tokio::sync::mpsc::channel(agents);
    let members: Vec<_> = (0..agents)
        .map(|n| tokio::spawn(member(hub.clone(), n, format, ready.clone())))
        .collect();
    for _ in 0..agents {
        joined.recv().await;
    }
    let client = hub.client();
    // Registration is asynchronous to the welcome: wait until the hub lists every member.
    for _ in 0..200 {
        let swarms = client.swarms().await?;
        if swarms
            .items
            .iter()
            .any(|s| s.name == GROUP && s.agents.len() == agents)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let messages = Arc::new(AtomicU64::new(0));
    let deliveries = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for _ in 0..broadcasters {
        let client = client.clone();
        let (messages, deliveries, errors) = (messages.clone(), deliveries.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let body = NewSwarmMessage {
                payload: Some(RawValue::from_string(r#"{"n":1}"#.into()).expect("JSON")),
                timeout_ms: Some(5_000),
            };
            while Instant::now() < deadline {
                match client.broadcast(GROUP, &body).await {
                    Ok(outcome) => {
                        messages.fetch_add(1, Ordering::Relaxed);
                        deliveries.fetch_add(outcome.replies.len() as u64, Ordering::Relaxed);
                        if !outcome.missing.is_empty() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    crate::workloads::watch(started, deadline, &deliveries, "deliveries", bar, handles).await?;
    let seconds = started.elapsed().as_secs_f64();
    for member in members {
        member.abort();
    }
    let deliveries = deliveries.load(Ordering::Relaxed);
    Ok(SwarmRun {
        agents,
        messages: messages.load(Ordering::Relaxed),
        deliveries,
        deliveries_per_sec: deliveries as f64 / seconds,
        errors: errors.load(Ordering::Relaxed),
    })
}
