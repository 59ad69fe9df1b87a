//! `/ws/agent`: one worker connection, speaking the protocol in `docs/protocol.md`.
//!
//! The first frame must be `hello`; the hub answers `welcome` with the agent's id. Then the
//! worker sends `heartbeat` and `result` frames, and the hub sends `assign` (batches), `cancel`,
//! `drain` and `error`. Frames to the worker go through the connection's queue in
//! [`Connections`](crate::connections::Connections), written by a task of their own so a slow
//! socket never holds up the hub.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hive_core::{AgentId, AgentSpec, Capability, Report, TaskId};
use hive_proto::protocol::{Hello, HubMessage, PROTOCOL_VERSION, TaskResult, WorkerMessage};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::actor::Command;
use crate::connections::Outbound;
use crate::state::AppState;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(state.config.max_body_bytes)
        .on_upgrade(move |socket| session(state, socket))
}

fn error_frame(code: &str, message: impl Into<String>) -> Message {
    let frame = HubMessage::Error {
        code: code.into(),
        message: message.into(),
    };
    Message::Text(serde_json::to_string(&frame).expect("serialisable").into())
}

async fn session(state: AppState, mut socket: WebSocket) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<WorkerMessage>(&text)
            .map_err(|e| e.to_string())
            .and_then(|m| match m {
                WorkerMessage::Hello(hello) => agent_spec(hello),
                _ => Err("the first message must be hello".into()),
            }),
        Ok(_) => Err("expected a hello text frame".into()),
        Err(_) => Err("no hello within 10 s".into()),
    };
    let (spec, groups) = match hello {
        Ok(accepted) => accepted,
        Err(message) => {
            let _ = socket.send(error_frame("invalid_hello", message)).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };

    let agent = AgentId(Uuid::now_v7());
    let (outbound, mut queue) = mpsc::unbounded_channel();
    let welcome = HubMessage::Welcome {
        agent_id: agent.to_string(),
        heartbeat_interval_ms: state.config.heartbeat_interval_ms(),
        protocol: PROTOCOL_VERSION,
    };
    // Queued before the agent is registered, so it is always the first frame the worker reads.
    let _ = outbound.send(Outbound::Message(welcome));
    state.connections.insert(agent, outbound);
    tracing::info!(%agent, name = %spec.name, slots = spec.slots, "agent connected");
    if state
        .commands
        .send(Command::Register { agent, spec })
        .await
        .is_err()
    {
        state.connections.remove(agent);
        return;
    }
    state.swarms.join(agent, &groups);

    let (mut sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(async move {
        while let Some(item) = queue.recv().await {
            let frame = match item {
                Outbound::Frame(text) => Message::Text(text),
                Outbound::Message(message) => Message::Text(
                    serde_json::to_string(&message)
                        .expect("serialisable")
                        .into(),
                ),
                Outbound::Close => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            };
            if sink.send(frame).await.is_err() {
                break;
            }
        }
    });

    let stop = crate::state::stopped(state.shutdown.clone());
    tokio::pin!(stop);
    let mut writer_done = false;
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => handle_frame(&state, agent, &text).await,
                Some(Ok(Message::Binary(_))) => {
                    let error = HubMessage::Error { code: "unsupported_frame".into(), message: "binary frames are not supported; send JSON text".into() };
                    state.connections.send(agent, Outbound::Message(error));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            _ = &mut writer => {
                writer_done = true;
                break;
            }
            _ = &mut stop => break,
        }
    }
    state.swarms.leave(agent, &groups);
    state.connections.remove(agent);
    let _ = state.commands.send(Command::Disconnected { agent }).await;
    tracing::info!(%agent, "agent disconnected");
    if !writer_done {
        // Let the writer flush what it has (a close frame on shutdown), but not forever.
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
        writer.abort();
    }
}

async fn handle_frame(state: &AppState, agent: AgentId, text: &str) {
    let command = match serde_json::from_str::<WorkerMessage>(text) {
        Ok(WorkerMessage::Heartbeat) => Ok(Command::Heartbeat { agent }),
        Ok(WorkerMessage::Result(result)) => report(agent, result),
        Ok(WorkerMessage::Reply { message_id, output }) => {
            state.swarms.reply(&message_id, agent, output);
            return;
        }
        Ok(WorkerMessage::Hello(_)) => {
            Err(("protocol_error", "hello was already received".to_string()))
        }
        Err(e) => Err(("invalid_message", e.to_string())),
    };
    match command {
        Ok(command) => {
            let _ = state.commands.send(command).await;
        }
        Err((code, message)) => {
            let error = HubMessage::Error {
                code: code.into(),
                message,
            };
            state.connections.send(agent, Outbound::Message(error));
        }
    }
}

fn report(agent: AgentId, result: TaskResult) -> Result<Command, (&'static str, String)> {
    let task: TaskId = result
        .task_id
        .parse()
        .map_err(|e: hive_core::IdParseError| {
            ("invalid_message", format!("result.task_id: {e}"))
        })?;
    let report = if result.ok {
        let output = result
            .output
            .map(|o| o.get().to_string())
            .unwrap_or_else(|| "null".into());
        Report::Success { output }
    } else {
        Report::Failure {
            error: result
                .error
                .unwrap_or_else(|| "the worker reported a failure".into()),
            retryable: result.retry,
        }
    };
    Ok(Command::Report {
        agent,
        task,
        attempt: result.attempt,
        report,
    })
}

/// The agent's spec and the swarms it joins.
fn agent_spec(hello: Hello) -> Result<(AgentSpec, Vec<String>), String> {
    for group in &hello.groups {
        Capability::parse(group, "groups").map_err(|e| e.to_string())?;
    }
    let capabilities = hello
        .capabilities
        .levels()
        .into_iter()
        .map(|(name, level)| {
            Capability::parse(&name, "capabilities")
                .map(|c| (c, level))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let spec = AgentSpec {
        name: hello.name,
        capabilities,
        slots: hello.slots,
    };
    spec.validate().map_err(|e| e.to_string())?;
    Ok((spec, hello.groups))
}
