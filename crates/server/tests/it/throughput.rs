//! Many tasks through several workers: every one succeeds, with the right output.

use std::collections::HashMap;
use std::time::Duration;

use hive_client::http::ListQuery;
use hive_client::worker::Outcome;
use hive_proto::RawValue;
use hive_proto::api::NewTask;
use hive_proto::protocol::Assignment;
use serde_json::{Value, json};

use crate::util::*;

/// What each capability does: `upper` upper-cases `s`, `sum` adds `xs`, `echo` returns the payload.
fn work(task: &Assignment) -> Value {
    let payload: Value = serde_json::from_str(task.payload.get()).unwrap();
    match task.capability.as_str() {
        "upper" => json!({ "s": payload["s"].as_str().unwrap().to_uppercase() }),
        "sum" => {
            json!({ "sum": payload["xs"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).sum::<i64>() })
        }
        _ => payload,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_through_four_workers_across_three_capabilities() {
    let t = start_hub().await;
    let executor = || |task: Assignment| async move { Outcome::json(&work(&task)) };
    let _workers = [
        spawn_worker(&t.url, &["upper", "sum"], 16, executor()),
        spawn_worker(&t.url, &["sum", "echo"], 16, executor()),
        spawn_worker(&t.url, &["echo", "upper"], 16, executor()),
        spawn_worker(&t.url, &["upper", "sum", "echo"], 16, executor()),
    ];

    let mut expected: HashMap<String, Value> = HashMap::new();
    for batch in 0..20 {
        let mut tasks = Vec::new();
        let mut outputs = Vec::new();
        for i in 0..500 {
            let n = batch * 500 + i;
            let (capability, payload, output) = match n % 3 {
                0 => (
                    "upper",
                    json!({ "s": format!("task {n}") }),
                    json!({ "s": format!("TASK {n}") }),
                ),
                1 => ("sum", json!({ "xs": [n, 1, 2] }), json!({ "sum": n + 3 })),
                _ => ("echo", json!({ "n": n }), json!({ "n": n })),
            };
            tasks.push(NewTask {
                payload: Some(RawValue::from_string(payload.to_string()).unwrap()),
                ..NewTask::new(capability)
            });
            outputs.push(output);
        }
        let ids = t.client.submit_batch(tasks).await.unwrap();
        expected.extend(ids.into_iter().zip(outputs));
    }
    assert_eq!(expected.len(), 10_000);

    eventually(
        "10,000 tasks to succeed",
        Duration::from_secs(180),
        || async {
            let status = t.client.status().await.unwrap();
            assert_eq!(status.tasks["failed"], 0);
            (status.tasks["succeeded"] == 10_000).then_some(())
        },
    )
    .await;

    let mut checked = 0;
    let mut cursor = None;
    loop {
        let query = ListQuery {
            status: Some(hive_proto::api::TaskStatus::Succeeded),
            limit: Some(1000),
            cursor: cursor.clone(),
            ..Default::default()
        };
        let page = t.client.tasks(&query).await.unwrap();
        for task in &page.items {
            let output: Value = serde_json::from_str(task.result.as_ref().unwrap().get()).unwrap();
            assert_eq!(
                Some(&output),
                expected.get(&task.id),
                "output of task {}",
                task.id
            );
            assert_eq!(task.attempts.len(), 1);
            checked += 1;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(checked, 10_000);
    let agents = t.client.agents().await.unwrap();
    let completed: u64 = agents
        .iter()
        .flat_map(|a| a.stats.values())
        .map(|s| s.completed)
        .sum();
    assert_eq!(completed, 10_000);
    assert!(
        agents
            .iter()
            .all(|a| a.stats.values().map(|s| s.completed).sum::<u64>() > 0),
        "every worker took a share"
    );
}
