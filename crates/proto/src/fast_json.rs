//! JSON written by hand for what the hub writes once per task: the `assign` frame every task
//! goes out to its worker in, and the task view that `POST /tasks`, `GET /tasks/{id}`, `/wait`
//! and `/cancel` answer with and `GET /tasks` lists. serde wrote them key by key, escaping each
//! constant key, id and map key at run time: about 2,200 instructions per assignment and 6,300
//! per task view (BENCHMARKS.md, "Later changes"). The bytes are serde's, field for field; tests
//! hold the two together, and each writer names every field of its type (no `..`), so a field
//! added to the type does not compile until it is written here. Enums, floating-point numbers
//! and nested values (`status`, `on_parent_failure`, attempts, features, votes, dissenters,
//! progress) still go through serde, as do MessagePack frames.
//!
//! [`Writer`] and [`page`] are public for views written straight from the hub's own state,
//! without building the API type first (the agent view, `hive-server`'s `agent_view`), and
//! [`rfc3339_millis`] writes the API's timestamps.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::api::Task;
use crate::protocol::Assignment;

/// `{"type":"assign","tasks":[...]}`, as `serde_json::to_vec` of [`HubMessage::Assign`] writes it.
///
/// [`HubMessage::Assign`]: crate::protocol::HubMessage::Assign
/// The fields of an [`Assignment`], borrowed: what [`Writer::assignment_parts`] writes.
pub struct AssignmentParts<'a> {
    pub task_id: &'a str,
    pub attempt: u32,
    pub capability: &'a str,
    /// JSON text, already checked.
    pub payload: &'a str,
    pub priority: u8,
    pub timeout_ms: u64,
    pub deadline_ms: Option<u64>,
    pub inputs: Option<&'a RawValue>,
    pub failed_inputs: &'a [String],
}

pub fn assign(tasks: &[Assignment]) -> Vec<u8> {
    let size: usize = tasks.iter().map(assignment_size).sum();
    written(32 + size, |out| {
        out.bytes(br#"{"type":"assign","tasks":"#);
        out.list(tasks, Writer::assignment);
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
    page(items, task_size, Writer::task, |out| {
        out.bytes(br#","next_cursor":"#);
        out.optional_string(next_cursor);
    })
}

/// What `write` writes, into a buffer of about `size` bytes.
fn written(size: usize, write: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut out = Writer::with_capacity(size);
    write(&mut out);
    out.into_bytes()
}

/// `{"items":[...]` and the cursor as `cursor` writes it, then `}`: a page of a listing, each
/// item about `size` bytes.
pub fn page<T>(
    items: &[T],
    size: impl Fn(&T) -> usize,
    item: impl Fn(&mut Writer, &T),
    cursor: impl FnOnce(&mut Writer),
) -> Vec<u8> {
    let size: usize = items.iter().map(size).sum();
    written(32 + size, |out| {
        out.bytes(br#"{"items":"#);
        out.list(items, item);
        cursor(out);
        out.bytes(b"}");
    })
}

/// About the bytes of one assignment: its texts and room for the keys and numbers.
fn assignment_size(task: &Assignment) -> usize {
    let inputs = task.inputs.as_ref().map_or(0, |i| i.get().len() + 10);
    let failed: usize = task.failed_inputs.iter().map(|id| id.len() + 3).sum();
    160 + task.task_id.len() + task.capability.len() + task.payload.get().len() + inputs + failed
}

/// About the bytes of a task without attempts: its payload and room for the rest.
fn task_size(task: &Task) -> usize {
    320 + task.payload.get().len()
}

/// JSON text as serde_json writes it, piece by piece; the caller writes the keys and the
/// punctuation.
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn with_capacity(bytes: usize) -> Writer {
        Writer(Vec::with_capacity(bytes))
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn assignment(&mut self, task: &Assignment) {
        self.assignment_parts(&AssignmentParts {
            task_id: &task.task_id,
            attempt: task.attempt,
            capability: &task.capability,
            payload: task.payload.get(),
            priority: task.priority,
            timeout_ms: task.timeout_ms,
            deadline_ms: task.deadline_ms,
            inputs: task.inputs.as_deref(),
            failed_inputs: &task.failed_inputs,
        });
    }

    /// One assignment of an `assign` frame, as serde writes an [`Assignment`], from parts
    /// borrowed wherever they live (the hub writes it straight from a task's spec).
    pub fn assignment_parts(&mut self, task: &AssignmentParts<'_>) {
        self.bytes(br#"{"task_id":"#);
        self.string(task.task_id);
        self.bytes(br#","attempt":"#);
        self.number(task.attempt);
        self.bytes(br#","capability":"#);
        self.string(task.capability);
        self.bytes(br#","payload":"#);
        // JSON text: written as it is, as serde writes a raw value.
        self.bytes(task.payload.as_bytes());
        self.bytes(br#","priority":"#);
        self.number(task.priority);
        self.bytes(br#","timeout_ms":"#);
        self.number(task.timeout_ms);
        if let Some(deadline) = task.deadline_ms {
            self.bytes(br#","deadline_ms":"#);
            self.number(deadline);
        }
        self.present(br#","inputs":"#, task.inputs, Writer::raw);
        if !task.failed_inputs.is_empty() {
            self.bytes(br#","failed_inputs":"#);
            self.list(task.failed_inputs, |out, id| out.string(id));
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
        self.present(
            br#","submitted_by":"#,
            submitted_by.as_deref(),
            Writer::string,
        );
        self.present(br#","replicas":"#, replicas.as_ref(), |out, n| {
            out.number(*n)
        });
        self.present(br#","quorum":"#, quorum.as_ref(), |out, n| out.number(*n));
        self.present(br#","vote":"#, vote.as_deref(), Writer::string);
        self.present(br#","features":"#, features.as_ref(), |out, v| out.value(v));
        self.present(br#","votes":"#, votes.as_ref(), |out, v| out.value(v));
        self.present(br#","dissenters":"#, dissenters.as_ref(), |out, v| {
            out.value(v)
        });
        self.present(br#","progress":"#, progress.as_ref(), |out, v| out.value(v));
        self.bytes(b"}");
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// `key` and the value, when there is one (a field serde skips when absent).
    pub fn present<T: ?Sized>(
        &mut self,
        key: &[u8],
        value: Option<&T>,
        write: impl Fn(&mut Writer, &T),
    ) {
        if let Some(value) = value {
            self.bytes(key);
            write(self, value);
        }
    }

    /// `[a,b,...]`, each item written by `write`.
    pub fn list<T>(&mut self, items: &[T], write: impl Fn(&mut Writer, &T)) {
        self.bytes(b"[");
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                self.bytes(b",");
            }
            write(self, item);
        }
        self.bytes(b"]");
    }

    pub fn number(&mut self, n: impl itoa::Integer) {
        self.bytes(itoa::Buffer::new().format(n).as_bytes());
    }

    /// A JSON string: as it is when nothing in it needs escaping (ids, capability names), else
    /// through serde_json, which escapes exactly these bytes.
    pub fn string(&mut self, text: &str) {
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

    /// A time as `"2026-12-05T06:01:02.345Z"`: [`rfc3339_millis`] in quotes.
    pub fn timestamp(&mut self, unix_ms: u64) {
        self.bytes(b"\"");
        self.bytes(&rfc3339_millis(unix_ms));
        self.bytes(b"\"");
    }

    /// Anything else, through serde_json. Only for what serde_json cannot fail on (plain data,
    /// enums, floating-point numbers, maps with string keys): a failure would leave the text cut
    /// off, and is caught only by a debug assertion.
    pub fn value(&mut self, value: &(impl Serialize + ?Sized)) {
        let written = serde_json::to_writer(&mut self.0, value);
        debug_assert!(written.is_ok(), "{written:?}");
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC with milliseconds,
/// `2026-12-05T06:01:02.345Z`: what `humantime::format_rfc3339_millis` writes, without the
/// formatting machinery (it was a third of an agent view's cost) and without its panic past the
/// year 9999: a later time is written as the last millisecond of 9999.
pub fn rfc3339_millis(unix_ms: u64) -> [u8; 24] {
    // 10000-01-01T00:00:00Z, in milliseconds.
    const END_OF_9999: u64 = 253_402_300_800_000;
    let ms = unix_ms.min(END_OF_9999 - 1);
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, second_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut digits = |at: usize, width: usize, mut n: u64| {
        for place in (at..at + width).rev() {
            out[place] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    digits(0, 4, year);
    digits(5, 2, month);
    digits(8, 2, day);
    digits(11, 2, second_of_day / 3600);
    digits(14, 2, second_of_day / 60 % 60);
    digits(17, 2, second_of_day % 60);
    digits(20, 3, millis);
    out
}

/// Year, month and day of the proleptic Gregorian calendar, `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Counted from 0000-03-01, so that a leap day ends its (March-based) year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
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
            deadline_ms: Some(u64::MAX),
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
    fn timestamps_are_humantimes() {
        let humantime = |ms: u64| {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            humantime::format_rfc3339_millis(time).to_string()
        };
        let day = 86_400_000;
        let mut times = vec![
            0,
            999,
            1_000,
            day - 1,
            // 2000-02-29 (a leap day in a century year), 2100-03-01 (2100 is not leap).
            951_782_400_000,
            4_107_542_400_000,
            1_796_450_462_345,
            253_402_300_799_999,
        ];
        // Every day from 1972 to 2431 (a 400-year era and more), at a time that moves through
        // the day.
        times.extend((365 * 2..365 * 462).map(|d: u64| d * day + d * 7_919_993 % day));
        for ms in times {
            assert_eq!(
                std::str::from_utf8(&rfc3339_millis(ms)).unwrap(),
                humantime(ms),
                "{ms}"
            );
        }
        // Past what humantime writes (it fails): the last millisecond of 9999, not a panic.
        assert_eq!(&rfc3339_millis(u64::MAX), b"9999-12-31T23:59:59.999Z");
        assert_eq!(
            &rfc3339_millis(253_402_300_800_000),
            b"9999-12-31T23:59:59.999Z"
        );
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
                // From a hub before `deadline_ms`: no key at all.
                Assignment {
                    deadline_ms: None,
                    ..task("0193", "x", "{}")
                },
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
