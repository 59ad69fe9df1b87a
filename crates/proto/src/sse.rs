//! Server-Sent Events as they arrive, in pieces of any size: [`SseReader`] gathers the bytes and
//! gives each event once it is whole (its `event:` name and its `data:` lines), decoding text
//! only then, so a character split between two pieces arrives whole. The hub reads LLM
//! providers' streamed answers with it, the client a task's events.

/// One event: its name (`event:`), if any, and its `data:` lines joined by newlines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseReader {
    pending: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseReader {
    /// Takes the next bytes; returns the events they completed. Comments, and events without
    /// data (keep-alives), are skipped.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text = String::from_utf8_lossy(line);
            start += end + 1;
            if text.is_empty() {
                // As the standard has it: an event without data is not dispatched.
                let event = std::mem::take(&mut self.current);
                if std::mem::take(&mut self.has_data) {
                    events.push(event);
                }
                continue;
            }
            let (field, value) = match text.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (text.as_ref(), ""),
            };
            match field {
                "event" => self.current.event = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {} // comments (an empty field), `id`, `retry`
            }
        }
        self.pending.drain(..start);
        events
    }

    /// The stream ended: the event it was in the middle of, if it had data (a stream may end
    /// without the blank line after its last event).
    pub fn finish(&mut self) -> Vec<SseEvent> {
        self.feed(b"\n\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_whole_whatever_the_pieces() {
        let stream = "event: progress\ndata: {\"output\": \"caf\u{e9}\"}\n\n: keep-alive\n\n\
                      data: one\r\ndata: two\r\n\r\nevent: end\n\ndata: [DONE]";
        for size in [1, 2, 3, 7, 100] {
            let mut reader = SseReader::default();
            let mut events: Vec<SseEvent> = stream
                .as_bytes()
                .chunks(size)
                .flat_map(|piece| reader.feed(piece))
                .collect();
            events.extend(reader.finish());
            assert_eq!(
                events,
                [
                    SseEvent {
                        event: Some("progress".into()),
                        data: "{\"output\": \"caf\u{e9}\"}".into()
                    },
                    SseEvent {
                        event: None,
                        data: "one\ntwo".into()
                    },
                    SseEvent {
                        event: None,
                        data: "[DONE]".into()
                    },
                ],
                "pieces of {size}"
            );
        }
    }
}
