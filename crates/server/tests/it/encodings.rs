//! The negotiated frame formats: MessagePack, lz4 and batch frames carry the same work as JSON,
//! a hub reads every form from any worker, and a bad format is refused by name.

use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use hive_client::WorkerOptions;
use hive_client::worker::run_worker;
use hive_proto::RawValue;
use hive_proto::api::{AgentState, NewSwarmMessage, NewTask, TaskStatus};
use hive_proto::codec::{self, Compression, Encoding, FrameFormat, Incoming};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::util::*;

fn formats() -> Vec<FrameFormat> {
    let mut all = Vec::new();
    for encoding in [Encoding::Json, Encoding::Msgpack] {
        for compression in [Compression::None, Compression::Lz4] {
            for batch in [false, true] {
                all.push(FrameFormat {
                    encoding,
                    compression,
                    batch,
                });
            }
        }
    }
    all
}

/// Payloads small and large (over the compression threshold), distinct per task.
fn payload(n: usize) -> Box<RawValue> {
    let filler = "swarm ".repeat(if n.is_multiple_of(2) { 200 } else { 1 });
    RawValue::from_string(json!({"n": n, "text": filler}).to_string()).unwrap()
}

#[tokio::test]
async fn workers_of_every_format_run_tasks_and_return_outputs_intact() {
    let t = start_hub().await;
    let mut workers = Vec::new();
    for (i, format) in formats().into_iter().enumerate() {
        let capability = format!("fmt-{i}");
        let mut options = WorkerOptions::new(&t.url, &[&capability], 4);
        options.format = format;
        let executor = Arc::new(echo());
        workers.push(tokio::spawn(run_worker(
            options,
            executor,
            std::future::pending(),
        )));
    }
    let mut submitted = Vec::new();
    for i in 0..formats().len() {
        let tasks = (0..40)
            .map(|n| NewTask {
                payload: Some(payload(n)),
                ..NewTask::new(format!("fmt-{i}"))
            })
            .collect();
        let ids = t.client.submit_batch(tasks).await.unwrap();
        submitted.extend(ids.into_iter().enumerate());
    }
    for (n, id) in submitted {
        let done = finished(&t.client, &id).await;
        assert_eq!(done.status, TaskStatus::Succeeded, "{id}");
        assert_eq!(done.result.unwrap().get(), payload(n).get(), "{id}");
    }
    for worker in workers {
        worker.abort();
    }
}

#[tokio::test]
async fn broadcasts_reach_members_of_every_format() {
    let t = start_hub().await;
    let mut members = Vec::new();
    for (i, format) in formats().into_iter().enumerate() {
        let mut options = WorkerOptions::new(&t.url, &["chat"], 1);
        options.name = format!("member-{i}");
        options.groups = vec!["mixed".into()];
        options.format = format;
        members.push(tokio::spawn(run_worker(
            options,
            Arc::new(echo()),
            std::future::pending(),
        )));
    }
    eventually("every member joined", Duration::from_secs(10), || async {
        let swarms = t.client.swarms().await.unwrap();
        (swarms.items.first().map(|s| s.agents.len()) == Some(formats().len())).then_some(())
    })
    .await;
    // Many at once, so batching workers find several messages queued.
    let sends = (0..16).map(|n| {
        let client = t.client.clone();
        async move {
            let message = NewSwarmMessage {
                payload: Some(payload(n)),
                timeout_ms: Some(10_000),
            };
            (n, client.broadcast("mixed", &message).await.unwrap())
        }
    });
    for (n, outcome) in futures_util::future::join_all(sends).await {
        assert_eq!(outcome.replies.len(), formats().len(), "message {n}");
        assert!(outcome.missing.is_empty());
        for reply in outcome.replies {
            assert_eq!(reply.output.get(), payload(n).get());
        }
    }
    for member in members {
        member.abort();
    }
}

async fn connect(url: &str, hello: Value) -> Socket {
    let mut socket = ws(url, "/ws/agent").await;
    socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    socket
}

/// The next data frame, decoded whatever its form; also says whether it came as binary.
async fn receive(socket: &mut Socket) -> (Value, bool) {
    loop {
        match &next_frame(socket).await {
            Message::Text(t) => return (codec::decode(Incoming::Text(t), 1 << 20).unwrap(), false),
            Message::Binary(b) => {
                return (codec::decode(Incoming::Binary(b), 1 << 20).unwrap(), true);
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_hand_written_msgpack_worker_gets_binary_frames_and_may_answer_in_a_batch() {
    let t = start_hub().await;
    let mut socket = connect(
        &t.url,
        json!({"type":"hello","name":"packer","capabilities":["pack"],"encoding":"msgpack","batch":true}),
    )
    .await;
    let (welcome, binary) = receive(&mut socket).await;
    assert!(!binary, "the welcome is JSON text");
    assert_eq!(
        (welcome["encoding"].as_str(), welcome["batch"].as_bool()),
        (Some("msgpack"), Some(true))
    );

    let task = t
        .client
        .submit(&NewTask {
            payload: Some(RawValue::from_string(r#"{"x":[1,2]}"#.into()).unwrap()),
            ..NewTask::new("pack")
        })
        .await
        .unwrap();
    let (assign, binary) = receive(&mut socket).await;
    assert!(binary, "MessagePack travels in binary frames");
    assert_eq!(assign["type"], "assign");
    let assigned = &assign["tasks"][0];
    assert_eq!(assigned["task_id"], task.id.as_str());
    assert_eq!(
        assigned["payload"], r#"{"x":[1,2]}"#,
        "payloads stay JSON text"
    );

    // A result in a batch, in lz4-compressed MessagePack; its output is JSON text.
    let big = "y".repeat(2000);
    let output = json!({"echo": big}).to_string();
    let batch = json!({"type":"batch","frames":[
        {"type":"heartbeat"},
        {"type":"result","task_id":task.id,"attempt":1,"ok":true,"output":output},
    ]});
    let body = codec::body(&batch, Encoding::Msgpack);
    let codec::Encoded::Binary(frame) = codec::seal(body, Encoding::Msgpack, Compression::Lz4)
    else {
        panic!("msgpack is binary")
    };
    assert_eq!(frame[0], codec::TAG_MSGPACK_LZ4);
    socket.send(Message::Binary(frame.into())).await.unwrap();
    let done = finished(&t.client, &task.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.result.unwrap().get(), output);

    // Garbage and a non-JSON output get error frames, and the connection stays.
    for bad in [vec![7u8, 1, 2], {
        let mut frame = vec![codec::TAG_MSGPACK];
        frame.extend(codec::body(
            &json!({"type":"result","task_id":task.id,"attempt":1,"ok":true,"output":"{oops"}),
            Encoding::Msgpack,
        ));
        frame
    }] {
        socket.send(Message::Binary(bad.into())).await.unwrap();
        let (error, _) = receive(&mut socket).await;
        assert_eq!(error["code"], "invalid_message", "{error}");
    }
    assert_eq!(t.client.agents().await.unwrap()[0].state, AgentState::Idle);
}

#[tokio::test]
async fn an_unknown_format_in_hello_is_refused_by_name() {
    let t = start_hub().await;
    for (hello, field) in [
        (
            json!({"type":"hello","name":"x","capabilities":["a"],"encoding":"xml"}),
            "xml",
        ),
        (
            json!({"type":"hello","name":"x","capabilities":["a"],"compression":"zip"}),
            "zip",
        ),
    ] {
        let mut socket = connect(&t.url, hello).await;
        let (answer, _) = receive(&mut socket).await;
        assert_eq!(answer["code"], "invalid_hello");
        assert!(
            answer["message"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
}
