//! JSON written by hand for what the hub writes once per task: the `assign` frame every task
//! goes out to its worker in, and the task view `POST /tasks` answers with (and `GET /tasks`
//! lists). serde wrote them key by key, escaping each constant key and each id at run time:
//! about 2,200 instructions per assignment and 6,300 per task view (3% of a batched task's
//! instructions end to end, 5% of a single one's; BENCHMARKS.md). The bytes are serde's, field
//! for field; tests hold the two together. Nested values that are rare or varied (attempts,
//! features, votes, progress) still go through serde, as do MessagePack frames.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::api::Task;
use crate::protocol::Assignment;

/// `{"type":"assign","tasks":[...]}`, as `serde_json::to_vec` of [`HubMessage::Assign`] writes it.
///
/// [`HubMessage::Assign`]: crate::protocol::HubMessage::Assign
pub fn assign(tasks: &[Assignment]) -> Vec<u8> {
    let size: usize = tasks.iter().map(size_of).sum();
    let mut out = Vec::with_capacity(32 + size);
    out.extend_from_slice(br#"{"type":"assign","tasks":["#);
    for (n, task) in tasks.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        assignment(&mut out, task);
    }
    out.extend_from_slice(b"]}");
    out
}

/// About the bytes of one assignment: its texts and room for the keys and numbers.
fn size_of(task: &Assignment) -> usize {
    let inputs = task.inputs.as_ref().map_or(0, |i| i.get().len() + 10);
    let failed: usize = task.failed_inputs.iter().map(|id| id.len() + 3).sum();
    128 + task.task_id.len() + task.capability.len() + task.payload.get().len() + inputs + failed
}

fn assignment(out: &mut Vec<u8>, task: &Assignment) {
    let mut numbers = itoa::Buffer::new();
    out.extend_from_slice(br#"{"task_id":"#);
    string(out, &task.task_id);
    out.extend_from_slice(br#","attempt":"#);
    out.extend_from_slice(numbers.format(task.attempt).as_bytes());
    out.extend_from_slice(br#","capability":"#);
    string(out, &task.capability);
    out.extend_from_slice(br#","payload":"#);
    raw(out, &task.payload);
    out.extend_from_slice(br#","priority":"#);
    out.extend_from_slice(numbers.format(task.priority).as_bytes());
    out.extend_from_slice(br#","timeout_ms":"#);
    out.extend_from_slice(numbers.format(task.timeout_ms).as_bytes());
    if let Some(inputs) = &task.inputs {
        out.extend_from_slice(br#","inputs":"#);
        raw(out, inputs);
    }
    if !task.failed_inputs.is_empty() {
        out.extend_from_slice(br#","failed_inputs":["#);
        for (n, id) in task.failed_inputs.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            string(out, id);
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// A JSON string: as it is when nothing in it needs escaping (ids, capability names), else
/// through serde_json, which escapes exactly these bytes.
fn string(out: &mut Vec<u8>, text: &str) {
    if !needs_escaping(text.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Whether any byte is one JSON escapes (a control character, `"` or `\\`): eight bytes at a
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

/// A raw value's text, as serde_json writes it.
fn raw(out: &mut Vec<u8>, value: &RawValue) {
    out.extend_from_slice(value.get().as_bytes());
}

/// A task as `serde_json::to_vec` of [`Task`] writes it.
pub fn task(task: &Task) -> Vec<u8> {
    let mut out = Vec::with_capacity(320 + task.payload.get().len());
    write_task(&mut out, task);
    out
}

/// `{"items":[...],"next_cursor":...}`, as `serde_json::to_vec` of
/// [`TaskList`](crate::api::TaskList) writes it.
pub fn task_list(items: &[Task], next_cursor: Option<&str>) -> Vec<u8> {
    let size: usize = items.iter().map(|t| 320 + t.payload.get().len()).sum();
    let mut out = Vec::with_capacity(32 + size);
    out.extend_from_slice(br#"{"items":["#);
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_task(&mut out, item);
    }
    out.extend_from_slice(br#"],"next_cursor":"#);
    optional_string(&mut out, next_cursor);
    out.push(b'}');
    out
}

fn write_task(out: &mut Vec<u8>, task: &Task) {
    let mut numbers = itoa::Buffer::new();
    out.extend_from_slice(br#"{"id":"#);
    string(out, &task.id);
    out.extend_from_slice(br#","status":"#);
    value(out, &task.status);
    out.extend_from_slice(br#","capability":"#);
    string(out, &task.capability);
    out.extend_from_slice(br#","payload":"#);
    raw(out, &task.payload);
    out.extend_from_slice(br#","priority":"#);
    out.extend_from_slice(numbers.format(task.priority).as_bytes());
    out.extend_from_slice(br#","max_attempts":"#);
    out.extend_from_slice(numbers.format(task.max_attempts).as_bytes());
    out.extend_from_slice(br#","timeout_ms":"#);
    out.extend_from_slice(numbers.format(task.timeout_ms).as_bytes());
    out.extend_from_slice(br#","backoff_ms":"#);
    out.extend_from_slice(numbers.format(task.backoff_ms).as_bytes());
    out.extend_from_slice(br#","idempotency_key":"#);
    optional_string(out, task.idempotency_key.as_deref());
    out.extend_from_slice(br#","depends_on":["#);
    for (n, id) in task.depends_on.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        string(out, id);
    }
    out.extend_from_slice(br#"],"on_parent_failure":"#);
    value(out, &task.on_parent_failure);
    out.extend_from_slice(br#","attempts":"#);
    value(out, &task.attempts);
    out.extend_from_slice(br#","result":"#);
    match &task.result {
        Some(result) => raw(out, result),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","error":"#);
    optional_string(out, task.error.as_deref());
    out.extend_from_slice(br#","created_at":"#);
    string(out, &task.created_at);
    out.extend_from_slice(br#","updated_at":"#);
    string(out, &task.updated_at);
    if let Some(by) = &task.submitted_by {
        out.extend_from_slice(br#","submitted_by":"#);
        string(out, by);
    }
    if let Some(replicas) = task.replicas {
        out.extend_from_slice(br#","replicas":"#);
        out.extend_from_slice(numbers.format(replicas).as_bytes());
    }
    if let Some(quorum) = task.quorum {
        out.extend_from_slice(br#","quorum":"#);
        out.extend_from_slice(numbers.format(quorum).as_bytes());
    }
    if let Some(vote) = &task.vote {
        out.extend_from_slice(br#","vote":"#);
        string(out, vote);
    }
    if let Some(features) = &task.features {
        out.extend_from_slice(br#","features":"#);
        value(out, features);
    }
    if let Some(votes) = &task.votes {
        out.extend_from_slice(br#","votes":"#);
        value(out, votes);
    }
    if let Some(dissenters) = &task.dissenters {
        out.extend_from_slice(br#","dissenters":"#);
        value(out, dissenters);
    }
    if let Some(progress) = &task.progress {
        out.extend_from_slice(br#","progress":"#);
        value(out, progress);
    }
    out.push(b'}');
}

fn optional_string(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// Anything else, through serde_json.
fn value(out: &mut Vec<u8>, value: &impl Serialize) {
    // Writing these into a Vec cannot fail: plain data, maps with string keys.
    let _ = serde_json::to_writer(&mut *out, value);
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
