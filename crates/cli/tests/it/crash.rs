//! Crash safety: tasks are submitted while workers run, the hub is killed with SIGKILL and
//! restarted on the same data directory. Every task that got a 2xx must exist and finish exactly
//! once (one successful attempt on record), with the right output.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_client::http::ListQuery;
use hive_client::worker::{Outcome, run_worker};
use hive_client::{HubClient, WorkerOptions};
use hive_proto::RawValue;
use hive_proto::api::NewTask;
use hive_proto::protocol::Assignment;

use crate::util::*;

const TOTAL: usize = 20_000;
const KILL_AFTER: usize = 8_000;

fn new_task(n: usize) -> NewTask {
    NewTask {
        payload: Some(RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap()),
        // Short leases, so attempts cut short by the crash are retried soon after the restart.
        timeout_ms: Some(2_000),
        backoff_ms: Some(20),
        ..NewTask::new("crash")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_task_survives_kill_9_and_finishes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut hub = HubProcess::start(dir.path(), port).await;
    let url = hub.url.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let stop = stop.clone();
        let options = WorkerOptions {
            max_reconnect_delay: Duration::from_millis(200),
            ..WorkerOptions::new(&url, &["crash"], 16)
        };
        let executor = Arc::new(|task: Assignment| async move { Outcome::Success(task.payload) });
        workers.push(tokio::spawn(run_worker(options, executor, async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })));
    }

    // Acknowledged tasks: id -> the payload number.
    let acked: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut submitters = Vec::new();
    for s in 0..4usize {
        let acked = acked.clone();
        let client = HubClient::new(&url);
        submitters.push(tokio::spawn(async move {
            let mut next = s * 1_000_000;
            while acked.lock().unwrap().len() < TOTAL {
                // Three submitters send batches of 100, one sends single tasks.
                let numbers: Vec<usize> = (next..next + if s == 0 { 1 } else { 100 }).collect();
                next += numbers.len();
                let outcome = if s == 0 {
                    client
                        .submit(&new_task(numbers[0]))
                        .await
                        .map(|t| vec![t.id])
                } else {
                    client
                        .submit_batch(numbers.iter().map(|n| new_task(*n)).collect())
                        .await
                };
                match outcome {
                    Ok(ids) => acked.lock().unwrap().extend(ids.into_iter().zip(numbers)),
                    // The hub is down: these were not acknowledged; try more later.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }

    while acked.lock().unwrap().len() < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hub.kill_9().await;
    let acked_at_kill = acked.lock().unwrap().len();
    assert!(acked_at_kill < TOTAL, "the kill came mid-stream");
    let hub = HubProcess::start(dir.path(), port).await;
    for submitter in submitters {
        submitter.await.unwrap();
    }

    let client = HubClient::new(&hub.url);
    let limit = Duration::from_secs(240);
    let started = std::time::Instant::now();
    loop {
        let status = client.status().await.unwrap();
        let active = status.tasks["waiting"] + status.tasks["queued"] + status.tasks["running"];
        if active == 0 {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "tasks still active after {limit:?}: {:?}",
            status.tasks
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut stored = HashMap::new();
    let mut cursor = None;
    loop {
        let page = client
            .tasks(&ListQuery {
                limit: Some(1000),
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        for task in page.items {
            stored.insert(task.id.clone(), task);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= TOTAL);
    for (id, n) in acked.iter() {
        let task = stored
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged task {id} is lost"));
        assert_eq!(task.status, "succeeded", "task {id}: {:?}", task.error);
        let successes = task
            .attempts
            .iter()
            .filter(|a| a.outcome.as_deref() == Some("succeeded"))
            .count();
        assert_eq!(successes, 1, "task {id} completed {successes} times");
        assert_eq!(
            task.result.as_ref().unwrap().get(),
            format!(r#"{{"n":{n}}}"#)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    assert!(hub.terminate().await.success());
}
