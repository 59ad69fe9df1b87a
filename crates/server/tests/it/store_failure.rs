//! A store that refuses commits (a full disk): what it refused must not run, what it accepted must
//! not be lost, and the hub must recover by itself when space returns.

use hive_proto::api::TaskStatus;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_client::worker::Outcome;
use hive_proto::protocol::Assignment;
use serde_json::json;

use crate::util::*;

/// A batch of 200 tasks whose payloads carry the numbers `from..from + 200` (and some padding, so
/// that a batch needs fresh pages).
fn batch(from: u64) -> serde_json::Value {
    let pad = "x".repeat(2_000);
    let tasks: Vec<_> = (from..from + 200)
        .map(|n| json!({"capability": "disk", "payload": {"n": n, "pad": pad}, "timeout_ms": 2000}))
        .collect();
    json!({ "tasks": tasks })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_a_full_disk_refused_never_runs_and_the_hub_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount(24 << 20) else {
        return;
    };
    let data = disk.path().join("data");
    let t = start_hub_with(|c| c.data_dir = data).await;
    let executed: Arc<Mutex<Vec<u64>>> = Arc::default();
    let seen = executed.clone();
    let _worker = spawn_worker(&t.url, &["disk"], 16, move |task: Assignment| {
        let seen = seen.clone();
        async move {
            let payload: serde_json::Value = serde_json::from_str(task.payload.get()).unwrap();
            seen.lock().unwrap().push(payload["n"].as_u64().unwrap());
            Outcome::json(&payload["n"])
        }
    });
    let http = http();
    let post = |from: u64| {
        http.post(format!("{}/api/v1/tasks/batch", t.url))
            .json(&batch(from))
            .send()
    };

    // Accepted before the disk fills.
    let mut accepted: HashMap<String, u64> = HashMap::new();
    let mut next = 0;
    let first: serde_json::Value = post(next).await.unwrap().json().await.unwrap();
    for (i, id) in first["ids"].as_array().unwrap().iter().enumerate() {
        accepted.insert(id.as_str().unwrap().to_string(), next + i as u64);
    }
    next += 200;
    // Those run and their results are committed first: a result committed while the disk is
    // full can succeed (it fits in the write-ahead log's file as it is), and a commit that
    // succeeds makes the hub ready again, whatever the check below expects.
    eventually(
        "the first batch's results committed",
        Duration::from_secs(60),
        || async {
            let status = t.client.status().await.ok()?;
            (status.tasks.get("succeeded") == Some(&200)).then_some(())
        },
    )
    .await;

    let filler = disk.fill();
    let mut refused: BTreeSet<u64> = BTreeSet::new();
    let mut refusals = 0;
    for _ in 0..40 {
        let response = post(next).await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").cloned();
        let body: serde_json::Value = response.json().await.unwrap();
        match status {
            201 => {
                for (i, id) in body["ids"].as_array().unwrap().iter().enumerate() {
                    accepted.insert(id.as_str().unwrap().to_string(), next + i as u64);
                }
            }
            503 => {
                assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
                assert!(retry_after.is_some(), "a 503 says when to try again");
                refused.extend(next..next + 200);
                refusals += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
        next += 200;
        if refusals == 3 {
            break;
        }
    }
    assert_eq!(refusals, 3, "the full disk refused work");
    let ready = http.get(format!("{}/readyz", t.url)).send().await.unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "not ready while the store refuses"
    );

    // Space returns: the hub takes work again by itself.
    std::fs::remove_file(filler).unwrap();
    let ids = eventually(
        "a batch accepted again",
        Duration::from_secs(30),
        || async {
            let response = post(next).await.ok()?;
            if response.status().as_u16() != 201 {
                return None;
            }
            let body: serde_json::Value = response.json().await.ok()?;
            Some(body["ids"].as_array()?.clone())
        },
    )
    .await;
    for (i, id) in ids.iter().enumerate() {
        accepted.insert(id.as_str().unwrap().to_string(), next + i as u64);
    }

    for (id, n) in &accepted {
        let done = finished(&t.client, id).await;
        assert_eq!(done.status, TaskStatus::Succeeded, "task {n}");
        assert_eq!(done.result.unwrap().get(), n.to_string());
    }
    let executed: BTreeSet<u64> = executed.lock().unwrap().iter().copied().collect();
    let wanted: BTreeSet<u64> = accepted.values().copied().collect();
    assert_eq!(executed, wanted, "exactly the accepted tasks ran");
    assert!(executed.is_disjoint(&refused));
    let status = t.client.status().await.unwrap();
    let stored: u64 = status.tasks.values().sum();
    assert_eq!(
        stored,
        accepted.len() as u64,
        "the store holds what it acknowledged"
    );
    assert!(status.queue_depth.values().all(|n| *n == 0));
    t.hub.shutdown().await;
}
