//! Chaos: tens of thousands of tasks while the hub is killed with SIGKILL three times and
//! workers are killed (their connections and running tasks dropped mid-flight) and replaced every
//! few hundred milliseconds. Every task that got a 2xx must finish exactly once (one successful
//! attempt on record) with the right output, and none may be left stuck.

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
use tokio::task::JoinHandle;

use crate::util::*;

const TOTAL: usize = 30_000;
/// The hub is killed when this many tasks have been acknowledged.
const KILLS_AT: [usize; 3] = [6_000, 14_000, 22_000];

fn new_task(n: usize) -> NewTask {
    NewTask {
        payload: Some(RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap()),
        // Short leases: attempts of killed workers come back soon.
        timeout_ms: Some(2_000),
        backoff_ms: Some(20),
        max_attempts: Some(100),
        ..NewTask::new("chaos")
    }
}

fn worker(url: &str, n: usize) -> JoinHandle<()> {
    let options = WorkerOptions {
        name: format!("chaos-{n}"),
        max_reconnect_delay: Duration::from_millis(200),
        ..WorkerOptions::new(url, &["chaos"], 16)
    };
    let executor = Arc::new(|task: Assignment| async move {
        // A little work, so that kills find tasks running.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Outcome::Success(task.payload)
    });
    tokio::spawn(async move {
        let _ = run_worker(options, executor, std::future::pending()).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_task_finishes_once_through_hub_and_worker_kills() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut hub = HubProcess::start(dir.path(), port).await;
    let url = hub.url.clone();

    // Three workers; every 300 ms one is killed (aborted: no goodbye) and a new one started.
    let done = Arc::new(AtomicBool::new(false));
    let churn = {
        let (url, done) = (url.clone(), done.clone());
        tokio::spawn(async move {
            let mut workers: Vec<JoinHandle<()>> = (0..3).map(|n| worker(&url, n)).collect();
            let mut next = 3;
            let mut killed = 0;
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let victim = next % workers.len();
                workers[victim].abort();
                workers[victim] = worker(&url, next);
                next += 1;
                killed += 1;
            }
            for w in workers {
                w.abort();
            }
            killed
        })
    };

    let acked: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut submitters = Vec::new();
    for s in 0..4usize {
        let acked = acked.clone();
        let client = HubClient::new(&url);
        submitters.push(tokio::spawn(async move {
            let mut next = s * 1_000_000;
            while acked.lock().unwrap().len() < TOTAL {
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
                    // The hub is down: not acknowledged; try more later.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }

    for kill_at in KILLS_AT {
        while acked.lock().unwrap().len() < kill_at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        hub.kill_9().await;
        hub = HubProcess::start(dir.path(), port).await;
    }
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
            "tasks stuck after {limit:?}: {:?}",
            status.tasks
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, Ordering::Relaxed);
    let killed = churn.await.unwrap();
    assert!(killed >= 3, "workers were killed along the way ({killed})");

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
    assert!(hub.terminate().await.success());
}
