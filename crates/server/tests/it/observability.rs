//! Observability: the JSON snapshot, the Prometheus text (checked by promtool) and the live
//! streams count exactly what the hub did; the event stream follows tasks and agents.

use std::time::Duration;

use hive_client::worker::Outcome;
use hive_proto::api::{NewTask, TaskStatus};
use serde_json::Value;

use crate::util::*;

async fn fast_hub() -> TestHub {
    start_hub_with(|c| c.metrics_interval = Duration::from_millis(100)).await
}

async fn prometheus(url: &str) -> String {
    let response = http().get(format!("{url}/metrics")).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels as written).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_metrics_count_exactly_what_the_hub_did() {
    let t = fast_hub().await;
    let _echo = spawn_worker(&t.url, &["echo"], 8, echo());
    let _boom = spawn_worker(&t.url, &["boom"], 1, |_| async {
        Outcome::failure("no", true)
    });
    let ids = t
        .client
        .submit_batch((0..50).map(|_| NewTask::new("echo")).collect())
        .await
        .unwrap();
    let failing = t
        .client
        .submit(&NewTask {
            max_attempts: Some(2),
            backoff_ms: Some(0),
            ..NewTask::new("boom")
        })
        .await
        .unwrap();
    for id in ids.iter().chain([&failing.id]) {
        finished(&t.client, id).await;
    }
    for _ in 0..3 {
        t.client.submit(&NewTask::new("nobody")).await.unwrap();
    }
    // A client error, counted as one.
    let bad = http()
        .post(format!("{}/api/v1/tasks", t.url))
        .json(&serde_json::json!({"capability": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Counted after each commit, published at the next snapshot.
    let s = eventually(
        "the snapshot has every task",
        Duration::from_secs(10),
        || async {
            let s = snapshot(&t.url).await;
            (s.totals["tasks_submitted"] == 54 && s.queue_depth.get("nobody") == Some(&3))
                .then_some(s)
        },
    )
    .await;
    assert_eq!(s.totals["tasks_succeeded"], 50);
    assert_eq!(s.totals["tasks_failed"], 1);
    assert_eq!(s.totals["attempts_failed"], 2);
    assert_eq!(s.totals["attempts_succeeded"], 50);
    assert_eq!(s.totals["agents_registered"], 2);
    assert_eq!(s.agents.values().sum::<u64>(), 2);
    assert!(s.process.rss_bytes > 0 && !s.cpu_core_usage.is_empty());
    assert!(s.memory_by_component["scheduler"] > 0);
    assert!(s.memory_by_component["metrics_history"] > 0);

    let text = prometheus(&t.url).await;
    assert_eq!(
        sample(&text, r#"hive_tasks_total{status="succeeded"}"#),
        50.0
    );
    assert_eq!(sample(&text, r#"hive_tasks_total{status="failed"}"#), 1.0);
    assert_eq!(
        sample(&text, r#"hive_attempts_ended_total{outcome="failed"}"#),
        2.0
    );
    assert_eq!(sample(&text, "hive_task_end_to_end_seconds_count"), 51.0);
    assert_eq!(sample(&text, "hive_task_execution_seconds_count"), 52.0);
    assert_eq!(
        sample(
            &text,
            r#"hive_http_requests_total{method="POST",route="/api/v1/tasks/batch",status="2xx"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"hive_http_requests_total{method="POST",route="/api/v1/tasks",status="4xx"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&text, r#"hive_queue_depth{capability="nobody"}"#),
        3.0
    );
    assert!(sample(&text, "process_resident_memory_bytes") > 0.0);
}

#[tokio::test]
async fn the_prometheus_text_passes_promtool() {
    let t = fast_hub().await;
    let _echo = spawn_worker(&t.url, &["echo"], 2, echo());
    let task = t.client.submit(&NewTask::new("echo")).await.unwrap();
    finished(&t.client, &task.id).await;
    eventually(
        "a snapshot with the agent",
        Duration::from_secs(10),
        || async { (snapshot(&t.url).await.agents.values().sum::<u64>() == 1).then_some(()) },
    )
    .await;
    let text = prometheus(&t.url).await;
    let file = t.dir.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let checked = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output();
    match checked {
        Ok(out) => assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        // .ci/run installs promtool and sets HIVE_REQUIRE_PROMTOOL, so CI cannot skip this.
        Err(e) if std::env::var_os("HIVE_REQUIRE_PROMTOOL").is_none() => {
            eprintln!("promtool not run ({e}): install Debian's prometheus package");
        }
        Err(e) => panic!("promtool is required here: {e}"),
    }
}

#[tokio::test]
async fn the_performance_stream_starts_with_history_and_follows_live() {
    let t = fast_hub().await;
    let mut socket = ws(&t.url, "/ws/performance").await;
    let history = next_json(&mut socket).await;
    assert_eq!(history["type"], "history");
    assert!(!history["snapshots"].as_array().unwrap().is_empty());
    t.client.submit(&NewTask::new("later")).await.unwrap();
    // Snapshots keep coming; one of them shows the task in its totals.
    for _ in 0..100 {
        let live = next_json(&mut socket).await;
        assert_eq!(live["type"], "snapshot");
        if live["snapshot"]["totals"]["tasks_submitted"] == 1 {
            assert_eq!(live["snapshot"]["queue_depth"]["later"], 1);
            return;
        }
    }
    panic!("no snapshot counted the task");
}

#[tokio::test]
async fn a_hub_with_metrics_off_says_so_and_still_works() {
    let t = start_hub_with(|c| c.metrics_enabled = false).await;
    for path in ["/api/v1/metrics", "/metrics"] {
        let response = http().get(format!("{}{path}", t.url)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("metrics.enabled"),
            "{body}"
        );
    }
    let _echo = spawn_worker(&t.url, &["echo"], 1, echo());
    let task = t.client.submit(&NewTask::new("echo")).await.unwrap();
    assert_eq!(
        finished(&t.client, &task.id).await.status,
        TaskStatus::Succeeded
    );
}

#[tokio::test]
async fn the_event_stream_follows_a_task_and_filters_by_capability() {
    let t = start_hub().await;
    let mut socket = ws(&t.url, "/ws/events?capability=watch").await;
    let _watcher = spawn_worker(&t.url, &["watch"], 1, echo());
    let _other = spawn_worker(&t.url, &["other"], 1, echo());
    let other = t.client.submit(&NewTask::new("other")).await.unwrap();
    finished(&t.client, &other.id).await;
    let task = t.client.submit(&NewTask::new("watch")).await.unwrap();
    let mut statuses = Vec::new();
    let mut agents = Vec::new();
    while statuses.last().map(String::as_str) != Some("succeeded") {
        let frame = next_json(&mut socket).await;
        assert_eq!(frame["type"], "events", "{frame}");
        for event in frame["events"].as_array().unwrap() {
            match event["type"].as_str() {
                Some("task") => {
                    assert_eq!(event["capability"], "watch", "filtered: {event}");
                    assert_eq!(event["task_id"], task.id.as_str());
                    statuses.push(event["status"].as_str().unwrap().to_string());
                }
                Some("agent") => agents.push(event["state"].as_str().unwrap().to_string()),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(statuses, ["queued", "running", "succeeded"]);
    assert_eq!(agents, ["idle"], "only the agent with the capability");
}
