//! The worker protocol on `/ws/agent`: JSON text frames, each an object with a `type`. See
//! `docs/protocol.md` for the conversation and examples.
//!
//! Frames are parsed through flat "raw" structs rather than serde's internally tagged enums:
//! those buffer the whole frame and then cannot hand a payload over as raw JSON text, which would
//! cost a parse and a re-serialisation of every payload and output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::codec::{Compression, Encoding, FrameFormat};

pub const PROTOCOL_VERSION: u32 = 1;

/// The most a WebSocket end of the protocol reads from its socket at once (tungstenite's
/// `read_buffer_size`). tungstenite zero-fills that much of its buffer before every read: at its
/// default of 128 KiB that was 58% of all instructions of an agent's connect-drain-disconnect
/// round in the hub, and the largest single cost of the C library per task (`hive-perf
/// end-to-end`). A frame larger than this is read in several calls.
pub const READ_BUFFER_BYTES: usize = 16 << 10;

/// A frame from a worker to the hub: read through [`RawWorkerMessage`], written through
/// [`WorkerMessageRef`], which borrows it.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawWorkerMessage")]
pub enum WorkerMessage {
    Hello(Hello),
    Heartbeat,
    Result(TaskResult),
    /// The worker takes no more work (it is shutting down); it still reports what it runs.
    Drain,
    /// A stopping worker gives back an attempt it did not start: the task runs elsewhere, and
    /// the attempt does not count toward its `max_attempts` (after a `drain` only).
    Release(RunningAttempt),
    /// The answer to a swarm `message`.
    Reply {
        message_id: String,
        output: Box<RawValue>,
    },
    /// How a running attempt is getting on: a fraction done, a message, text to append to its
    /// partial output (docs/protocol.md, "Progress"). Not stored; streamed to watchers.
    Progress(Progress),
    /// Several messages in one frame (any side may send one; see `codec`).
    Batch(Vec<WorkerMessage>),
}

/// A `progress` frame: at least one of `fraction`, `message`, `output`.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub task_id: String,
    pub attempt: u32,
    /// 0.0-1.0.
    pub fraction: Option<f64>,
    pub message: Option<String>,
    /// Text that follows what earlier frames of the attempt sent (a model's next tokens).
    pub output: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub name: String,
    pub capabilities: Capabilities,
    pub slots: u32,
    /// Swarms (named groups) this agent joins, for broadcast messages.
    pub groups: Vec<String>,
    /// The frames this worker can read (JSON text unless it asks for more).
    pub format: FrameFormat,
    /// Attempts a reconnecting worker still runs, or finished and has not yet reported: the hub
    /// binds those still current to this connection and sends `cancel` for the others.
    pub running: Vec<RunningAttempt>,
}

/// An attempt named in a `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningAttempt {
    pub task_id: String,
    pub attempt: u32,
}

/// Either a list of names (level 1.0 each) or a map of name to level (0.0-1.0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Capabilities {
    Names(Vec<String>),
    Levels(BTreeMap<String, f64>),
}

impl Capabilities {
    pub fn levels(&self) -> Vec<(String, f64)> {
        match self {
            Capabilities::Names(names) => names.iter().map(|n| (n.clone(), 1.0)).collect(),
            Capabilities::Levels(levels) => levels.iter().map(|(n, l)| (n.clone(), *l)).collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TaskResult {
    pub task_id: String,
    pub attempt: u32,
    pub ok: bool,
    /// Any JSON value; required when `ok`.
    pub output: Option<Box<RawValue>>,
    pub error: Option<String>,
    /// For a failure: may the hub try again (default true)?
    pub retry: bool,
}

/// A frame from the hub to a worker: read through [`RawHubMessage`], written through
/// [`HubMessageRef`], which borrows it.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawHubMessage")]
pub enum HubMessage {
    Welcome {
        agent_id: String,
        heartbeat_interval_ms: u64,
        protocol: u32,
        /// The frames the hub will send from now on.
        format: FrameFormat,
    },
    Assign {
        tasks: Vec<Assignment>,
    },
    Cancel {
        task_id: String,
        attempt: u32,
    },
    Drain,
    /// A drain was undone: take work again.
    Resume,
    Error {
        code: String,
        message: String,
    },
    /// A broadcast to a swarm the agent joined; answer with `reply`. Not stored.
    Message {
        message_id: String,
        group: String,
        payload: Box<RawValue>,
    },
    /// Several messages in one frame, sent only to a worker that asked for `batch`.
    Batch(Vec<HubMessage>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    pub task_id: String,
    pub attempt: u32,
    pub capability: String,
    #[serde(with = "crate::codec::json_value")]
    pub payload: Box<RawValue>,
    pub priority: u8,
    /// The attempt's lease: past this many milliseconds the hub gives the attempt up.
    pub timeout_ms: u64,
    /// When the lease ends, by the hub's clock: milliseconds since the Unix epoch (the attempt's
    /// start plus `timeout_ms`; the worker cannot see the start). Absent from hubs before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// For a task with `depends_on`: each parent's id mapped to its result. A parent that
    /// failed or was cancelled (only a task with `on_parent_failure: "run"` runs after one) maps
    /// to `{"status": ..., "error": ...}` and is listed in `failed_inputs`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::codec::json_value::present"
    )]
    pub inputs: Option<Box<RawValue>>,
    /// The parents in `inputs` that failed or were cancelled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_inputs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FrameError(pub String);

fn missing(kind: &str, field: &str) -> FrameError {
    FrameError(format!("{kind}: missing field `{field}`"))
}

#[derive(Debug, Deserialize)]
struct RawWorkerMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    capabilities: Option<Capabilities>,
    #[serde(default)]
    slots: Option<u32>,
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    ok: Option<bool>,
    // `null` is a valid output: present-but-null must not read as absent.
    #[serde(default, with = "crate::codec::json_value::present")]
    output: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    retry: Option<bool>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    running: Option<Vec<RunningAttempt>>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    fraction: Option<f64>,
    #[serde(default)]
    message: Option<String>,
    // Not `#[serde(flatten)]`: that buffers every frame into a map before reading it.
    #[serde(default)]
    encoding: Option<Encoding>,
    #[serde(default)]
    compression: Option<Compression>,
    #[serde(default)]
    batch: Option<bool>,
    #[serde(default)]
    frames: Option<Vec<WorkerMessage>>,
}

fn format(
    encoding: Option<Encoding>,
    compression: Option<Compression>,
    batch: Option<bool>,
) -> FrameFormat {
    FrameFormat {
        encoding: encoding.unwrap_or_default(),
        compression: compression.unwrap_or_default(),
        batch: batch.unwrap_or(false),
    }
}

/// The negotiation fields as written: only what differs from the default.
fn format_fields(f: FrameFormat) -> (Option<Encoding>, Option<Compression>, Option<bool>) {
    (
        (f.encoding != Encoding::Json).then_some(f.encoding),
        (f.compression != Compression::None).then_some(f.compression),
        f.batch.then_some(true),
    )
}

fn unbatched<T>(
    frames: Option<Vec<T>>,
    is_batch: impl Fn(&T) -> bool,
) -> Result<Vec<T>, FrameError> {
    let frames = frames.ok_or_else(|| missing("batch", "frames"))?;
    if frames.iter().any(is_batch) {
        return Err(FrameError(
            "batch: a batch cannot hold another batch".into(),
        ));
    }
    Ok(frames)
}

impl TryFrom<RawWorkerMessage> for WorkerMessage {
    type Error = FrameError;
    fn try_from(raw: RawWorkerMessage) -> Result<Self, FrameError> {
        match raw.kind.as_str() {
            "hello" => Ok(WorkerMessage::Hello(Hello {
                name: raw.name.ok_or_else(|| missing("hello", "name"))?,
                capabilities: raw
                    .capabilities
                    .ok_or_else(|| missing("hello", "capabilities"))?,
                slots: raw.slots.unwrap_or(1),
                groups: raw.groups.unwrap_or_default(),
                format: format(raw.encoding, raw.compression, raw.batch),
                running: raw.running.unwrap_or_default(),
            })),
            "heartbeat" => Ok(WorkerMessage::Heartbeat),
            "drain" => Ok(WorkerMessage::Drain),
            "release" => Ok(WorkerMessage::Release(RunningAttempt {
                task_id: raw.task_id.ok_or_else(|| missing("release", "task_id"))?,
                attempt: raw.attempt.ok_or_else(|| missing("release", "attempt"))?,
            })),
            "result" => {
                let ok = raw.ok.ok_or_else(|| missing("result", "ok"))?;
                if ok && raw.output.is_none() {
                    return Err(missing("result", "output"));
                }
                Ok(WorkerMessage::Result(TaskResult {
                    task_id: raw.task_id.ok_or_else(|| missing("result", "task_id"))?,
                    attempt: raw.attempt.ok_or_else(|| missing("result", "attempt"))?,
                    ok,
                    output: raw.output,
                    error: raw.error,
                    // Only a failure may be retried; unless it says otherwise, it may.
                    retry: raw.retry.unwrap_or(!ok),
                }))
            }
            "reply" => Ok(WorkerMessage::Reply {
                message_id: raw
                    .message_id
                    .ok_or_else(|| missing("reply", "message_id"))?,
                output: raw.output.ok_or_else(|| missing("reply", "output"))?,
            }),
            "progress" => progress(raw).map(WorkerMessage::Progress),
            "batch" => Ok(WorkerMessage::Batch(unbatched(raw.frames, |m| {
                matches!(m, WorkerMessage::Batch(_))
            })?)),
            other => Err(FrameError(format!(
                "unknown message type {other:?}; expected hello, heartbeat, result, reply, progress, drain, release or batch"
            ))),
        }
    }
}

fn progress(raw: RawWorkerMessage) -> Result<Progress, FrameError> {
    let output = match raw.output {
        Some(text) => Some(serde_json::from_str::<String>(text.get()).map_err(|_| {
            FrameError("progress: `output` must be a string (text to append)".into())
        })?),
        None => None,
    };
    if let Some(fraction) = raw.fraction
        && !(0.0..=1.0).contains(&fraction)
    {
        return Err(FrameError(format!(
            "progress: `fraction` must be from 0 to 1, not {fraction}"
        )));
    }
    if raw.fraction.is_none() && raw.message.is_none() && output.is_none() {
        return Err(FrameError(
            "progress: needs at least one of `fraction`, `message`, `output`".into(),
        ));
    }
    Ok(Progress {
        task_id: raw.task_id.ok_or_else(|| missing("progress", "task_id"))?,
        attempt: raw.attempt.ok_or_else(|| missing("progress", "attempt"))?,
        fraction: raw.fraction,
        message: raw.message,
        output,
    })
}

/// A worker message as its frame has it, borrowed: the fields of [`RawWorkerMessage`] in the
/// same order, so that the bytes are the same (see [`HubMessageRef`]).
#[derive(Default, Serialize)]
struct WorkerMessageRef<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<&'a Capabilities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slots: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<crate::codec::json_value::AsJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    running: Option<&'a [RunningAttempt]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<Encoding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compression: Option<Compression>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames: Option<&'a [WorkerMessage]>,
}

impl WorkerMessageRef<'_> {
    fn of(kind: &'static str) -> Self {
        WorkerMessageRef {
            kind,
            ..Default::default()
        }
    }
}

impl Serialize for WorkerMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use crate::codec::json_value::AsJson;
        // A progress frame's text goes out as a JSON string value, as `output` always is.
        let progress_output: Option<Box<RawValue>>;
        let view = match self {
            WorkerMessage::Hello(hello) => {
                let (encoding, compression, batch) = format_fields(hello.format);
                WorkerMessageRef {
                    name: Some(&hello.name),
                    capabilities: Some(&hello.capabilities),
                    slots: Some(hello.slots),
                    groups: (!hello.groups.is_empty()).then_some(&hello.groups[..]),
                    running: (!hello.running.is_empty()).then_some(&hello.running[..]),
                    encoding,
                    compression,
                    batch,
                    ..WorkerMessageRef::of("hello")
                }
            }
            WorkerMessage::Heartbeat => WorkerMessageRef::of("heartbeat"),
            WorkerMessage::Drain => WorkerMessageRef::of("drain"),
            WorkerMessage::Release(held) => WorkerMessageRef {
                task_id: Some(&held.task_id),
                attempt: Some(held.attempt),
                ..WorkerMessageRef::of("release")
            },
            WorkerMessage::Result(result) => WorkerMessageRef {
                task_id: Some(&result.task_id),
                attempt: Some(result.attempt),
                ok: Some(result.ok),
                output: result.output.as_deref().map(AsJson),
                error: result.error.as_deref(),
                retry: (!result.ok).then_some(result.retry),
                ..WorkerMessageRef::of("result")
            },
            WorkerMessage::Reply { message_id, output } => WorkerMessageRef {
                message_id: Some(message_id),
                output: Some(AsJson(output)),
                ..WorkerMessageRef::of("reply")
            },
            WorkerMessage::Progress(p) => {
                progress_output = p
                    .output
                    .as_ref()
                    .map(|text| serde_json::value::to_raw_value(text).expect("a string is JSON"));
                WorkerMessageRef {
                    task_id: Some(&p.task_id),
                    attempt: Some(p.attempt),
                    fraction: p.fraction,
                    message: p.message.as_deref(),
                    output: progress_output.as_deref().map(AsJson),
                    ..WorkerMessageRef::of("progress")
                }
            }
            WorkerMessage::Batch(frames) => WorkerMessageRef {
                frames: Some(frames),
                ..WorkerMessageRef::of("batch")
            },
        };
        view.serialize(s)
    }
}

#[derive(Debug, Deserialize)]
struct RawHubMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    heartbeat_interval_ms: Option<u64>,
    #[serde(default)]
    protocol: Option<u32>,
    #[serde(default)]
    tasks: Option<Vec<Assignment>>,
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default, with = "crate::codec::json_value::present")]
    payload: Option<Box<RawValue>>,
    // Not `#[serde(flatten)]`: that buffers every frame into a map before reading it.
    #[serde(default)]
    encoding: Option<Encoding>,
    #[serde(default)]
    compression: Option<Compression>,
    #[serde(default)]
    batch: Option<bool>,
    #[serde(default)]
    frames: Option<Vec<HubMessage>>,
}

impl TryFrom<RawHubMessage> for HubMessage {
    type Error = FrameError;
    fn try_from(raw: RawHubMessage) -> Result<Self, FrameError> {
        match raw.kind.as_str() {
            "welcome" => Ok(HubMessage::Welcome {
                agent_id: raw.agent_id.ok_or_else(|| missing("welcome", "agent_id"))?,
                heartbeat_interval_ms: raw.heartbeat_interval_ms.unwrap_or(5_000),
                protocol: raw.protocol.unwrap_or(PROTOCOL_VERSION),
                format: format(raw.encoding, raw.compression, raw.batch),
            }),
            "batch" => Ok(HubMessage::Batch(unbatched(raw.frames, |m| {
                matches!(m, HubMessage::Batch(_))
            })?)),
            "assign" => Ok(HubMessage::Assign {
                tasks: raw.tasks.ok_or_else(|| missing("assign", "tasks"))?,
            }),
            "cancel" => Ok(HubMessage::Cancel {
                task_id: raw.task_id.ok_or_else(|| missing("cancel", "task_id"))?,
                attempt: raw.attempt.ok_or_else(|| missing("cancel", "attempt"))?,
            }),
            "drain" => Ok(HubMessage::Drain),
            "resume" => Ok(HubMessage::Resume),
            "message" => Ok(HubMessage::Message {
                message_id: raw
                    .message_id
                    .ok_or_else(|| missing("message", "message_id"))?,
                group: raw.group.ok_or_else(|| missing("message", "group"))?,
                payload: raw.payload.ok_or_else(|| missing("message", "payload"))?,
            }),
            "error" => Ok(HubMessage::Error {
                code: raw.code.unwrap_or_default(),
                message: raw.message.unwrap_or_default(),
            }),
            other => Err(FrameError(format!("unknown message type {other:?}"))),
        }
    }
}

/// A hub message as its frame has it, borrowed: the fields of [`RawHubMessage`] in the same
/// order, so that the bytes are the same. Serialising through an owned `RawHubMessage`
/// (`#[serde(into)]`) cloned every message, payloads included, each time it was sent.
#[derive(Default, Serialize)]
struct HubMessageRef<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<&'a [Assignment]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<crate::codec::json_value::AsJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<Encoding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compression: Option<Compression>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames: Option<&'a [HubMessage]>,
}

impl HubMessageRef<'_> {
    fn of(kind: &'static str) -> Self {
        HubMessageRef {
            kind,
            ..Default::default()
        }
    }
}

impl Serialize for HubMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let view = match self {
            HubMessage::Welcome {
                agent_id,
                heartbeat_interval_ms,
                protocol,
                format,
            } => {
                let (encoding, compression, batch) = format_fields(*format);
                HubMessageRef {
                    agent_id: Some(agent_id),
                    heartbeat_interval_ms: Some(*heartbeat_interval_ms),
                    protocol: Some(*protocol),
                    encoding,
                    compression,
                    batch,
                    ..HubMessageRef::of("welcome")
                }
            }
            HubMessage::Batch(frames) => HubMessageRef {
                frames: Some(frames),
                ..HubMessageRef::of("batch")
            },
            HubMessage::Assign { tasks } => HubMessageRef {
                tasks: Some(tasks),
                ..HubMessageRef::of("assign")
            },
            HubMessage::Cancel { task_id, attempt } => HubMessageRef {
                task_id: Some(task_id),
                attempt: Some(*attempt),
                ..HubMessageRef::of("cancel")
            },
            HubMessage::Drain => HubMessageRef::of("drain"),
            HubMessage::Resume => HubMessageRef::of("resume"),
            HubMessage::Error { code, message } => HubMessageRef {
                code: Some(code),
                message: Some(message),
                ..HubMessageRef::of("error")
            },
            HubMessage::Message {
                message_id,
                group,
                payload,
            } => HubMessageRef {
                message_id: Some(message_id),
                group: Some(group),
                payload: Some(crate::codec::json_value::AsJson(payload)),
                ..HubMessageRef::of("message")
            },
        };
        view.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_frames_parse_with_raw_output() {
        let m: WorkerMessage = serde_json::from_str(
            r#"{"type":"result","task_id":"t","attempt":2,"ok":true,"output":{"a":[1, 2]}}"#,
        )
        .unwrap();
        let WorkerMessage::Result(r) = m else {
            panic!()
        };
        assert_eq!(r.output.unwrap().get(), r#"{"a":[1, 2]}"#);
        let m: WorkerMessage = serde_json::from_str(
            r#"{"type":"hello","name":"w","capabilities":{"echo":0.5},"slots":4}"#,
        )
        .unwrap();
        let WorkerMessage::Hello(h) = m else { panic!() };
        assert_eq!(h.capabilities.levels(), vec![("echo".to_string(), 0.5)]);
        let m: WorkerMessage =
            serde_json::from_str(r#"{"type":"hello","name":"w","capabilities":["a","b"]}"#)
                .unwrap();
        assert!(matches!(m, WorkerMessage::Hello(Hello { slots: 1, .. })));
    }

    #[test]
    fn swarm_frames_round_trip() {
        let m: WorkerMessage = serde_json::from_str(
            r#"{"type":"hello","name":"w","capabilities":["a"],"groups":["g1","g2"]}"#,
        )
        .unwrap();
        let WorkerMessage::Hello(h) = m else { panic!() };
        assert_eq!(h.groups, vec!["g1", "g2"]);
        let m: WorkerMessage =
            serde_json::from_str(r#"{"type":"reply","message_id":"m","output":null}"#).unwrap();
        assert!(matches!(m, WorkerMessage::Reply { output, .. } if output.get() == "null"));
        let text = serde_json::to_string(&HubMessage::Message {
            message_id: "m".into(),
            group: "g".into(),
            payload: RawValue::from_string("[1]".into()).unwrap(),
        })
        .unwrap();
        assert_eq!(
            text,
            r#"{"type":"message","message_id":"m","group":"g","payload":[1]}"#
        );
        assert!(matches!(
            serde_json::from_str(&text).unwrap(),
            HubMessage::Message { .. }
        ));
    }

    #[test]
    fn a_null_output_is_an_output() {
        let m: WorkerMessage = serde_json::from_str(
            r#"{"type":"result","task_id":"t","attempt":1,"ok":true,"output":null}"#,
        )
        .unwrap();
        let WorkerMessage::Result(r) = m else {
            panic!()
        };
        assert_eq!(r.output.unwrap().get(), "null");
    }

    #[test]
    fn bad_worker_frames_name_what_is_wrong() {
        let err =
            serde_json::from_str::<WorkerMessage>(r#"{"type":"result","ok":true,"output":1}"#)
                .unwrap_err();
        assert!(err.to_string().contains("task_id"), "{err}");
        let err = serde_json::from_str::<WorkerMessage>(r#"{"type":"dance"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown message type"), "{err}");
    }

    #[test]
    fn hub_frames_round_trip() {
        let assign = HubMessage::Assign {
            tasks: vec![Assignment {
                task_id: "t".into(),
                attempt: 1,
                capability: "c".into(),
                payload: RawValue::from_string("[1,2]".into()).unwrap(),
                priority: 5,
                timeout_ms: 100,
                deadline_ms: Some(1_780_000_000_100),
                inputs: None,
                failed_inputs: vec![],
            }],
        };
        let text = serde_json::to_string(&assign).unwrap();
        assert!(
            text.starts_with(r#"{"type":"assign","tasks":[{"task_id":"t""#),
            "{text}"
        );
        let back: HubMessage = serde_json::from_str(&text).unwrap();
        let HubMessage::Assign { tasks } = back else {
            panic!()
        };
        assert_eq!(tasks[0].payload.get(), "[1,2]");
        assert!(!text.contains("inputs"), "absent without parents: {text}");
    }

    /// Each kind of hub message as its frame must read (docs/protocol.md), written by reference
    /// (`HubMessageRef`) and read back, in JSON and in MessagePack.
    #[test]
    fn every_hub_message_is_written_as_documented_and_reads_back() {
        let raw = |text: &str| RawValue::from_string(text.into()).unwrap();
        let cancel = || HubMessage::Cancel {
            task_id: "t".into(),
            attempt: 2,
        };
        let cases = [
            (
                HubMessage::Welcome {
                    agent_id: "a".into(),
                    heartbeat_interval_ms: 5_000,
                    protocol: 2,
                    format: FrameFormat {
                        encoding: Encoding::Msgpack,
                        compression: Compression::Lz4,
                        batch: true,
                    },
                },
                r#"{"type":"welcome","agent_id":"a","heartbeat_interval_ms":5000,"protocol":2,"encoding":"msgpack","compression":"lz4","batch":true}"#,
            ),
            (
                HubMessage::Welcome {
                    agent_id: "a".into(),
                    heartbeat_interval_ms: 5_000,
                    protocol: 2,
                    format: FrameFormat::default(),
                },
                r#"{"type":"welcome","agent_id":"a","heartbeat_interval_ms":5000,"protocol":2}"#,
            ),
            (
                HubMessage::Assign {
                    tasks: vec![Assignment {
                        task_id: "t".into(),
                        attempt: 1,
                        capability: "c".into(),
                        payload: raw(r#"{"x":[1,"y"]}"#),
                        priority: 5,
                        timeout_ms: 100,
                        deadline_ms: Some(1_780_000_000_100),
                        inputs: Some(raw(r#"{"p":null}"#)),
                        failed_inputs: vec!["p".into()],
                    }],
                },
                r#"{"type":"assign","tasks":[{"task_id":"t","attempt":1,"capability":"c","payload":{"x":[1,"y"]},"priority":5,"timeout_ms":100,"deadline_ms":1780000000100,"inputs":{"p":null},"failed_inputs":["p"]}]}"#,
            ),
            (cancel(), r#"{"type":"cancel","task_id":"t","attempt":2}"#),
            (HubMessage::Drain, r#"{"type":"drain"}"#),
            (HubMessage::Resume, r#"{"type":"resume"}"#),
            (
                HubMessage::Error {
                    code: "bad_frame".into(),
                    message: "why".into(),
                },
                r#"{"type":"error","code":"bad_frame","message":"why"}"#,
            ),
            (
                HubMessage::Message {
                    message_id: "m".into(),
                    group: "g".into(),
                    payload: raw("null"),
                },
                r#"{"type":"message","message_id":"m","group":"g","payload":null}"#,
            ),
            (
                HubMessage::Batch(vec![cancel(), HubMessage::Drain]),
                r#"{"type":"batch","frames":[{"type":"cancel","task_id":"t","attempt":2},{"type":"drain"}]}"#,
            ),
        ];
        for (message, expected) in cases {
            let text = serde_json::to_string(&message).unwrap();
            assert_eq!(text, expected);
            let back: HubMessage = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), expected);
            let packed = rmp_serde::to_vec_named(&message).unwrap();
            let unpacked: HubMessage = rmp_serde::from_slice(&packed).unwrap();
            assert_eq!(serde_json::to_string(&unpacked).unwrap(), expected);
        }
    }

    /// Each kind of worker message as its frame must read (docs/protocol.md), written by
    /// reference (`WorkerMessageRef`) and read back, in JSON and in MessagePack.
    #[test]
    fn every_worker_message_is_written_as_documented_and_reads_back() {
        let raw = |text: &str| RawValue::from_string(text.into()).unwrap();
        let failed = || {
            WorkerMessage::Result(TaskResult {
                task_id: "t".into(),
                attempt: 2,
                ok: false,
                output: None,
                error: Some("boom".into()),
                retry: false,
            })
        };
        let cases = [
            (
                WorkerMessage::Hello(Hello {
                    name: "w".into(),
                    capabilities: Capabilities::Levels([("echo".to_string(), 0.5)].into()),
                    slots: 4,
                    groups: vec!["g".into()],
                    format: FrameFormat {
                        encoding: Encoding::Msgpack,
                        compression: Compression::Lz4,
                        batch: true,
                    },
                    running: vec![RunningAttempt {
                        task_id: "t".into(),
                        attempt: 1,
                    }],
                }),
                r#"{"type":"hello","name":"w","capabilities":{"echo":0.5},"slots":4,"groups":["g"],"running":[{"task_id":"t","attempt":1}],"encoding":"msgpack","compression":"lz4","batch":true}"#,
            ),
            (
                WorkerMessage::Hello(Hello {
                    name: "w".into(),
                    capabilities: Capabilities::Names(vec!["echo".into()]),
                    slots: 1,
                    groups: vec![],
                    format: FrameFormat::default(),
                    running: vec![],
                }),
                r#"{"type":"hello","name":"w","capabilities":["echo"],"slots":1}"#,
            ),
            (WorkerMessage::Heartbeat, r#"{"type":"heartbeat"}"#),
            (WorkerMessage::Drain, r#"{"type":"drain"}"#),
            (
                WorkerMessage::Release(RunningAttempt {
                    task_id: "t".into(),
                    attempt: 3,
                }),
                r#"{"type":"release","task_id":"t","attempt":3}"#,
            ),
            (
                WorkerMessage::Result(TaskResult {
                    task_id: "t".into(),
                    attempt: 2,
                    ok: true,
                    output: Some(raw(r#"{"a":[1]}"#)),
                    error: None,
                    retry: true,
                }),
                r#"{"type":"result","task_id":"t","attempt":2,"ok":true,"output":{"a":[1]}}"#,
            ),
            (
                WorkerMessage::Result(TaskResult {
                    task_id: "t".into(),
                    attempt: 2,
                    ok: true,
                    output: Some(raw("null")),
                    error: None,
                    retry: true,
                }),
                r#"{"type":"result","task_id":"t","attempt":2,"ok":true,"output":null}"#,
            ),
            (
                failed(),
                r#"{"type":"result","task_id":"t","attempt":2,"ok":false,"error":"boom","retry":false}"#,
            ),
            (
                WorkerMessage::Reply {
                    message_id: "m".into(),
                    output: raw(r#""x""#),
                },
                r#"{"type":"reply","output":"x","message_id":"m"}"#,
            ),
            (
                WorkerMessage::Progress(Progress {
                    task_id: "t".into(),
                    attempt: 1,
                    fraction: Some(0.5),
                    message: Some("half".into()),
                    output: Some(r#"a "b""#.into()),
                }),
                r#"{"type":"progress","task_id":"t","attempt":1,"output":"a \"b\"","fraction":0.5,"message":"half"}"#,
            ),
            (
                WorkerMessage::Batch(vec![WorkerMessage::Heartbeat, failed()]),
                r#"{"type":"batch","frames":[{"type":"heartbeat"},{"type":"result","task_id":"t","attempt":2,"ok":false,"error":"boom","retry":false}]}"#,
            ),
        ];
        for (message, expected) in cases {
            let text = serde_json::to_string(&message).unwrap();
            assert_eq!(text, expected);
            let back: WorkerMessage = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), expected);
            let packed = rmp_serde::to_vec_named(&message).unwrap();
            let unpacked: WorkerMessage = rmp_serde::from_slice(&packed).unwrap();
            assert_eq!(serde_json::to_string(&unpacked).unwrap(), expected);
        }
    }
}
