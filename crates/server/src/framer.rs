//! Turns a connection's queued outbound messages into WebSocket frames in the format the worker
//! asked for in `hello` ([`FrameFormat`]): JSON or MessagePack, lz4 above a size, and, for a
//! worker that reads `batch` frames, everything queued at once in one frame.
//!
//! A swarm broadcast goes to many agents: it is a [`SharedMessage`], serialised once per
//! encoding and framed once per format, however many agents receive it.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use hive_proto::codec::{self, Compression, Encoded, Encoding, FrameFormat};
use hive_proto::protocol::HubMessage;

use crate::assign_frame;
use crate::connections::Outbound;

/// At most this many queued messages go into one `batch` frame.
pub const MAX_BATCH: usize = 256;

#[derive(Debug)]
pub struct SharedMessage {
    message: HubMessage,
    /// Serialised, by encoding (JSON, MessagePack).
    bodies: [OnceLock<Bytes>; 2],
    /// Framed, by encoding and compression.
    frames: [OnceLock<Message>; 4],
}

impl SharedMessage {
    pub fn new(message: HubMessage) -> Arc<Self> {
        Arc::new(SharedMessage {
            message,
            bodies: Default::default(),
            frames: Default::default(),
        })
    }

    fn body(&self, encoding: Encoding) -> &Bytes {
        self.bodies[encoding as usize]
            .get_or_init(|| codec::hub_body(&self.message, encoding).into())
    }

    fn frame(&self, format: FrameFormat) -> Message {
        let slot = format.encoding as usize * 2 + format.compression as usize;
        self.frames[slot]
            .get_or_init(|| {
                let body = self.body(format.encoding).to_vec();
                message(codec::seal(body, format.encoding, format.compression))
            })
            .clone()
    }
}

fn message(encoded: Encoded) -> Message {
    match encoded {
        Encoded::Text(text) => Message::Text(Utf8Bytes::from(text)),
        Encoded::Binary(bytes) => Message::Binary(bytes.into()),
    }
}

/// Frames `items` (taken from the queue in order) into `out`; returns the close frame when a
/// `Close` was among them, after which nothing more is sent.
pub fn frames(
    format: FrameFormat,
    items: &mut Vec<Outbound>,
    out: &mut Vec<Message>,
) -> Option<Message> {
    let close = items
        .iter()
        .position(|i| matches!(i, Outbound::Close(_)))
        .map(|at| match items.drain(at..).next() {
            Some(Outbound::Close(Some(why))) => Message::Close(Some(CloseFrame {
                code: why.code,
                reason: why.reason.into(),
            })),
            _ => Message::Close(None),
        });
    if format.batch && items.len() > 1 {
        let bodies: Vec<Bytes> = items
            .drain(..)
            .map(|item| match item {
                Outbound::Message(m) => codec::hub_body(&m, format.encoding).into(),
                Outbound::Assign(tasks) => assign_frame::body(&tasks, format.encoding).into(),
                Outbound::Shared(s) => s.body(format.encoding).clone(),
                Outbound::Close(_) => unreachable!("drained above"),
            })
            .collect();
        let batch = codec::batch_body(bodies.iter().map(|b| b.as_ref()), format.encoding);
        out.push(message(codec::seal(
            batch,
            format.encoding,
            format.compression,
        )));
    } else {
        out.extend(items.drain(..).map(|item| match item {
            Outbound::Message(m) => message(codec::hub_encode(&m, format)),
            Outbound::Assign(tasks) => message(codec::seal(
                assign_frame::body(&tasks, format.encoding),
                format.encoding,
                format.compression,
            )),
            Outbound::Shared(s) => s.frame(format),
            Outbound::Close(_) => unreachable!("drained above"),
        }));
    }
    close
}

/// The `welcome` and early errors go out as JSON text whatever was asked, so that a worker can
/// always read the answer to its `hello`.
pub fn text(message: &HubMessage) -> Message {
    let format = FrameFormat {
        encoding: Encoding::Json,
        compression: Compression::None,
        batch: false,
    };
    self::message(codec::hub_encode(message, format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_proto::RawValue;
    use hive_proto::codec::{Incoming, decode};

    fn broadcast(n: u32) -> Outbound {
        Outbound::Shared(SharedMessage::new(HubMessage::Message {
            message_id: format!("m{n}"),
            group: "g".into(),
            payload: RawValue::from_string(format!("[{n}]")).unwrap(),
        }))
    }

    fn read(frame: &Message) -> HubMessage {
        match frame {
            Message::Text(t) => decode(Incoming::Text(t.as_str()), 1 << 20).unwrap(),
            Message::Binary(b) => decode(Incoming::Binary(b), 1 << 20).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batching_worker_gets_everything_queued_in_one_frame_and_others_one_each() {
        for encoding in [Encoding::Json, Encoding::Msgpack] {
            for batch in [true, false] {
                let format = FrameFormat {
                    encoding,
                    compression: Compression::Lz4,
                    batch,
                };
                let mut items = vec![
                    broadcast(1),
                    Outbound::Message(HubMessage::Drain),
                    broadcast(2),
                ];
                let mut out = Vec::new();
                assert!(frames(format, &mut items, &mut out).is_none());
                let messages: Vec<HubMessage> = if batch {
                    assert_eq!(out.len(), 1, "{format:?}");
                    let HubMessage::Batch(messages) = read(&out[0]) else {
                        panic!("{format:?}")
                    };
                    messages
                } else {
                    out.iter().map(read).collect()
                };
                assert_eq!(messages.len(), 3, "{format:?}");
                assert!(
                    matches!(&messages[0], HubMessage::Message { message_id, .. } if message_id == "m1")
                );
                assert!(matches!(messages[1], HubMessage::Drain));
                assert!(
                    matches!(&messages[2], HubMessage::Message { payload, .. } if payload.get() == "[2]")
                );
            }
        }
    }

    #[test]
    fn nothing_after_a_close_is_sent() {
        let why = crate::connections::CloseReason {
            code: 1008,
            reason: "enough".into(),
        };
        let mut items = vec![broadcast(1), Outbound::Close(Some(why)), broadcast(2)];
        let mut out = Vec::new();
        let close = frames(FrameFormat::default(), &mut items, &mut out);
        assert!(matches!(close, Some(Message::Close(Some(frame))) if frame.code == 1008));
        assert_eq!(out.len(), 1);
        assert!(items.is_empty());
    }
}
