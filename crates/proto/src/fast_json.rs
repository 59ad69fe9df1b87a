//! JSON written by hand for what the hub writes once per task: the `assign` frame every task
//! goes out to its worker in, and the task view that `POST /tasks`, `GET /tasks/{id}`, `/wait`
//! and `/cancel` answer with and `GET /tasks` lists; and for the agent view that an agent's
//! round of the API answers with (`GET /agents/{id}`, the drain, `GET /agents`). serde wrote
//! them key by key, escaping each constant key, id and map key at run time: about 2,200
//! instructions per assignment, 6,300 per task view and 2,000 per agent view (BENCHMARKS.md,
//! "Later changes"). The bytes are serde's, field for field; tests hold the two together, and
//! each writer names every field of its type (no `..`), so a field added to the type does not
//! compile until it is written here. Enums, floating-point numbers and nested values
//! (`status`, `on_parent_failure`, attempts, features, votes, dissenters, progress) still go
//! through serde, as do MessagePack frames.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::api::{Agent, CapabilityStats, Predicted, RoutingEstimate, Task};
use crate::protocol::Assignment;

/// `{"type":"assign","tasks":[...]}`, as `serde_json::to_vec` of [`HubMessage::Assign`] writes it.
///
/// [`HubMessage::Assign`]: crate::protocol::HubMessage::Assign
pub fn assign(tasks: &[Assignment]) -> Vec<u8> {
    let size: usize = tasks.iter().map(assignment_size).sum();
    written(32 + size, |out| {
        out.bytes(br#"{"type":"assign","tasks":"#);
        out.list(tasks, Out::assignment);
        out.bytes(b"}");
    })
}

/// A task as `serde_json::to_vec` of [`Task`] writes it.
pub fn task(task: &Task) -> Vec<u8> {
    written(task_size(task), |out| out.task(task))
}

/// `{"items":[...],"next_cursor":...}`, as `serde_json::to_vec` of
/// [`TaskList`](crate::api::TaskList) writes it.
pub fn task_list(items: &[Task], next_cursor: Option<&str>) -> Vec<u8> {
    page(items, task_size, Out::task, |out| {
        out.bytes(br#","next_cursor":"#);
        out.optional_string(next_cursor);
    })
}

/// An agent as `serde_json::to_vec` of [`Agent`] writes it.
pub fn agent(agent: &Agent) -> Vec<u8> {
    written(agent_size(agent), |out| out.agent(agent))
}

/// `{"items":[...]}` and `"next_cursor"` when there is one, as `serde_json::to_vec` of
/// [`AgentList`](crate::api::AgentList) writes it.
pub fn agent_list(items: &[Agent], next_cursor: Option<&str>) -> Vec<u8> {
    page(items, agent_size, Out::agent, |out| {
        out.present(br#","next_cursor":"#, next_cursor, Out::string);
    })
}

/// What `write` writes, into a buffer of about `size` bytes.
fn written(size: usize, write: impl FnOnce(&mut Out)) -> Vec<u8> {
    let mut out = Out(Vec::with_capacity(size));
    write(&mut out);
    out.0
}

/// `{"items":[...]` and the cursor as `cursor` writes it, then `}`: a page of a listing.
fn page<T>(
    items: &[T],
    size: fn(&T) -> usize,
    item: fn(&mut Out, &T),
    cursor: impl FnOnce(&mut Out),
) -> Vec<u8> {
    let size: usize = items.iter().map(size).sum();
    written(32 + size, |out| {
        out.bytes(br#"{"items":"#);
        out.list(items, item);
        cursor(out);
        out.bytes(b"}");
    })
}

/// About the bytes of an agent: room for its fixed fields and for each capability's entries.
fn agent_size(agent: &Agent) -> usize {
    256 + 256 * agent.capabilities.len()
}

/// About the bytes of one assignment: its texts and room for the keys and numbers.
fn assignment_size(task: &Assignment) -> usize {
    let inputs = task.inputs.as_ref().map_or(0, |i| i.get().len() + 10);
    let failed: usize = task.failed_inputs.iter().map(|id| id.len() + 3).sum();
    128 + task.task_id.len() + task.capability.len() + task.payload.get().len() + inputs + failed
}

/// About the bytes of a task without attempts: its payload and room for the rest.
fn task_size(task: &Task) -> usize {
    320 + task.payload.get().len()
}

struct Out(Vec<u8>);

impl Out {
    fn assignment(&mut self, task: &Assignment) {
        let Assignment {
            task_id,
            attempt,
            capability,
            payload,
            priority,
            timeout_ms,
            inputs,
            failed_inputs,
        } = task;
        self.bytes(br#"{"task_id":"#);
        self.string(task_id);
        self.bytes(br#","attempt":"#);
        self.number(*attempt);
        self.bytes(br#","capability":"#);
        self.string(capability);
        self.bytes(br#","payload":"#);
        self.raw(payload);
        self.bytes(br#","priority":"#);
        self.number(*priority);
        self.bytes(br#","timeout_ms":"#);
        self.number(*timeout_ms);
        self.present(br#","inputs":"#, inputs.as_deref(), Out::raw);
        if !failed_inputs.is_empty() {
            self.bytes(br#","failed_inputs":"#);
            self.list(failed_inputs, |out, id| out.string(id));
        }
        self.bytes(b"}");
    }

    fn task(&mut self, task: &Task) {
        let Task {
            id,
            status,
            capability,
            payload,
            priority,
            max_attempts,
            timeout_ms,
            backoff_ms,
            idempotency_key,
            depends_on,
            on_parent_failure,
            attempts,
            result,
            error,
            created_at,
            updated_at,
            submitted_by,
            replicas,
            quorum,
            vote,
            features,
            votes,
            dissenters,
            progress,
        } = task;
        self.bytes(br#"{"id":"#);
        self.string(id);
        self.bytes(br#","status":"#);
        self.value(status);
        self.bytes(br#","capability":"#);
        self.string(capability);
        self.bytes(br#","payload":"#);
        self.raw(payload);
        self.bytes(br#","priority":"#);
        self.number(*priority);
        self.bytes(br#","max_attempts":"#);
        self.number(*max_attempts);
        self.bytes(br#","timeout_ms":"#);
        self.number(*timeout_ms);
        self.bytes(br#","backoff_ms":"#);
        self.number(*backoff_ms);
        self.bytes(br#","idempotency_key":"#);
        self.optional_string(idempotency_key.as_deref());
        self.bytes(br#","depends_on":"#);
        self.list(depends_on, |out, id| out.string(id));
        self.bytes(br#","on_parent_failure":"#);
        self.value(on_parent_failure);
        self.bytes(br#","attempts":"#);
        self.value(attempts);
        self.bytes(br#","result":"#);
        match result {
            Some(result) => self.raw(result),
            None => self.bytes(b"null"),
        }
        self.bytes(br#","error":"#);
        self.optional_string(error.as_deref());
        self.bytes(br#","created_at":"#);
        self.string(created_at);
        self.bytes(br#","updated_at":"#);
        self.string(updated_at);
        // The fields serde skips when absent.
        self.present(br#","submitted_by":"#, submitted_by.as_deref(), Out::string);
        self.present(br#","replicas":"#, replicas.as_ref(), |out, n| {
            out.number(*n)
        });
        self.present(br#","quorum":"#, quorum.as_ref(), |out, n| out.number(*n));
        self.present(br#","vote":"#, vote.as_deref(), Out::string);
        self.present(br#","features":"#, features.as_ref(), |out, v| out.value(v));
        self.present(br#","votes":"#, votes.as_ref(), |out, v| out.value(v));
        self.present(br#","dissenters":"#, dissenters.as_ref(), |out, v| {
            out.value(v)
        });
        self.present(br#","progress":"#, progress.as_ref(), |out, v| out.value(v));
        self.bytes(b"}");
    }

    fn agent(&mut self, agent: &Agent) {
        let Agent {
            id,
            name,
            state,
            capabilities,
            slots,
            running,
            connected_at,
            last_heartbeat,
            stats,
            routing,
        } = agent;
        self.bytes(br#"{"id":"#);
        self.string(id);
        self.bytes(br#","name":"#);
        self.string(name);
        self.bytes(br#","state":"#);
        self.value(state);
        self.bytes(br#","capabilities":"#);
        self.map(capabilities, |out, level| out.value(level));
        self.bytes(br#","slots":"#);
        self.number(*slots);
        self.bytes(br#","running":"#);
        self.number(*running);
        self.bytes(br#","connected_at":"#);
        self.string(connected_at);
        self.bytes(br#","last_heartbeat":"#);
        self.string(last_heartbeat);
        self.bytes(br#","stats":"#);
        self.map(stats, Out::capability_stats);
        self.bytes(br#","routing":"#);
        self.map(routing, Out::routing_estimate);
        self.bytes(b"}");
    }

    fn capability_stats(&mut self, stats: &CapabilityStats) {
        let CapabilityStats {
            completed,
            failed,
            mean_latency_ms,
        } = stats;
        self.bytes(br#"{"completed":"#);
        self.number(*completed);
        self.bytes(br#","failed":"#);
        self.number(*failed);
        self.bytes(br#","mean_latency_ms":"#);
        self.value(mean_latency_ms);
        self.bytes(b"}");
    }

    fn routing_estimate(&mut self, estimate: &RoutingEstimate) {
        let RoutingEstimate {
            success_probability,
            latency_ms,
            tail_ms,
            samples,
            share,
            predicted,
        } = estimate;
        self.bytes(br#"{"success_probability":"#);
        self.value(success_probability);
        self.bytes(br#","latency_ms":"#);
        self.value(latency_ms);
        self.bytes(br#","tail_ms":"#);
        self.value(tail_ms);
        self.bytes(br#","samples":"#);
        self.number(*samples);
        self.bytes(br#","share":"#);
        self.value(share);
        self.present(br#","predicted":"#, predicted.as_ref(), |out, predicted| {
            let Predicted {
                latency_ms,
                success_probability,
            } = predicted;
            out.bytes(br#"{"latency_ms":"#);
            out.value(latency_ms);
            out.bytes(br#","success_probability":"#);
            out.value(success_probability);
            out.bytes(b"}");
        });
        self.bytes(b"}");
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// `key` and the value, when there is one (a field serde skips when absent).
    fn present<T: ?Sized>(&mut self, key: &[u8], value: Option<&T>, write: impl Fn(&mut Out, &T)) {
        if let Some(value) = value {
            self.bytes(key);
            write(self, value);
        }
    }

    /// `[a,b,...]`, each item written by `write`.
    fn list<T>(&mut self, items: &[T], write: impl Fn(&mut Out, &T)) {
        self.bytes(b"[");
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                self.bytes(b",");
            }
            write(self, item);
        }
        self.bytes(b"]");
    }

    /// `{"key":value,...}` in the map's order, each value written by `write`.
    fn map<T>(&mut self, entries: &BTreeMap<String, T>, write: impl Fn(&mut Out, &T)) {
        self.bytes(b"{");
        for (n, (key, value)) in entries.iter().enumerate() {
            if n > 0 {
                self.bytes(b",");
            }
            self.string(key);
            self.bytes(b":");
            write(self, value);
        }
        self.bytes(b"}");
    }

    fn number(&mut self, n: impl itoa::Integer) {
        self.bytes(itoa::Buffer::new().format(n).as_bytes());
    }

    /// A JSON string: as it is when nothing in it needs escaping (ids, capability names), else
    /// through serde_json, which escapes exactly these bytes.
    fn string(&mut self, text: &str) {
        if needs_escaping(text.as_bytes()) {
            self.value(text);
        } else {
            self.bytes(b"\"");
            self.bytes(text.as_bytes());
            self.bytes(b"\"");
        }
    }

    fn optional_string(&mut self, text: Option<&str>) {
        match text {
            Some(text) => self.string(text),
            None => self.bytes(b"null"),
        }
    }

    /// A raw value's text, as serde_json writes it.
    fn raw(&mut self, value: &RawValue) {
        self.bytes(value.get().as_bytes());
    }

    /// Anything else, through serde_json.
    fn value(&mut self, value: &(impl Serialize + ?Sized)) {
        let written = serde_json::to_writer(&mut self.0, value);
        // Plain data and maps with string keys: serde_json does not fail on them.
        debug_assert!(written.is_ok(), "{written:?}");
    }
}

/// Whether any byte is one JSON escapes (a control character, `"` or a backslash): eight bytes at a
/// time (a byte-by-byte look was a third of this module's instructions).
fn needs_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether a byte of `word` is below `n` (n <= 128), or is zero: exact as a yes or no.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * n as u64) & !word & HIGH != 0;
    let zero = |word: u64| below(word, 1);
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let word = u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
        if below(word, 0x20)
            || zero(word ^ (ONES * b'"' as u64))
            || zero(word ^ (ONES * b'\\' as u64))
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::HubMessage;

    fn task(task_id: &str, capability: &str, payload: &str) -> Assignment {
        Assignment {
            task_id: task_id.into(),
            attempt: 3,
            capability: capability.into(),
            payload: RawValue::from_string(payload.into()).unwrap(),
            priority: 9,
            timeout_ms: u64::MAX,
            inputs: None,
            failed_inputs: Vec::new(),
        }
    }

    fn plain_task() -> Task {
        serde_json::from_str(
            r#"{"id": "01929f3e-7c4a-7d2e-9b1a-3f5e6d7c8b9a", "status": "queued",
                "capability": "echo", "payload": {"n": [1, 2]}, "priority": 5,
                "max_attempts": 3, "timeout_ms": 30000, "backoff_ms": 1000,
                "idempotency_key": null, "depends_on": [], "on_parent_failure": "fail",
                "attempts": [], "result": null, "error": null,
                "created_at": "2026-12-04T17:00:00.123Z", "updated_at": "2026-12-04T17:00:00.123Z"}"#,
        )
        .unwrap()
    }

    fn full_task() -> Task {
        serde_json::from_str(
            r#"{"id": "a\"b", "status": "succeeded", "capability": "vote é",
                "payload": null, "priority": 9, "max_attempts": 100,
                "timeout_ms": 18446744073709551615, "backoff_ms": 0,
                "idempotency_key": "k\n\u0001", "depends_on": ["p1", "p\"2"],
                "on_parent_failure": "run",
                "attempts": [{"attempt": 1, "agent_id": null, "started_at": "s",
                    "ended_at": "e", "outcome": "failed", "error": "x\ty"},
                    {"attempt": 2, "agent_id": "a2", "started_at": "s", "ended_at": null,
                    "outcome": null, "error": null, "output": {"v": 1}}],
                "result": [ 1 , "two" ], "error": "it \"failed\"",
                "created_at": "c", "updated_at": "u", "submitted_by": "ci",
                "replicas": 3, "quorum": 2, "vote": "/answer",
                "features": {"tokens": 1200.5, "a": -0.0001},
                "votes": [{"attempt": 1, "agent_id": null, "value": 7, "agreed": true}],
                "dissenters": ["b"],
                "progress": {"attempt": 2, "fraction": 0.25, "message": "m", "at": "t"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_task_and_a_listing_are_serdes_bytes() {
        // Every optional field is there to be written.
        let full = serde_json::to_value(full_task()).unwrap();
        assert_eq!(full.as_object().unwrap().len(), 24, "{full}");
        for item in [plain_task(), full_task()] {
            assert_eq!(
                String::from_utf8(super::task(&item)).unwrap(),
                serde_json::to_string(&item).unwrap()
            );
        }
        for (items, next_cursor) in [
            (vec![], None),
            (vec![plain_task()], Some("01929f3e")),
            (vec![full_task(), plain_task()], None),
        ] {
            let expected = serde_json::to_string(&crate::api::TaskList {
                items: items.clone(),
                next_cursor: next_cursor.map(str::to_string),
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(task_list(&items, next_cursor)).unwrap(),
                expected
            );
        }
    }

    fn agent(id: &str, capabilities: &[&str]) -> Agent {
        let json = serde_json::json!({
            "id": id, "name": format!("host:{}", capabilities.join("+")), "state": "draining",
            "capabilities": capabilities.iter().enumerate()
                .map(|(n, c)| (c.to_string(), serde_json::json!(1.0 / (n as f64 + 3.0))))
                .collect::<serde_json::Map<_, _>>(),
            "slots": 4_000_000_000u32, "running": 2,
            "connected_at": "2026-12-04T17:00:00.123Z", "last_heartbeat": "h\"b",
            "stats": capabilities.iter().enumerate()
                .map(|(n, c)| (c.to_string(), serde_json::json!({
                    "completed": u64::MAX, "failed": n,
                    "mean_latency_ms": if n == 0 { serde_json::Value::Null } else { serde_json::json!(12.5e-7) },
                })))
                .collect::<serde_json::Map<_, _>>(),
            "routing": capabilities.iter().enumerate()
                .map(|(n, c)| {
                    let mut estimate = serde_json::json!({
                        "success_probability": 0.1 + 0.2, "latency_ms": null, "tail_ms": 1e300,
                        "samples": n, "share": 0.0,
                    });
                    if n == 1 {
                        estimate["latency_ms"] = serde_json::json!(3.0);
                        estimate["predicted"] =
                            serde_json::json!({"latency_ms": 1.5, "success_probability": 1.0});
                    }
                    (c.to_string(), estimate)
                })
                .collect::<serde_json::Map<_, _>>(),
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_agent_and_a_listing_of_agents_are_serdes_bytes() {
        let agents = [
            agent("0192", &[]),
            agent("0193", &["echo"]),
            agent("a\"b", &["summarize", "tr\u{1}anslate é", "b\\"]),
        ];
        // Every optional field is there to be written: `predicted`.
        let full = serde_json::to_string(&agents[2]).unwrap();
        assert!(full.contains(r#""predicted":{"latency_ms":1.5"#), "{full}");
        for item in &agents {
            assert_eq!(
                String::from_utf8(super::agent(item)).unwrap(),
                serde_json::to_string(item).unwrap()
            );
        }
        for (items, next_cursor) in [
            (&agents[..0], None),
            (&agents[..1], Some("0192")),
            (&agents[..], None),
        ] {
            let expected = serde_json::to_string(&crate::api::AgentList {
                items: items.to_vec(),
                next_cursor: next_cursor.map(str::to_string),
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(agent_list(items, next_cursor)).unwrap(),
                expected
            );
        }
    }

    #[test]
    fn only_the_bytes_json_escapes_need_escaping() {
        for b in 0..=255u8 {
            let escaped = b < 0x20 || b == b'"' || b == b'\\';
            // At each place of an eight-byte word and of the remainder.
            for at in 0..19 {
                let mut bytes = vec![b'a'; 19];
                bytes[at] = b;
                assert_eq!(needs_escaping(&bytes), escaped, "byte {b:#x} at {at}");
            }
        }
        // Bytes near the bounds, together: none is escaped.
        assert!(!needs_escaping(&[
            0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xff, 0x20
        ]));
    }

    proptest::proptest! {
        #[test]
        // Mostly bytes that need no escaping, so that both answers are common.
        fn any_bytes_need_escaping_as_byte_by_byte(bytes in proptest::collection::vec(
            proptest::prop_oneof![30 => 0x20u8..=0xff, 1 => proptest::arbitrary::any::<u8>()],
            0..40,
        )) {
            let naive = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            proptest::prop_assert_eq!(needs_escaping(&bytes), naive);
        }
    }

    #[test]
    fn the_bytes_are_serdes() {
        let with_inputs = Assignment {
            inputs: Some(RawValue::from_string(r#"{"a": [1, "x"]}"#.into()).unwrap()),
            failed_inputs: vec!["b".into(), "c\"\\\n\u{1}é".into()],
            ..task("0192", "summarize", "null")
        };
        let cases: Vec<Vec<Assignment>> = vec![
            vec![],
            vec![task(
                "01929f3e-7c4a-7d2e-9b1a-3f5e6d7c8b9a",
                "echo",
                r#"{"n": 1}"#,
            )],
            vec![
                task("a\"b\\c\u{7f}\u{1f}\t", "cap é", "\"text\""),
                with_inputs,
                task("", "", "[ 1 , 2 ]"),
            ],
        ];
        for tasks in cases {
            let expected = serde_json::to_vec(&HubMessage::Assign {
                tasks: tasks.clone(),
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(assign(&tasks)).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
