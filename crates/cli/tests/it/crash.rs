//! Crash safety: tasks are submitted while workers run, the hub is killed with SIGKILL and
//! restarted on the same data directory. Every task that got a 2xx must exist and finish exactly
//! once (one successful attempt on record), with the right output.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hive_client::worker::{Outcome, run_worker};
use hive_client::{HubClient, WorkerOptions};
use hive_proto::RawValue;
use hive_proto::api::NewTask;
use hive_proto::protocol::Assignment;

use crate::survival::{Acked, each_succeeded_once, submitters, until_idle};
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

    let acked = Acked::default();
    let submitters = submitters(&url, &acked, TOTAL, new_task);

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
    until_idle(&client, Duration::from_secs(240)).await;
    each_succeeded_once(&client, &acked, TOTAL).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    assert!(hub.terminate().await.success());
}

/// A task running when the hub is killed with SIGKILL keeps its attempt: the worker reconnects
/// to the restarted hub naming the attempt it holds, the hub re-binds the lease, and the result
/// counts. Without that the task would wait out its ten-minute lease and run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_running_through_a_kill_9_is_re_attached_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut hub = HubProcess::start(dir.path(), port).await;
    let url = hub.url.clone();

    let (release, released) = tokio::sync::watch::channel(false);
    let (started, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let options = WorkerOptions {
        max_reconnect_delay: Duration::from_millis(200),
        ..WorkerOptions::new(&url, &["long"], 1)
    };
    let executor = Arc::new(move |task: Assignment| {
        let mut released = released.clone();
        let started = started.clone();
        async move {
            let _ = started.send(task.attempt);
            let _ = released.wait_for(|r| *r).await;
            Outcome::Success(task.payload)
        }
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_worker(options, executor, async move {
        let _ = stopped.await;
    }));

    let client = HubClient::new(&url);
    let task = client
        .submit(&NewTask {
            payload: Some(RawValue::from_string("\"kept\"".into()).unwrap()),
            // Far longer than the test may take: only re-attaching lets it finish in time.
            timeout_ms: Some(600_000),
            ..NewTask::new("long")
        })
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), started_rx.recv())
        .await
        .expect("the task is assigned (bounded against hanging)");
    assert_eq!(first, Some(1), "the first attempt runs");

    hub.kill_9().await;
    let hub = HubProcess::start(dir.path(), port).await;
    // The worker re-attaches after it reconnects; a result sent before that waits for the
    // connection, so releasing now is as good as later.
    release.send(true).unwrap();
    let mut done = client
        .wait(&task.id, Duration::from_secs(30))
        .await
        .unwrap();
    for _ in 0..3 {
        if done.status != hive_proto::api::TaskStatus::Running {
            break;
        }
        done = client
            .wait(&task.id, Duration::from_secs(30))
            .await
            .unwrap();
    }
    assert_eq!(done.status, hive_proto::api::TaskStatus::Succeeded);
    assert_eq!(done.result.unwrap().get(), "\"kept\"");
    assert_eq!(done.attempts.len(), 1, "re-attached: {:?}", done.attempts);
    assert!(
        started_rx.try_recv().is_err(),
        "the task was not offered again"
    );
    drop(stop);
    let _ = tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker stops (bounded against hanging)");
    assert!(hub.terminate().await.success());
}
