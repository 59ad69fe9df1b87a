//! Progress of a running attempt: frames from a hand-written worker reach `GET /tasks/{id}`
//! (the latest), `/ws/events` and the task's Server-Sent Events (each), fenced by attempt and
//! agent, bounded in size and rate.

use std::time::Duration;

use hive_proto::api::NewTask;
use serde_json::{Value, json};

use crate::util::*;

/// A worker by hand with capability `slow`, and the task it was assigned.
async fn running(t: &TestHub) -> (Socket, String) {
    let mut socket = ws(&t.url, "/ws/agent").await;
    send(
        &mut socket,
        json!({"type": "hello", "name": "writer", "capabilities": ["slow"], "slots": 1}),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["type"], "welcome");
    let task = t.client.submit(&NewTask::new("slow")).await.unwrap();
    let assign = next_json(&mut socket).await;
    assert_eq!(assign["tasks"][0]["task_id"], task.id.as_str());
    (socket, task.id)
}

/// Reads Server-Sent Events from a streaming response: (event name, JSON data) pairs.
struct Sse {
    response: reqwest::Response,
    reader: hive_proto::sse::SseReader,
    ready: std::collections::VecDeque<(String, Value)>,
}

impl Sse {
    fn new(response: reqwest::Response) -> Sse {
        Sse {
            response,
            reader: Default::default(),
            ready: Default::default(),
        }
    }

    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event in time")
                .unwrap()?;
            for event in self.reader.feed(&chunk) {
                let name = event.event.unwrap_or_default();
                self.ready.push_back((name, json(&event.data)));
            }
        }
    }
}

#[tokio::test]
async fn progress_reaches_the_task_the_event_streams_and_its_follower() {
    let t = start_hub().await;
    let (mut worker, id) = running(&t).await;
    let mut events = ws(&t.url, "/ws/events").await;
    let response = http()
        .get(format!("{}/api/v1/tasks/{id}/events", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut follow = Sse::new(response);
    let (name, first) = follow.next().await.unwrap();
    assert_eq!(
        (name.as_str(), first["status"].as_str()),
        ("task", Some("running"))
    );

    // Another attempt's frame is ignored; this attempt's frames pass.
    send(
        &mut worker,
        json!({"type": "progress", "task_id": id, "attempt": 9, "message": "stale"}),
    )
    .await;
    send(
        &mut worker,
        json!({"type": "progress", "task_id": id, "attempt": 1, "fraction": 0.5,
               "message": "halfway", "output": "Hel"}),
    )
    .await;
    send(
        &mut worker,
        json!({"type": "progress", "task_id": id, "attempt": 1, "output": "lo"}),
    )
    .await;

    let (name, progress) = follow.next().await.unwrap();
    assert_eq!(name, "progress");
    assert_eq!(
        (
            progress["fraction"].as_f64(),
            progress["message"].as_str(),
            progress["output"].as_str()
        ),
        (Some(0.5), Some("halfway"), Some("Hel"))
    );
    let (_, second) = follow.next().await.unwrap();
    assert_eq!(second["output"], "lo");

    // The task keeps the latest fraction and message, not the output.
    let task: Value = get_json(&format!("{}/api/v1/tasks/{id}", t.url)).await;
    assert_eq!(task["progress"]["attempt"], 1);
    assert_eq!(task["progress"]["fraction"], 0.5);
    assert_eq!(task["progress"]["message"], "halfway");

    // /ws/events carries them too.
    let mut outputs = Vec::new();
    while outputs.len() < 2 {
        let frame = next_json(&mut events).await;
        for event in frame["events"].as_array().into_iter().flatten() {
            if event["type"] == "progress" {
                assert_eq!(event["capability"], "slow");
                outputs.push(event["output"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(outputs, ["Hel", "lo"]);

    // The result ends the follower's stream with the finished task.
    send(
        &mut worker,
        json!({"type": "result", "task_id": id, "attempt": 1, "ok": true, "output": "Hello"}),
    )
    .await;
    let mut last = None;
    while let Some((name, data)) = follow.next().await {
        last = Some((name, data));
    }
    let (name, done) = last.unwrap();
    assert_eq!(
        (name.as_str(), done["status"].as_str()),
        ("task", Some("succeeded"))
    );
    assert_eq!(done["result"], "Hello");
    assert!(
        done.get("progress").is_none(),
        "a finished task has no progress"
    );
}

#[tokio::test]
async fn progress_is_bounded_in_size_and_rate() {
    let t = start_hub_with(|c| c.metrics_interval = Duration::from_millis(100)).await;
    let (mut worker, id) = running(&t).await;
    let huge = "x".repeat(64 * 1024 + 1);
    send(
        &mut worker,
        json!({"type": "progress", "task_id": id, "attempt": 1, "output": huge}),
    )
    .await;
    let refused = next_json(&mut worker).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "progress_refused");
    let invalid = json!({"type": "progress", "task_id": id, "attempt": 1, "fraction": 1.5});
    send(&mut worker, invalid).await;
    let refused = next_json(&mut worker).await;
    assert_eq!(refused["code"], "invalid_message");
    assert!(refused["message"].as_str().unwrap().contains("fraction"));

    // A hundred frames at once: past the burst of twenty, most are dropped.
    let frames: Vec<Value> = (0..100)
        .map(|n| json!({"type": "progress", "task_id": id, "attempt": 1, "fraction": n as f64 / 100.0}))
        .collect();
    send(&mut worker, json!({"type": "batch", "frames": frames})).await;
    let totals = eventually("the frames counted", Duration::from_secs(10), || async {
        let totals = snapshot(&t.url).await.totals;
        (totals["progress_reported"] + totals["progress_dropped"] == 100).then_some(totals)
    })
    .await;
    assert!(totals["progress_dropped"] >= 1, "{totals:?}");
    assert!(totals["progress_reported"] >= 20, "{totals:?}");
}
