//! Assignments as the hub sends them: [`Assigned`], the task's spec itself with the attempt and
//! its inputs, and the `assign` frame written straight from it. Building the protocol's
//! [`Assignment`] for each task copied the payload and parsed it again (`views::raw`), and made
//! strings of its id and capability, about 2,000 instructions a task (BENCHMARKS.md, "One
//! payload from the request to the frame"). The JSON bytes are serde's of
//! [`HubMessage::Assign`]; the tests compare them. MessagePack, and the hub's in-process agents,
//! still get an [`Assignment`] ([`Assigned::assignment`]).

use std::sync::Arc;

use hive_core::{TaskSpec, Timestamp};
use hive_proto::RawValue;
use hive_proto::fast_json::{AssignmentParts, Writer};
use hive_proto::protocol::{Assignment, HubMessage};

/// An attempt of a task, as it is sent to the agent that runs it.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub spec: Arc<TaskSpec>,
    pub attempt: u32,
    /// When the attempt's lease ends (`deadline_ms`).
    pub lease_until: Timestamp,
    /// For a task with dependencies: its parents' results and errors, and the parents that
    /// failed (see [`Assignment`]).
    pub inputs: Option<Box<RawValue>>,
    pub failed_inputs: Vec<String>,
}

impl Assigned {
    /// The protocol's type, for what is not written here: MessagePack frames, in-process agents.
    pub fn assignment(&self) -> Assignment {
        Assignment {
            task_id: self.spec.id.to_string(),
            attempt: self.attempt,
            capability: self.spec.capability.to_string(),
            payload: crate::views::raw(&self.spec.payload),
            priority: self.spec.priority,
            timeout_ms: self.spec.timeout_ms,
            deadline_ms: Some(self.lease_until.0),
            inputs: self.inputs.clone(),
            failed_inputs: self.failed_inputs.clone(),
        }
    }

    /// About the bytes it takes in a frame.
    pub fn size(&self) -> usize {
        self.spec.payload.len() + self.inputs.as_ref().map_or(0, |i| i.get().len()) + 256
    }
}

/// `tasks` as a [`HubMessage::Assign`]: JSON written here, MessagePack through serde.
pub fn body(tasks: &[Assigned], encoding: hive_proto::codec::Encoding) -> Vec<u8> {
    match encoding {
        hive_proto::codec::Encoding::Json => json(tasks),
        encoding => hive_proto::codec::hub_body(
            &HubMessage::Assign {
                tasks: tasks.iter().map(Assigned::assignment).collect(),
            },
            encoding,
        ),
    }
}

/// `{"type":"assign","tasks":[...]}`, as `serde_json::to_vec` of the [`HubMessage::Assign`] of
/// the same tasks writes it.
pub fn json(tasks: &[Assigned]) -> Vec<u8> {
    let size: usize = tasks.iter().map(|t| t.size()).sum();
    let mut out = Writer::with_capacity(32 + size);
    out.bytes(br#"{"type":"assign","tasks":"#);
    out.list(tasks, write);
    out.bytes(b"}");
    out.into_bytes()
}

fn write(out: &mut Writer, task: &Assigned) {
    let spec = &task.spec;
    let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
    out.assignment_parts(&AssignmentParts {
        task_id: spec.id.0.hyphenated().encode_lower(&mut id),
        attempt: task.attempt,
        capability: spec.capability.as_str(),
        // JSON text validated when the task was accepted (or read back from the store, which
        // holds only such text).
        payload: &spec.payload,
        priority: spec.priority,
        timeout_ms: spec.timeout_ms,
        deadline_ms: Some(task.lease_until.0),
        inputs: task.inputs.as_deref(),
        failed_inputs: &task.failed_inputs,
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use hive_core::{Backoff, Capability, OnParentFailure, TaskId, Timestamp};
    use hive_proto::codec::Encoding;

    use super::*;

    /// A plain task `n` of `capability` carrying `payload`.
    pub(crate) fn spec(n: u128, capability: &str, payload: &str) -> Arc<TaskSpec> {
        Arc::new(TaskSpec {
            id: TaskId(uuid::Uuid::from_u128(n)),
            capability: Capability::parse(capability, "capability").unwrap(),
            payload: payload.into(),
            priority: 7,
            max_attempts: 3,
            timeout_ms: 12_345,
            backoff: Backoff::default(),
            idempotency_key: None,
            depends_on: Vec::new(),
            on_parent_failure: OnParentFailure::Fail,
            consensus: None,
            created_at: Timestamp(1),
            submitted_by: None,
            features: None,
        })
    }

    fn tasks() -> Vec<Assigned> {
        vec![
            Assigned {
                spec: spec(1, "echo", r#"{"n":1,"text":"a \"quoted\" é"}"#),
                attempt: 1,
                lease_until: Timestamp(1_780_000_012_345),
                inputs: None,
                failed_inputs: Vec::new(),
            },
            Assigned {
                spec: spec(u128::MAX - 3, "a.b:c/d-e_f", "null"),
                attempt: 3,
                lease_until: Timestamp(u64::MAX),
                inputs: Some(
                    RawValue::from_string(format!(
                        r#"{{"{}":{{"ok":[1,2]}},"{}":{{"status":"failed","error":"x"}}}}"#,
                        TaskId(uuid::Uuid::from_u128(5)),
                        TaskId(uuid::Uuid::from_u128(6))
                    ))
                    .unwrap(),
                ),
                failed_inputs: vec![TaskId(uuid::Uuid::from_u128(6)).to_string()],
            },
            Assigned {
                spec: spec(9, "echo", r#"[1, 2.5e3, "\u00e9", {}]"#),
                attempt: 100,
                lease_until: Timestamp(0),
                inputs: None,
                failed_inputs: Vec::new(),
            },
        ]
    }

    fn serdes(tasks: &[Assigned]) -> HubMessage {
        HubMessage::Assign {
            tasks: tasks.iter().map(Assigned::assignment).collect(),
        }
    }

    #[test]
    fn the_frame_is_serdes_bytes_of_the_assignments() {
        let tasks = tasks();
        let written = json(&tasks);
        assert_eq!(
            String::from_utf8(written.clone()).unwrap(),
            String::from_utf8(serde_json::to_vec(&serdes(&tasks)).unwrap()).unwrap()
        );
        assert_eq!(body(&tasks, Encoding::Json), written);
        for one in &tasks {
            let alone = std::slice::from_ref(one);
            assert_eq!(json(alone), serde_json::to_vec(&serdes(alone)).unwrap());
        }
    }

    #[test]
    fn messagepack_goes_through_the_protocols_type_and_carries_the_deadline() {
        let tasks = tasks();
        let frame = [
            &[hive_proto::codec::TAG_MSGPACK][..],
            &body(&tasks, Encoding::Msgpack),
        ]
        .concat();
        let read = hive_proto::codec::decode(hive_proto::codec::Incoming::Binary(&frame), 1 << 20);
        let Ok(HubMessage::Assign { tasks: read }) = read else {
            panic!("an assign frame: {read:?}");
        };
        let deadlines: Vec<_> = read.iter().map(|a| a.deadline_ms).collect();
        let expected: Vec<_> = tasks.iter().map(|a| Some(a.lease_until.0)).collect();
        assert_eq!(deadlines, expected);
        for (read, sent) in read.iter().zip(&tasks) {
            assert_eq!(read.task_id, sent.spec.id.to_string());
            assert_eq!(read.attempt, sent.attempt);
            // The same JSON value (MessagePack does not keep its text's spacing).
            let value = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
            assert_eq!(value(read.payload.get()), value(&sent.spec.payload));
        }
    }
}
