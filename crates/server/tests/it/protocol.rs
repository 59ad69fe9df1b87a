//! The worker protocol spoken by hand over a raw WebSocket, as a worker in another language would.

use std::time::Duration;

use hive_proto::api::{AgentState, NewTask, TaskStatus};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::util::*;

async fn connect(url: &str) -> Socket {
    ws(url, "/ws/agent").await
}

async fn receive(socket: &mut Socket) -> Value {
    next_json(socket).await
}

#[tokio::test]
async fn a_hand_written_worker_gets_assignments_and_stale_results_are_ignored() {
    let t = start_hub().await;
    let mut socket = connect(&t.url).await;
    send(
        &mut socket,
        json!({"type":"hello","name":"by-hand","capabilities":{"hand":0.8},"slots":2}),
    )
    .await;
    let welcome = receive(&mut socket).await;
    assert_eq!(welcome["type"], "welcome");
    assert!(
        welcome["agent_id"].is_string() && welcome["heartbeat_interval_ms"].as_u64().unwrap() > 0
    );

    let task = t
        .client
        .submit(&NewTask {
            max_attempts: Some(2),
            backoff_ms: Some(0),
            ..NewTask::new("hand")
        })
        .await
        .unwrap();
    let assign = receive(&mut socket).await;
    assert_eq!(assign["type"], "assign");
    let assigned = &assign["tasks"][0];
    assert_eq!(assigned["task_id"], task.id.as_str());
    assert_eq!(assigned["attempt"], 1);

    // A wrong attempt number is fenced off; the right one completes the task.
    send(&mut socket, json!({"type":"heartbeat"})).await;
    send(
        &mut socket,
        json!({"type":"result","task_id":task.id,"attempt":7,"ok":true,"output":"stale"}),
    )
    .await;
    send(
        &mut socket,
        json!({"type":"result","task_id":task.id,"attempt":1,"ok":true,"output":{"done":true}}),
    )
    .await;
    let done = finished(&t.client, &task.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.result.unwrap().get(), r#"{"done":true}"#);

    // A malformed frame gets an error frame, not a dropped connection.
    send(&mut socket, json!({"type":"result","ok":true})).await;
    let error = receive(&mut socket).await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("invalid_message"))
    );
    send(&mut socket, json!({"type":"heartbeat"})).await;
    let agents = t.client.agents().await.unwrap();
    assert_eq!(agents[0].state, AgentState::Idle);
    assert_eq!(agents[0].stats["hand"].completed, 1);
}

#[tokio::test]
async fn a_bad_hello_is_refused_with_a_reason() {
    let t = start_hub().await;
    for hello in [
        json!({"type":"heartbeat"}),
        json!({"type":"hello","name":"x","capabilities":[],"slots":1}),
        json!({"type":"hello","name":"x","capabilities":{"a":2.0},"slots":1}),
        json!({"type":"hello","name":"x","capabilities":["a"],"slots":0}),
        // `name` and `capabilities` are required (docs/protocol.md).
        json!({"type":"hello","capabilities":["a"],"slots":1}),
        json!({"type":"hello","name":"x","slots":1}),
    ] {
        let mut socket = connect(&t.url).await;
        send(&mut socket, hello.clone()).await;
        let answer = receive(&mut socket).await;
        assert_eq!(
            (answer["type"].as_str(), answer["code"].as_str()),
            (Some("error"), Some("invalid_hello")),
            "{hello}"
        );
    }
    assert!(t.client.agents().await.unwrap().is_empty());
}

/// The contract of docs/protocol.md, held: a successful `result` must carry `output` (without it
/// the frame is refused with `invalid_message` naming the field, and the attempt stays running
/// until a whole result comes); `payload` may be `null`; WebSocket pings are not liveness.
#[tokio::test]
async fn a_success_without_output_is_refused_and_pings_are_not_heartbeats() {
    let t = start_hub_with(|c| c.scheduler.heartbeat_timeout_ms = 1_500).await;
    let mut socket = connect(&t.url).await;
    send(
        &mut socket,
        json!({"type":"hello","name":"pinger","capabilities":["hand"],"slots":1}),
    )
    .await;
    assert_eq!(receive(&mut socket).await["type"], "welcome");
    let task = t
        .client
        .submit(
            &serde_json::from_value::<NewTask>(json!({"capability":"hand","payload":null}))
                .unwrap(),
        )
        .await
        .unwrap();
    let assign = receive(&mut socket).await;
    assert_eq!(assign["tasks"][0]["payload"], Value::Null);
    send(
        &mut socket,
        json!({"type":"result","task_id":task.id,"attempt":1,"ok":true}),
    )
    .await;
    let error = receive(&mut socket).await;
    assert_eq!(error["code"], "invalid_message", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("`output`"),
        "{error}"
    );
    assert_eq!(
        t.client.task(&task.id).await.unwrap().status,
        TaskStatus::Running
    );
    // Only pings from now on: the agent goes offline when its heartbeats stop.
    let agent_id = t.client.agents().await.unwrap()[0].id.clone();
    let mut offline = false;
    // A bound against hanging (80 pings, 250 ms apart), far past the 1.5 s without heartbeats.
    for _ in 0..80 {
        let ping = Message::Ping(Vec::new().into());
        let sent = futures_util::SinkExt::send(&mut socket, ping).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let agent = t.client.agent(&agent_id).await.unwrap();
        if agent.state == AgentState::Offline {
            offline = true;
            break;
        }
        if sent.is_err() {
            break;
        }
    }
    assert!(offline, "WebSocket pings kept the agent online");
    drop(socket);
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let t = start_hub().await;
    let doc: Value = http()
        .get(format!("{}/api/openapi.json", t.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/tasks",
        "/api/v1/tasks/batch",
        "/api/v1/tasks/{id}",
        "/api/v1/tasks/{id}/wait",
        "/api/v1/agents",
        "/api/v1/status",
    ] {
        assert!(doc["paths"][path].is_object(), "missing {path}");
    }
    assert!(doc["components"]["schemas"]["NewTask"]["properties"]["capability"].is_object());
    // What the hub checks, the document says (found by schemathesis before).
    let new_task = &doc["components"]["schemas"]["NewTask"]["properties"];
    assert_eq!(new_task["max_attempts"]["minimum"], 1);
    assert_eq!(new_task["max_attempts"]["maximum"], 100);
    assert_eq!(new_task["timeout_ms"]["maximum"], 604_800_000);
    for (path, name) in [
        ("/api/v1/alerts", "limit"),
        ("/api/v1/tasks", "cursor"),
        ("/api/v1/agents", "limit"),
    ] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let param = params.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(param["in"], "query", "{path} {name}");
        assert_ne!(param["required"], true, "{path} {name}");
    }
    let health = http()
        .get(format!("{}/readyz", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
