//! Workers that come back: attempts re-bound after a hub restart, results finished while the hub
//! was away delivered, stale claims cancelled, and leases that run out cancelled on the worker.

use futures_util::SinkExt;
use hive_client::worker::Outcome;
use hive_proto::api::{AgentState, AttemptOutcome, NewTask, TaskStatus};
use hive_proto::protocol::Assignment;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_restart_does_not_cost_running_tasks_their_lease() {
    let t = start_hub().await;
    let addr = t.hub.addr();
    // Each task runs until its payload's number is released.
    let (release, released) = watch::channel(0u64);
    let (got, mut got_rx) = mpsc::unbounded_channel();
    let _worker = spawn_worker(&t.url, &["long"], 2, move |task: Assignment| {
        let mut released = released.clone();
        let got = got.clone();
        async move {
            let n: u64 = task.payload.get().parse().unwrap();
            let _ = got.send(n);
            let _ = released.wait_for(|r| *r >= n).await;
            Outcome::json(&(n * 10))
        }
    });
    let long = |n: u64| NewTask {
        payload: Some(hive_proto::RawValue::from_string(n.to_string()).unwrap()),
        // Far longer than the test may take: only re-binding lets these finish in time.
        timeout_ms: Some(600_000),
        ..NewTask::new("long")
    };
    let first = t.client.submit(&long(1)).await.unwrap();
    let second = t.client.submit(&long(2)).await.unwrap();
    let mut started = vec![got_rx.recv().await.unwrap(), got_rx.recv().await.unwrap()];
    started.sort();
    assert_eq!(started, vec![1, 2]);

    let dir = t.dir;
    t.hub.shutdown().await;
    // Task 1 finishes while the hub is down: its result waits for the next connection.
    release.send(1).unwrap();
    let mut config = hive_server::HubConfig::new(addr, dir.path().to_path_buf());
    config.durability = hive_server::Durability::Normal;
    let hub = hive_server::Hub::start(config).await.unwrap();
    let client = hive_client::HubClient::new(&t.url);

    let done = finished(&client, &first.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.result.unwrap().get(), "10");
    assert_eq!(
        done.attempts.len(),
        1,
        "one attempt, re-bound: {:?}",
        done.attempts
    );

    // Task 2 is still running, bound to the reconnected agent.
    let agents = client.agents().await.unwrap();
    let agent = agents
        .iter()
        .find(|a| a.state != AgentState::Offline)
        .unwrap();
    assert_eq!(agent.running, 1);
    release.send(2).unwrap();
    let done = finished(&client, &second.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(
        done.attempts[0].agent_id.as_deref(),
        Some(agent.id.as_str())
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_hello_naming_attempts_that_are_not_current_gets_them_cancelled() {
    let t = start_hub().await;
    let unknown = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    let mut socket = ws(&t.url, "/ws/agent").await;
    let hello = serde_json::json!({
        "type": "hello", "name": "back", "capabilities": ["x"], "slots": 2,
        "running": [{"task_id": unknown, "attempt": 3}]
    });
    socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "welcome");
    let cancel = next_json(&mut socket).await;
    assert_eq!(cancel["type"], "cancel", "{cancel}");
    assert_eq!(cancel["task_id"], unknown);
    assert_eq!(cancel["attempt"], 3);
}

#[tokio::test]
async fn a_hello_naming_more_attempts_than_slots_or_a_bad_id_is_refused() {
    let t = start_hub().await;
    for (running, expected) in [
        (
            serde_json::json!([{"task_id": "nope", "attempt": 1}]),
            "running[0].task_id",
        ),
        (
            serde_json::json!([
                {"task_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "attempt": 1},
                {"task_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c", "attempt": 1}
            ]),
            "more than the 1 slots",
        ),
    ] {
        let mut socket = ws(&t.url, "/ws/agent").await;
        let hello = serde_json::json!({
            "type": "hello", "name": "w", "capabilities": ["x"], "slots": 1, "running": running
        });
        socket
            .send(Message::Text(hello.to_string().into()))
            .await
            .unwrap();
        let error = next_json(&mut socket).await;
        assert_eq!(error["code"], "invalid_hello", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
    }
}

#[tokio::test]
async fn an_expired_lease_is_cancelled_on_the_worker() {
    let t = start_hub().await;
    let mut socket = ws(&t.url, "/ws/agent").await;
    let hello = serde_json::json!({"type": "hello", "name": "slow", "capabilities": ["x"]});
    socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "welcome");
    let task = t
        .client
        .submit(&NewTask {
            timeout_ms: Some(100),
            max_attempts: Some(1),
            ..NewTask::new("x")
        })
        .await
        .unwrap();
    let assign = next_json(&mut socket).await;
    assert_eq!(assign["type"], "assign");
    // The worker never answers; once the lease runs out, the hub says to stop.
    let cancel = next_json(&mut socket).await;
    assert_eq!(cancel["type"], "cancel", "{cancel}");
    assert_eq!(cancel["task_id"], task.id.as_str());
    let done = finished(&t.client, &task.id).await;
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
}
