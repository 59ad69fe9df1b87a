//! The `assign` message as JSON, written by hand: every task goes out to its worker in one, and
//! serde wrote it key by key, escaping each constant key and each id at run time (about 2,200
//! instructions a task, 3% of a batched task's end to end; BENCHMARKS.md). The bytes are
//! serde's, field for field (`HubMessageRef` in [`crate::protocol`]); a test holds the two
//! together. MessagePack frames still go through serde.

use serde_json::value::RawValue;

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
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// A raw value's text, as serde_json writes it.
fn raw(out: &mut Vec<u8>, value: &RawValue) {
    out.extend_from_slice(value.get().as_bytes());
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
