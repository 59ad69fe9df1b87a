//! `hive task ID --follow`: a task's progress on the terminal as its worker reports it, then
//! the finished task. The worker speaks the protocol by hand (a worker in another language
//! would), as `hive worker --exec` sends no progress.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hive_proto::api::NewTask;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::util::*;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(socket: &mut Socket, value: Value) {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_the_streamed_output_and_ends_with_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path(), free_port()).await;
    let client = hive_client::HubClient::new(&hub.url);
    let task = client.submit(&NewTask::new("story")).await.unwrap();

    let mut follower = hive()
        .args(["task", &task.id, "--follow"])
        .env("HIVE_HUB", &hub.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(follower.stderr.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(20), said.next_line())
            .await
            .expect("a line from the follower in time")
            .unwrap()
            .unwrap()
    };
    let line = next_line().await;
    assert_eq!(line, format!("[queued] following task {}", task.id));

    // The worker connects once the follower listens (it said so): the follower reports the
    // start.
    let address = hub.url.replace("http://", "ws://") + "/ws/agent";
    let mut worker = tokio_tungstenite::connect_async(address).await.unwrap().0;
    send(
        &mut worker,
        json!({"type": "hello", "name": "teller", "capabilities": ["story"]}),
    )
    .await;
    assert_eq!(next_json(&mut worker).await["type"], "welcome");
    assert_eq!(next_json(&mut worker).await["type"], "assign");
    let line = next_line().await;
    assert!(line.starts_with("[running] attempt 1"), "{line}");

    for frame in [
        json!({"fraction": 0.5, "message": "writing", "output": "Once "}),
        json!({"output": "upon a time"}),
    ] {
        let mut frame = frame;
        frame["type"] = json!("progress");
        frame["task_id"] = json!(task.id);
        frame["attempt"] = json!(1);
        send(&mut worker, frame).await;
    }
    send(
        &mut worker,
        json!({"type": "result", "task_id": task.id, "attempt": 1, "ok": true, "output": "done"}),
    )
    .await;

    let output = tokio::time::timeout(Duration::from_secs(20), follower.wait_with_output())
        .await
        .expect("the follower ends with the task")
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("Once upon a time\n"), "{stdout}");
    let finished: Value =
        serde_json::from_str(stdout.trim_start_matches("Once upon a time\n")).unwrap();
    assert_eq!(finished["status"], "succeeded");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = said.next_line().await {
        rest.push(line);
    }
    assert!(
        rest.contains(&"[progress] 50% writing".to_string()),
        "{rest:?}"
    );
}
