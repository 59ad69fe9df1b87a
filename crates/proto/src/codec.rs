//! How protocol frames travel on the socket, as negotiated in `hello` (see `docs/protocol.md`,
//! "Encodings"): JSON text frames by default; MessagePack in binary frames; lz4 compression of a
//! frame above [`COMPRESS_ABOVE`] bytes; and `batch` frames carrying many messages at once.
//!
//! A binary frame starts with one tag byte saying what follows ([`TAG_MSGPACK`],
//! [`TAG_MSGPACK_LZ4`], [`TAG_JSON_LZ4`]). Either side may send any form whatever was negotiated:
//! negotiation only says what a side is able to read. Payloads and outputs stay JSON inside
//! MessagePack (as strings holding JSON text), because the hub stores JSON and never transcodes it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::protocol::HubMessage;

/// Frames whose body is longer than this are compressed when compression was negotiated. Below
/// it lz4 saves too little to pay for itself (measured in BENCHMARKS.md).
pub const COMPRESS_ABOVE: usize = 512;

pub const TAG_MSGPACK: u8 = 0;
pub const TAG_MSGPACK_LZ4: u8 = 1;
pub const TAG_JSON_LZ4: u8 = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Json,
    Msgpack,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Lz4,
}

/// What a side can read: asked for in `hello`, confirmed in `welcome`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FrameFormat {
    pub encoding: Encoding,
    pub compression: Compression,
    /// Several messages may arrive in one `batch` frame.
    pub batch: bool,
}

/// A frame ready for the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    Text(String),
    Binary(Vec<u8>),
}

/// A frame as read from the socket.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// One message serialised in `encoding`, before framing: JSON text or MessagePack bytes.
pub fn body<T: Serialize>(message: &T, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Json => serde_json::to_vec(message).expect("protocol messages serialise"),
        Encoding::Msgpack => rmp_serde::to_vec_named(message).expect("protocol messages serialise"),
    }
}

/// A hub message serialised in `encoding`: [`body`], but an `assign` in JSON is written by
/// [`crate::fast_json`] (the same bytes, in a fraction of the instructions).
pub fn hub_body(message: &HubMessage, encoding: Encoding) -> Vec<u8> {
    match (encoding, message) {
        (Encoding::Json, HubMessage::Assign { tasks }) => crate::fast_json::assign(tasks),
        _ => body(message, encoding),
    }
}

/// Serialises ([`hub_body`]) and frames one hub message.
pub fn hub_encode(message: &HubMessage, format: FrameFormat) -> Encoded {
    seal(
        hub_body(message, format.encoding),
        format.encoding,
        format.compression,
    )
}

/// A `batch` message holding `bodies` (each made by [`body`] in the same encoding), built by
/// concatenation so no message is serialised twice.
pub fn batch_body<'a>(
    bodies: impl ExactSizeIterator<Item = &'a [u8]>,
    encoding: Encoding,
) -> Vec<u8> {
    let count = bodies.len();
    match encoding {
        Encoding::Json => {
            let mut out = br#"{"type":"batch","frames":["#.to_vec();
            for (i, body) in bodies.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(body);
            }
            out.extend_from_slice(b"]}");
            out
        }
        Encoding::Msgpack => {
            let mut out = Vec::new();
            // Writing into a Vec cannot fail.
            let _ = rmp::encode::write_map_len(&mut out, 2);
            let _ = rmp::encode::write_str(&mut out, "type");
            let _ = rmp::encode::write_str(&mut out, "batch");
            let _ = rmp::encode::write_str(&mut out, "frames");
            let _ = rmp::encode::write_array_len(&mut out, count as u32);
            for body in bodies {
                out.extend_from_slice(body);
            }
            out
        }
    }
}

/// Frames a body for the socket: JSON as a text frame unless it is compressed; MessagePack, and
/// anything compressed, as a binary frame behind its tag byte.
pub fn seal(body: Vec<u8>, encoding: Encoding, compression: Compression) -> Encoded {
    let compress = compression == Compression::Lz4 && body.len() > COMPRESS_ABOVE;
    match (encoding, compress) {
        (Encoding::Json, false) => match String::from_utf8(body) {
            Ok(text) => Encoded::Text(text),
            Err(e) => unreachable!("serde_json writes UTF-8: {e}"),
        },
        (Encoding::Msgpack, false) => {
            let mut frame = Vec::with_capacity(body.len() + 1);
            frame.push(TAG_MSGPACK);
            frame.extend_from_slice(&body);
            Encoded::Binary(frame)
        }
        (encoding, true) => {
            let tag = match encoding {
                Encoding::Json => TAG_JSON_LZ4,
                Encoding::Msgpack => TAG_MSGPACK_LZ4,
            };
            let compressed = lz4_flex::block::compress_prepend_size(&body);
            let mut frame = Vec::with_capacity(compressed.len() + 1);
            frame.push(tag);
            frame.extend_from_slice(&compressed);
            Encoded::Binary(frame)
        }
    }
}

/// Serialises and frames one message.
pub fn encode<T: Serialize>(message: &T, format: FrameFormat) -> Encoded {
    seal(
        body(message, format.encoding),
        format.encoding,
        format.compression,
    )
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty binary frame: a binary frame starts with a tag byte")]
    Empty,
    #[error("unknown binary frame tag {0}; expected 0 (msgpack), 1 (msgpack+lz4) or 2 (json+lz4)")]
    UnknownTag(u8),
    #[error("lz4 frame: {0}")]
    Lz4(String),
    #[error("lz4 frame would decompress to {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Json(String),
    #[error("msgpack: {0}")]
    Msgpack(String),
}

/// Reads a frame in any of the forms; `limit` bounds what a compressed frame may expand to.
pub fn decode<T: DeserializeOwned>(frame: Incoming<'_>, limit: usize) -> Result<T, DecodeError> {
    let json =
        |bytes: &[u8]| serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()));
    let msgpack = |bytes: &[u8]| {
        rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Msgpack(e.to_string()))
    };
    match frame {
        // Text, UTF-8 already: serde_json then does not check each string of it again.
        Incoming::Text(text) => {
            serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))
        }
        Incoming::Binary(bytes) => {
            let (&tag, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
            match tag {
                TAG_MSGPACK => msgpack(rest),
                TAG_MSGPACK_LZ4 => msgpack(&decompress(rest, limit)?),
                TAG_JSON_LZ4 => json(&decompress(rest, limit)?),
                other => Err(DecodeError::UnknownTag(other)),
            }
        }
    }
}

/// lz4 block with its decompressed size in front (u32, little endian), checked against `limit`
/// before anything is allocated.
fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let Some((size, block)) = input.split_first_chunk::<4>() else {
        return Err(DecodeError::Lz4("shorter than its 4-byte size".into()));
    };
    let size = u32::from_le_bytes(*size) as usize;
    if size > limit {
        return Err(DecodeError::TooLarge { size, limit });
    }
    lz4_flex::block::decompress(block, size).map_err(|e| DecodeError::Lz4(e.to_string()))
}

/// Serde helpers for JSON values carried inside frames: embedded as JSON in JSON frames, and as
/// a string of JSON text in MessagePack (told apart by `is_human_readable`).
pub(crate) mod json_value {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    /// A raw JSON value as JSON in JSON frames, as a string of its text in MessagePack ones.
    pub(crate) struct AsJson<'a>(pub(crate) &'a RawValue);

    impl Serialize for AsJson<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                self.0.serialize(s)
            } else {
                s.serialize_str(self.0.get())
            }
        }
    }

    #[allow(clippy::borrowed_box)] // the signature serde's `serialize_with` calls
    pub fn serialize<S: Serializer>(value: &Box<RawValue>, s: S) -> Result<S::Ok, S::Error> {
        AsJson(value).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<RawValue>, D::Error> {
        if d.is_human_readable() {
            Box::<RawValue>::deserialize(d)
        } else {
            let text = String::deserialize(d)?;
            RawValue::from_string(text).map_err(|e| D::Error::custom(format!("not JSON: {e}")))
        }
    }

    /// For optional fields, where a present `null` is a value (so `default` handles absence).
    pub mod present {
        use super::*;

        pub fn serialize<S: Serializer>(
            value: &Option<Box<RawValue>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => s.serialize_some(&AsJson(v)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Box<RawValue>>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Assignment, HubMessage, TaskResult, WorkerMessage};
    use serde_json::value::RawValue;

    fn assign(payload: &str) -> HubMessage {
        HubMessage::Assign {
            tasks: vec![Assignment {
                task_id: "t1".into(),
                attempt: 2,
                capability: "echo".into(),
                payload: RawValue::from_string(payload.into()).unwrap(),
                priority: 5,
                timeout_ms: 1000,
                deadline_ms: None,
                inputs: Some(RawValue::from_string(format!(r#"{{"p":{payload}}}"#)).unwrap()),
                failed_inputs: vec!["q".into()],
            }],
        }
    }

    fn formats() -> Vec<FrameFormat> {
        let mut all = Vec::new();
        for encoding in [Encoding::Json, Encoding::Msgpack] {
            for compression in [Compression::None, Compression::Lz4] {
                all.push(FrameFormat {
                    encoding,
                    compression,
                    batch: false,
                });
            }
        }
        all
    }

    fn read(frame: &Encoded) -> HubMessage {
        match frame {
            Encoded::Text(t) => decode(Incoming::Text(t), 1 << 20).unwrap(),
            Encoded::Binary(b) => decode(Incoming::Binary(b), 1 << 20).unwrap(),
        }
    }

    #[test]
    fn every_format_round_trips_payloads_as_json() {
        let big = format!(r#"{{"text":"{}"}}"#, "abc".repeat(1000));
        for format in formats() {
            for payload in [r#"{"a":[1,2,null]}"#, big.as_str()] {
                let frame = encode(&assign(payload), format);
                let HubMessage::Assign { tasks } = read(&frame) else {
                    panic!("{format:?}")
                };
                assert_eq!(tasks[0].payload.get(), payload, "{format:?}");
                let inputs = tasks[0].inputs.as_ref().expect("inputs kept");
                assert_eq!(inputs.get(), format!(r#"{{"p":{payload}}}"#), "{format:?}");
                assert_eq!(tasks[0].failed_inputs, ["q"], "{format:?}");
                assert_eq!(tasks[0].attempt, 2);
                let compressed = matches!(&frame, Encoded::Binary(b) if b[0] != TAG_MSGPACK);
                assert_eq!(
                    compressed,
                    format.compression == Compression::Lz4 && payload.len() > COMPRESS_ABOVE,
                    "{format:?}"
                );
                if compressed {
                    let Encoded::Binary(b) = &frame else {
                        unreachable!()
                    };
                    assert!(b.len() < payload.len() / 10, "a repetitive payload shrinks");
                }
            }
        }
        assert!(matches!(
            encode(&assign("1"), FrameFormat::default()),
            Encoded::Text(_)
        ));
    }

    #[test]
    fn batches_carry_every_message_in_order() {
        for encoding in [Encoding::Json, Encoding::Msgpack] {
            let bodies: Vec<Vec<u8>> = ["1", "2", "3"]
                .iter()
                .map(|p| body(&assign(p), encoding))
                .collect();
            let frame = seal(
                batch_body(bodies.iter().map(Vec::as_slice), encoding),
                encoding,
                Compression::None,
            );
            let HubMessage::Batch(frames) = read(&frame) else {
                panic!("{encoding:?}")
            };
            let payloads: Vec<String> = frames
                .into_iter()
                .map(|m| match m {
                    HubMessage::Assign { tasks } => tasks[0].payload.get().to_string(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(payloads, ["1", "2", "3"]);
        }
    }

    #[test]
    fn worker_results_read_in_msgpack_keep_null_outputs() {
        let result = WorkerMessage::Result(TaskResult {
            task_id: "t".into(),
            attempt: 1,
            ok: true,
            output: Some(RawValue::from_string("null".into()).unwrap()),
            error: None,
            retry: false,
        });
        let Encoded::Binary(frame) = encode(
            &result,
            FrameFormat {
                encoding: Encoding::Msgpack,
                ..Default::default()
            },
        ) else {
            panic!()
        };
        let WorkerMessage::Result(back) = decode(Incoming::Binary(&frame), 1024).unwrap() else {
            panic!()
        };
        assert_eq!(back.output.unwrap().get(), "null");
    }

    #[test]
    fn bad_binary_frames_are_errors_not_panics() {
        let bad: [&[u8]; 5] = [
            b"",
            &[9, 1],
            &[TAG_MSGPACK, 0xc1],
            &[TAG_JSON_LZ4, 1, 0],
            &[TAG_JSON_LZ4, 0xff, 0xff, 0xff, 0x7f, 0],
        ];
        for frame in bad {
            assert!(
                decode::<WorkerMessage>(Incoming::Binary(frame), 1 << 20).is_err(),
                "{frame:?}"
            );
        }
        let err = decode::<WorkerMessage>(
            Incoming::Binary(&[TAG_JSON_LZ4, 0xff, 0xff, 0xff, 0x7f, 0]),
            1 << 20,
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
        // A payload that is not JSON inside msgpack is refused, not passed on.
        let mut frame = vec![TAG_MSGPACK];
        frame.extend(
            rmp_serde::to_vec_named(
                &serde_json::json!({"type":"reply","message_id":"m","output":"{not json"}),
            )
            .unwrap(),
        );
        let err = decode::<WorkerMessage>(Incoming::Binary(&frame), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::protocol::{HubMessage, TaskResult, WorkerMessage};

        fn any_format() -> impl Strategy<Value = FrameFormat> {
            (0..2u8, 0..2u8, any::<bool>()).prop_map(|(e, c, batch)| FrameFormat {
                encoding: if e == 0 {
                    Encoding::Json
                } else {
                    Encoding::Msgpack
                },
                compression: if c == 0 {
                    Compression::None
                } else {
                    Compression::Lz4
                },
                batch,
            })
        }

        fn any_json() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("null".to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                ".{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                prop::collection::vec(any::<u32>(), 0..8)
                    .prop_map(|v| serde_json::to_string(&v).unwrap()),
            ]
        }

        fn any_result() -> impl Strategy<Value = WorkerMessage> {
            (
                ".{0,40}",
                any::<u32>(),
                any::<bool>(),
                any_json(),
                ".{0,60}",
                any::<bool>(),
            )
                .prop_map(|(task_id, attempt, ok, output, error, retry)| {
                    WorkerMessage::Result(TaskResult {
                        task_id,
                        attempt,
                        ok,
                        output: ok.then(|| RawValue::from_string(output).unwrap()),
                        error: (!ok).then_some(error),
                        retry: !ok && retry,
                    })
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            /// Whatever arrives, the decoders answer with a message or an error, never a panic,
            /// and a compressed frame never expands past the limit.
            #[test]
            fn arbitrary_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512), text in ".{0,256}") {
                let _ = decode::<WorkerMessage>(Incoming::Binary(&bytes), 4096);
                let _ = decode::<HubMessage>(Incoming::Binary(&bytes), 4096);
                let _ = decode::<WorkerMessage>(Incoming::Text(&text), 4096);
                if let Some(rest) = bytes.get(1..5) {
                    let size = u32::from_le_bytes(rest.try_into().unwrap()) as usize;
                    let mut framed = vec![TAG_JSON_LZ4];
                    framed.extend_from_slice(&bytes[1..]);
                    if size > 4096 {
                        let too_large = matches!(decode::<WorkerMessage>(Incoming::Binary(&framed), 4096), Err(DecodeError::TooLarge { .. }));
                        prop_assert!(too_large);
                    }
                }
            }

            /// Arbitrary JSON-shaped worker frames: parsed or refused, never a panic.
            #[test]
            fn arbitrary_worker_frames_never_panic(kind in prop_oneof![Just("hello".to_string()), Just("result".to_string()), Just("heartbeat".to_string()), Just("batch".to_string()), Just("drain".to_string()), ".{0,8}"], fields in prop::collection::btree_map("[a-z_]{1,12}", any_json(), 0..6)) {
                let mut object: serde_json::Map<String, serde_json::Value> = fields
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::from_str(&v).unwrap()))
                    .collect();
                object.insert("type".into(), kind.into());
                let text = serde_json::Value::Object(object).to_string();
                let _ = decode::<WorkerMessage>(Incoming::Text(&text), 1 << 20);
            }

            /// What a worker sends comes back whole in every frame format.
            #[test]
            fn results_round_trip_in_every_format(message in any_result(), format in any_format()) {
                let decoded: WorkerMessage = match encode(&message, format) {
                    Encoded::Text(text) => decode(Incoming::Text(&text), 1 << 20),
                    Encoded::Binary(bytes) => decode(Incoming::Binary(&bytes), 1 << 20),
                }
                .unwrap();
                let (WorkerMessage::Result(a), WorkerMessage::Result(b)) = (&message, &decoded) else {
                    panic!("{decoded:?}");
                };
                prop_assert_eq!(&a.task_id, &b.task_id);
                prop_assert_eq!(a.attempt, b.attempt);
                prop_assert_eq!(a.ok, b.ok);
                prop_assert_eq!(a.output.as_ref().map(|o| o.get()), b.output.as_ref().map(|o| o.get()));
                prop_assert_eq!(&a.error, &b.error);
                prop_assert_eq!(a.retry, b.retry);
            }
        }
    }
}
