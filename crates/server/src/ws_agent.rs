//! `/ws/agent`: one worker connection, speaking the protocol in `docs/protocol.md`.
//!
//! The first frame must be `hello` (naming, for a reconnecting worker, the attempts it still
//! holds); the hub answers `welcome` with the agent's id. Then the worker sends `heartbeat`,
//! `result`, `reply` (to swarm messages) and `drain` frames, and the hub sends `assign`
//! (batches), `cancel`, `drain`, `resume`, `error` and swarm `message`s. Limits: see
//! `docs/security.md` (frame size, invalid frames, hello sizes, outputs, slow readers). Frames to the worker go through the connection's queue
//! in [`Connections`](crate::connections::Connections), written by a task of their own so a slow
//! socket never holds up the hub; that task frames them in the format the worker asked for
//! ([`framer`](crate::framer)), and the hub reads every format whatever was negotiated.

use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hive_core::{AgentId, AgentSpec, Capability, HeldAttempt, Report, TaskId, TaskLimits};
use hive_proto::codec::{self, FrameFormat, Incoming};
use hive_proto::protocol::{Hello, HubMessage, PROTOCOL_VERSION, TaskResult, WorkerMessage};
use uuid::Uuid;

use crate::actor::Command;
use crate::auth::Principal;
use crate::connections::{CloseReason, Outbound};
use crate::framer;
use crate::state::AppState;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write to a worker may block before the hub lets go of the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames answered with an error before the hub closes the connection (close code 1008).
const MAX_INVALID_FRAMES: usize = 100;
/// Swarms one connection may join.
const MAX_GROUPS: usize = 64;

pub async fn upgrade(
    State(state): State<AppState>,
    who: Option<Extension<Principal>>,
    ws: WebSocketUpgrade,
) -> Response {
    let limit = state.config.max_message_bytes;
    let who = who.map(|Extension(who)| who);
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(hive_proto::protocol::READ_BUFFER_BYTES)
        .protocols(["hive"])
        .on_upgrade(move |socket| session(state, socket, who))
}

fn error_frame(code: &str, message: impl Into<String>) -> Message {
    framer::text(&HubMessage::Error {
        code: code.into(),
        message: message.into(),
    })
}

/// Reads a frame in any form; `None` for control frames.
fn decode(frame: &Message, limit: usize) -> Option<Result<WorkerMessage, String>> {
    let incoming = match frame {
        Message::Text(text) => Incoming::Text(text.as_str()),
        Message::Binary(bytes) => Incoming::Binary(bytes),
        _ => return None,
    };
    Some(codec::decode(incoming, limit).map_err(|e| e.to_string()))
}

/// `who`: the agent token's holder (`None` with authentication off).
async fn session(state: AppState, mut socket: WebSocket, who: Option<Principal>) {
    let limit = state.config.max_message_bytes;
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(frame))) => match decode(&frame, limit) {
            Some(Ok(WorkerMessage::Hello(hello))) => {
                agent_spec(hello).and_then(|joining| within_grant(joining, who.as_ref()))
            }
            Some(Ok(_)) => Err("the first message must be hello".into()),
            Some(Err(e)) => Err(e),
            None => Err("expected a hello frame".into()),
        },
        Ok(_) => Err("expected a hello frame".into()),
        Err(_) => Err("no hello within 10 s".into()),
    };
    let Joining {
        spec,
        groups,
        format,
        held,
    } = match hello {
        Ok(accepted) => accepted,
        Err(message) => {
            let _ = socket.send(error_frame("invalid_hello", message)).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };

    let agent = AgentId(Uuid::now_v7());
    let (outbound, mut queue) = crate::connections::outbound();
    state.connections.insert(agent, outbound);
    tracing::info!(%agent, name = %spec.name, slots = spec.slots, "agent connected");
    let (registered, is_registered) = tokio::sync::oneshot::channel();
    let register = Command::Register {
        agent,
        spec,
        held,
        registered,
    };
    let welcome = HubMessage::Welcome {
        agent_id: agent.to_string(),
        heartbeat_interval_ms: state.config.heartbeat_interval_ms(),
        protocol: PROTOCOL_VERSION,
        format,
    };
    // The welcome follows the registration, so the agent is listed once its worker is welcomed.
    // It goes out before the writer starts, so it is the first frame the worker reads (and
    // alone: a batching worker never finds it inside a batch).
    if state.commands.send(register).await.is_err()
        || is_registered.await.is_err()
        || socket.send(framer::text(&welcome)).await.is_err()
    {
        state.connections.remove(agent);
        let _ = state.commands.send(Command::Disconnected { agent }).await;
        return;
    }
    state.swarms.join(agent, &groups);

    let (mut sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(async move {
        // Reused for every wake-up: what is queued is taken at once, written, flushed once.
        let mut items = Vec::with_capacity(framer::MAX_BATCH);
        let mut frames = Vec::new();
        // A worker that stops reading fills its socket's buffers and then blocks the writer:
        // past the timeout the hub lets go of it.
        let write = |result: Result<Result<(), axum::Error>, _>| matches!(result, Ok(Ok(())));
        while queue.recv_many(&mut items, framer::MAX_BATCH).await > 0 {
            let close = framer::frames(format, &mut items, &mut frames);
            for frame in frames.drain(..) {
                if !write(tokio::time::timeout(WRITE_TIMEOUT, sink.feed(frame)).await) {
                    return;
                }
            }
            if let Some(close) = close {
                let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(close)).await;
                return;
            }
            if !write(tokio::time::timeout(WRITE_TIMEOUT, sink.flush()).await) {
                return;
            }
        }
    });

    let stop = crate::state::stopped(state.shutdown.clone());
    tokio::pin!(stop);
    let token_ended = crate::auth::token_ended(&state, who.as_ref());
    tokio::pin!(token_ended);
    let mut writer_done = false;
    // A worker that closes the connection itself (drained, or shut down) is not lost; one whose
    // connection breaks or that the hub closes for missed heartbeats is.
    let mut lost = true;
    // Frames answered with an error; past the budget the connection is closed.
    let mut invalid = 0;
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Close(_))) => {
                    lost = false;
                    break;
                }
                Some(Err(e)) => {
                    // A frame over the size limit: say so, with the close code for it.
                    if over_size_limit(e) {
                        send_error(&state, agent, "frame_too_large", format!(
                            "a message is over the limit of {limit} bytes (server.max_message_bytes)"));
                        close(&state, agent, 1009, "frame over the size limit");
                    }
                    break;
                }
                None => break,
                Some(Ok(frame)) => {
                    let answered_error = match decode(&frame, limit) {
                        Some(Ok(WorkerMessage::Batch(messages))) => {
                            let mut any = false;
                            for message in messages {
                                any |= handle_message(&state, agent, message).await;
                            }
                            any
                        }
                        Some(Ok(message)) => handle_message(&state, agent, message).await,
                        Some(Err(e)) => {
                            send_error(&state, agent, "invalid_message", e);
                            true
                        }
                        None => false,
                    };
                    invalid += usize::from(answered_error);
                    if invalid > MAX_INVALID_FRAMES {
                        close(&state, agent, 1008, "too many invalid frames");
                        break;
                    }
                }
            },
            _ = &mut writer => {
                writer_done = true;
                break;
            }
            _ = &mut stop => {
                lost = false;
                break;
            }
            end = &mut token_ended => {
                send_error(&state, agent, end.code(), format!("the token this agent connected \
                    with {}", end.how()));
                close(&state, agent, 1008, end.reason());
                lost = false;
                break;
            }
        }
    }
    if lost && !*state.shutdown.borrow() {
        state.metrics.add(crate::metrics::Count::AgentsLost, 1);
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

/// True when the socket failed because the peer sent a message over the size limit (any other
/// error is a broken connection).
fn over_size_limit(error: axum::Error) -> bool {
    use tungstenite::error::{CapacityError, Error};
    matches!(
        error.into_inner().downcast_ref::<Error>(),
        Some(Error::Capacity(CapacityError::MessageTooLong { .. }))
    )
}

/// Queues a close frame with `code` (after anything queued before it).
fn close(state: &AppState, agent: AgentId, code: u16, reason: &str) {
    let why = CloseReason {
        code,
        reason: reason.into(),
    };
    state.connections.send(agent, Outbound::Close(Some(why)));
}

fn send_error(state: &AppState, agent: AgentId, code: &str, message: String) {
    let error = HubMessage::Error {
        code: code.into(),
        message,
    };
    state.connections.send(agent, Outbound::Message(error));
}

/// Returns true when the message was answered with an error.
async fn handle_message(state: &AppState, agent: AgentId, message: WorkerMessage) -> bool {
    let command = match message {
        WorkerMessage::Heartbeat => Ok(Command::Heartbeat { agent }),
        WorkerMessage::Drain => {
            // Answered to the worker by the hub's own `drain` frame.
            let (reply, _) = tokio::sync::oneshot::channel();
            Ok(Command::Drain {
                agent,
                undo: false,
                reply,
            })
        }
        WorkerMessage::Release(held) => match held.task_id.parse() {
            Ok(task) => Ok(Command::Report {
                agent,
                task,
                attempt: held.attempt,
                report: Report::Released,
            }),
            Err(e) => {
                let e: hive_core::IdParseError = e;
                Err(("invalid_message", format!("release.task_id: {e}")))
            }
        },
        WorkerMessage::Result(result) => {
            let (command, refused) = report(agent, result, &state.config.limits);
            if let Some(why) = refused {
                // Still a result: the attempt fails at once instead of waiting out its lease.
                send_error(state, agent, "output_refused", why);
            }
            command
        }
        WorkerMessage::Reply { message_id, output } => {
            // A result's bounds: the reply is passed on to the client as it is.
            match state.config.limits.check_output(output.get()) {
                Ok(()) => state.swarms.reply(&message_id, agent, output),
                // Dropped: the broadcast lists the agent as missing.
                Err(why) => send_error(
                    state,
                    agent,
                    "output_refused",
                    format!("reply.output {why}"),
                ),
            }
            return false;
        }
        WorkerMessage::Progress(progress) => {
            return match crate::progress::pass_on(state, agent, progress) {
                Ok(()) => false,
                Err(why) => {
                    // Said, but not counted toward the invalid frames (docs/protocol.md).
                    send_error(state, agent, "progress_refused", why);
                    false
                }
            };
        }
        WorkerMessage::Hello(_) => Err(("protocol_error", "hello was already received".into())),
        // The codec refuses a batch inside a batch.
        WorkerMessage::Batch(_) => Err(("protocol_error", "nested batch".into())),
    };
    match command {
        Ok(command) => {
            let _ = state.commands.send(command).await;
            false
        }
        Err((code, message)) => {
            send_error(state, agent, code, message);
            true
        }
    }
}

/// The command for a result, and why its output was refused when it was (over the size or
/// nesting limit: the attempt then fails, not retried, since the same output would come again).
fn report(
    agent: AgentId,
    result: TaskResult,
    limits: &TaskLimits,
) -> (Result<Command, (&'static str, String)>, Option<String>) {
    let task: TaskId = match result.task_id.parse() {
        Ok(task) => task,
        Err(e) => {
            let e: hive_core::IdParseError = e;
            return (
                Err(("invalid_message", format!("result.task_id: {e}"))),
                None,
            );
        }
    };
    let mut refused = None;
    let report = if result.ok {
        // The frame's own text, taken over rather than copied.
        let output = result
            .output
            .map(|o| String::from(Box::<str>::from(o)))
            .unwrap_or_else(|| "null".into());
        match limits.check_output(&output) {
            Ok(()) => Report::Success { output },
            Err(why) => {
                refused = Some(format!("result.output {why}"));
                Report::Failure {
                    error: format!("output {why}"),
                    retryable: false,
                }
            }
        }
    } else {
        let mut error = result
            .error
            .unwrap_or_else(|| "the worker reported a failure".into());
        limits.truncate_error(&mut error);
        Report::Failure {
            error,
            retryable: result.retry,
        }
    };
    let command = Command::Report {
        agent,
        task,
        attempt: result.attempt,
        report,
    };
    (Ok(command), refused)
}

/// Refuses a hello asking for capabilities or swarms its agent token does not grant.
fn within_grant(joining: Joining, who: Option<&Principal>) -> Result<Joining, String> {
    let Some(who) = who else {
        return Ok(joining);
    };
    if let Some(allowed) = &who.capabilities
        && let Some((c, _)) = joining
            .spec
            .capabilities
            .iter()
            .find(|(c, _)| !allowed.iter().any(|a| a == c.as_str()))
    {
        return Err(format!(
            "capabilities: the token {:?} may not offer {c:?}",
            who.name
        ));
    }
    if let Some(allowed) = &who.groups
        && let Some(g) = joining.groups.iter().find(|g| !allowed.contains(g))
    {
        return Err(format!(
            "groups: the token {:?} may not join {g:?}",
            who.name
        ));
    }
    Ok(joining)
}

/// What a `hello` asks for.
struct Joining {
    spec: AgentSpec,
    /// The swarms it joins.
    groups: Vec<String>,
    /// The frames it reads.
    format: FrameFormat,
    /// The attempts it still holds from an earlier connection.
    held: Vec<HeldAttempt>,
}

fn agent_spec(hello: Hello) -> Result<Joining, String> {
    if hello.groups.len() > MAX_GROUPS {
        return Err(format!(
            "groups: {} named, at most {MAX_GROUPS}",
            hello.groups.len()
        ));
    }
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
    if hello.running.len() > spec.slots as usize {
        return Err(format!(
            "running: {} attempts named, more than the {} slots",
            hello.running.len(),
            spec.slots
        ));
    }
    let mut running = hello.running.clone();
    running.sort_by(|a, b| (&a.task_id, a.attempt).cmp(&(&b.task_id, b.attempt)));
    running.dedup();
    let held = running
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.task_id
                .parse()
                .map(|task| HeldAttempt {
                    task,
                    attempt: r.attempt,
                })
                .map_err(|e| format!("running[{i}].task_id: {e}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Joining {
        spec,
        groups: hello.groups,
        format: hello.format,
        held,
    })
}
