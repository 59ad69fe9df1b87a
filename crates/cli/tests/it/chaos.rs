//! Chaos: tens of thousands of tasks while the hub is killed with SIGKILL three times and
//! workers are killed (their connections and running tasks dropped mid-flight) and replaced every
//! few hundred milliseconds. Every task that got a 2xx must finish exactly once (one successful
//! attempt on record) with the right output, and none may be left stuck.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hive_client::worker::{Outcome, run_worker};
use hive_client::{HubClient, WorkerOptions};
use hive_proto::RawValue;
use hive_proto::api::NewTask;
use hive_proto::protocol::Assignment;
use tokio::task::JoinHandle;

use crate::survival::{Acked, each_succeeded_once, submitters, until_idle};
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

    let acked = Acked::default();
    let submitters = submitters(&url, &acked, TOTAL, new_task);

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
    until_idle(&client, Duration::from_secs(240)).await;
    done.store(true, Ordering::Relaxed);
    let killed = churn.await.unwrap();
    assert!(killed >= 3, "workers were killed along the way ({killed})");

    each_succeeded_once(&client, &acked, TOTAL).await;
    assert!(hub.terminate().await.success());
}
