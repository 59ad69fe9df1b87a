//! Results flowing through task graphs, over real sockets: a task's assignment carries its
//! parents' results as `inputs`, in a map-reduce, with `on_parent_failure: "run"`, for a parent
//! that finished before the child was submitted, and across a restart.

use hive_client::worker::Outcome;
use hive_proto::RawValue;
use hive_proto::api::{NewTask, OnParentFailure, TaskStatus};
use hive_proto::protocol::Assignment;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::util::*;

fn task(capability: &str, payload: Value) -> NewTask {
    NewTask {
        payload: Some(RawValue::from_string(payload.to_string()).unwrap()),
        ..NewTask::new(capability)
    }
}

/// `square` returns its payload squared; `sum` adds its inputs, in the order they came, and
/// returns them too.
async fn map_reduce(task: Assignment) -> Outcome {
    let reply = |value: Value| Outcome::Success(RawValue::from_string(value.to_string()).unwrap());
    match task.capability.as_str() {
        "square" => {
            let n: i64 = serde_json::from_str(task.payload.get()).unwrap();
            reply(json!(n * n))
        }
        "sum" => {
            let text = task.inputs.as_ref().expect("inputs").get();
            let inputs: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
            let total: i64 = inputs.values().filter_map(Value::as_i64).sum();
            // serde_json's map sorts its keys: the order sent is read from the text.
            let mut order: Vec<&String> = inputs.keys().collect();
            order.sort_by_key(|id| text.find(id.as_str()));
            reply(json!({ "sum": total, "order": order, "failed": task.failed_inputs }))
        }
        other => Outcome::failure(format!("no {other} here"), false),
    }
}

#[tokio::test]
async fn a_reducer_receives_the_results_of_the_tasks_it_depends_on() {
    let t = start_hub().await;
    let _w = spawn_worker(&t.url, &["square", "sum"], 4, map_reduce);
    let mut parents = Vec::new();
    for n in 1..=5 {
        parents.push(t.client.submit(&task("square", json!(n))).await.unwrap().id);
    }
    // Submitted in an order other than the ids', to see that `inputs` follows `depends_on`.
    parents.reverse();
    let reducer = t
        .client
        .submit(&NewTask {
            depends_on: Some(parents.clone()),
            ..task("sum", Value::Null)
        })
        .await
        .unwrap();
    let done = finished(&t.client, &reducer.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
    let result: Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
    assert_eq!(result["sum"], 55);
    assert_eq!(result["order"], json!(parents));
    assert_eq!(result["failed"], json!([]));

    // A parent that finished before its child was submitted is read back from the store.
    let late = t
        .client
        .submit(&NewTask {
            depends_on: Some(vec![parents[0].clone()]),
            ..task("sum", Value::Null)
        })
        .await
        .unwrap();
    let done = finished(&t.client, &late.id).await;
    let result: Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
    assert_eq!(result["sum"], 25);
    t.hub.shutdown().await;
}

#[tokio::test]
async fn on_parent_failure_run_hands_the_reducer_the_failed_parents_errors() {
    let t = start_hub().await;
    let _w = spawn_worker(&t.url, &["square", "sum"], 4, map_reduce);
    let good = t.client.submit(&task("square", json!(3))).await.unwrap().id;
    let bad = t
        .client
        .submit(&NewTask {
            max_attempts: Some(1),
            ..task("cube", json!(2))
        })
        .await
        .unwrap()
        .id;
    let strict = t
        .client
        .submit(&NewTask {
            depends_on: Some(vec![good.clone(), bad.clone()]),
            ..task("sum", Value::Null)
        })
        .await
        .unwrap();
    let lenient = t
        .client
        .submit(&NewTask {
            depends_on: Some(vec![good.clone(), bad.clone()]),
            on_parent_failure: Some(OnParentFailure::Run),
            ..task("sum", Value::Null)
        })
        .await
        .unwrap();
    // Nothing offers `cube`: the bad parent fails once a worker for it refuses it.
    let _refuser = spawn_worker(&t.url, &["cube"], 1, map_reduce);
    let done = finished(&t.client, &lenient.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
    let result: Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
    assert_eq!(result["sum"], 9);
    assert_eq!(result["failed"], json!([bad]));
    let view = t.client.task(&lenient.id).await.unwrap();
    assert_eq!(view.on_parent_failure, OnParentFailure::Run);

    let failed = finished(&t.client, &strict.id).await;
    assert_eq!(failed.status, TaskStatus::Failed);
    assert!(
        failed.error.unwrap().contains(&bad),
        "the error names the parent"
    );
    assert!(failed.attempts.is_empty());
    t.hub.shutdown().await;
}

#[tokio::test]
async fn the_inputs_of_a_failed_parent_carry_its_status_and_error() {
    let t = start_hub().await;
    let (seen, mut seen_rx) = mpsc::unbounded_channel();
    let _w = spawn_worker(&t.url, &["step"], 2, move |task: Assignment| {
        let seen = seen.clone();
        async move {
            if task.payload.get() == "\"parent\"" {
                return Outcome::failure("no luck", false);
            }
            let _ = seen.send(task);
            Outcome::Success(RawValue::from_string("true".into()).unwrap())
        }
    });
    let parent = t
        .client
        .submit(&NewTask {
            max_attempts: Some(1),
            ..task("step", json!("parent"))
        })
        .await
        .unwrap()
        .id;
    t.client
        .submit(&NewTask {
            depends_on: Some(vec![parent.clone()]),
            on_parent_failure: Some(OnParentFailure::Run),
            ..task("step", json!("child"))
        })
        .await
        .unwrap();
    let child = seen_rx.recv().await.unwrap();
    let inputs: Value = serde_json::from_str(child.inputs.unwrap().get()).unwrap();
    assert_eq!(
        inputs,
        json!({ parent.clone(): { "status": "failed", "error": "no luck" } })
    );
    assert_eq!(child.failed_inputs, vec![parent]);
    t.hub.shutdown().await;
}

#[tokio::test]
async fn a_child_queued_across_a_restart_still_gets_its_inputs() {
    let t = start_hub().await;
    let parent = t.client.submit(&task("square", json!(7))).await.unwrap().id;
    let w = spawn_worker(&t.url, &["square"], 1, map_reduce);
    assert_eq!(
        finished(&t.client, &parent).await.status,
        TaskStatus::Succeeded
    );
    w.kill().await;
    // Nothing runs `sum` yet: the child stays queued through the restart.
    let child = t
        .client
        .submit(&NewTask {
            depends_on: Some(vec![parent]),
            ..task("sum", Value::Null)
        })
        .await
        .unwrap()
        .id;
    let t = restart(t).await;
    assert_eq!(t.hub.recovered(), 1);
    let _w = spawn_worker(&t.url, &["sum"], 1, map_reduce);
    let done = finished(&t.client, &child).await;
    let result: Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
    assert_eq!(result["sum"], 49);
    t.hub.shutdown().await;
}
