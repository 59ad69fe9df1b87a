//! A worker shutting down (SIGTERM for `hive worker`): it tells the hub it takes no more work,
//! finishes what runs within its grace period, and hands back what it cannot finish.

use std::sync::Arc;
use std::time::Duration;

use hive_client::WorkerOptions;
use hive_client::worker::{Outcome, WorkerExit, run_worker};
use hive_proto::api::{AgentState, NewTask, TaskStatus};
use hive_proto::protocol::Assignment;
use tokio::sync::{mpsc, oneshot, watch};

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_finishes_its_task_takes_no_more_and_hands_back_the_rest() {
    let t = start_hub().await;
    let (release, released) = watch::channel(false);
    let (got, mut got_rx) = mpsc::unbounded_channel();
    let mut options = WorkerOptions::new(&t.url, &["job"], 2);
    // Long enough that the quick task is surely released within it; the stuck one waits it out.
    options.grace = Duration::from_secs(3);
    let executor = move |task: Assignment| {
        let mut released = released.clone();
        let got = got.clone();
        async move {
            let _ = got.send(task.payload.get().to_string());
            if task.payload.get() == "\"quick\"" {
                let _ = released.wait_for(|r| *r).await;
                return Outcome::json(&"done");
            }
            std::future::pending().await
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(run_worker(options, Arc::new(executor), async move {
        let _ = stopped.await;
    }));
    let submit = |payload: &str| NewTask {
        payload: Some(hive_proto::RawValue::from_string(payload.into()).unwrap()),
        timeout_ms: Some(600_000),
        max_attempts: Some(1),
        ..NewTask::new("job")
    };
    let quick = t.client.submit(&submit("\"quick\"")).await.unwrap();
    let stuck = t.client.submit(&submit("\"stuck\"")).await.unwrap();
    got_rx.recv().await.unwrap();
    got_rx.recv().await.unwrap();

    stop.send(()).unwrap();
    eventually("the agent draining", Duration::from_secs(10), || async {
        let agents = t.client.agents().await.ok()?;
        (agents[0].state == AgentState::Draining).then_some(())
    })
    .await;
    // Not offered to a worker that is stopping.
    let later = t.client.submit(&submit("\"later\"")).await.unwrap();
    release.send(true).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker stops within its grace period")
        .unwrap()
        .unwrap();
    assert_eq!(exit, WorkerExit::Shutdown);

    let done = finished(&t.client, &quick.id).await;
    assert_eq!(
        done.status,
        TaskStatus::Succeeded,
        "finished within the grace period"
    );
    let done = finished(&t.client, &stuck.id).await;
    assert_eq!(
        done.status,
        TaskStatus::Failed,
        "handed back, not left to its lease"
    );
    assert!(done.error.unwrap().contains("shut down"));
    let later = t.client.task(&later.id).await.unwrap();
    assert_eq!(later.status, TaskStatus::Queued);
    assert!(later.attempts.is_empty());
}

/// A task assigned just before its worker's `drain` reached the hub is given back with
/// `release`: it runs elsewhere with its whole `max_attempts`, and a restart keeps the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_released_unstarted_keeps_its_attempts_across_a_restart() {
    use hive_proto::api::AttemptOutcome;
    use serde_json::json;

    let t = start_hub().await;
    let mut stopping = ws(&t.url, "/ws/agent").await;
    let hello = json!({"type":"hello","name":"stopping","capabilities":["job"],"slots":1});
    send(&mut stopping, hello).await;
    assert_eq!(next_json(&mut stopping).await["type"], "welcome");
    let task = t
        .client
        .submit(&NewTask {
            max_attempts: Some(2),
            backoff_ms: Some(0),
            ..NewTask::new("job")
        })
        .await
        .unwrap();
    let assign = next_json(&mut stopping).await;
    assert_eq!(assign["tasks"][0]["attempt"], 1);
    send(&mut stopping, json!({"type":"drain"})).await;
    let release = json!({"type":"release","task_id":task.id,"attempt":1});
    send(&mut stopping, release).await;
    let released = eventually("the attempt released", Duration::from_secs(10), || async {
        let task = t.client.task(&task.id).await.ok()?;
        (task.status == TaskStatus::Queued).then_some(task)
    })
    .await;
    assert_eq!(released.attempts[0].outcome, Some(AttemptOutcome::Released));
    drop(stopping);

    // After a restart, a worker that fails the task once and then succeeds: of its two
    // attempts, the failure is the first counted, so a second one runs.
    let t = restart(t).await;
    let executor = |task: Assignment| async move {
        if task.attempt == 2 {
            Outcome::failure("first counted attempt fails", true)
        } else {
            Outcome::json(&"done")
        }
    };
    let _worker = spawn_worker(&t.url, &["job"], 1, executor);
    let done = finished(&t.client, &task.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
    let outcomes: Vec<_> = done.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Some(AttemptOutcome::Released),
            Some(AttemptOutcome::Failed),
            Some(AttemptOutcome::Succeeded)
        ]
    );
}
