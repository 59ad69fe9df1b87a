//! The life of tasks: routing to workers, retries, leases, dependencies, idempotency, cancel,
//! drain, and recovery across a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_client::worker::{Outcome, WorkerExit};
use hive_proto::RawValue;
use hive_proto::api::{AgentState, AttemptOutcome, NewTask, TaskStatus};
use hive_proto::protocol::Assignment;
use tokio::sync::mpsc;

use crate::util::*;

fn task(capability: &str, payload: &str) -> NewTask {
    NewTask {
        payload: Some(RawValue::from_string(payload.into()).unwrap()),
        ..NewTask::new(capability)
    }
}

#[tokio::test]
async fn a_worker_that_disconnects_mid_task_loses_it_to_another_after_the_lease() {
    let t = start_hub().await;
    let (got, mut got_rx) = mpsc::unbounded_channel();
    let hanging = spawn_worker(&t.url, &["slow"], 1, move |task: Assignment| {
        let got = got.clone();
        async move {
            let _ = got.send(task.task_id);
            std::future::pending::<Outcome>().await
        }
    });
    let submitted = t
        .client
        .submit(&NewTask {
            timeout_ms: Some(300),
            backoff_ms: Some(10),
            ..task("slow", r#"{"n":1}"#)
        })
        .await
        .unwrap();
    assert_eq!(got_rx.recv().await.unwrap(), submitted.id);
    hanging.kill().await;
    let _helper = spawn_worker(&t.url, &["slow"], 1, echo());

    let done = finished(&t.client, &submitted.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.result.unwrap().get(), r#"{"n":1}"#);
    assert_eq!(done.attempts.len(), 2);
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert_eq!(done.attempts[1].outcome, Some(AttemptOutcome::Succeeded));
    assert_ne!(done.attempts[0].agent_id, done.attempts[1].agent_id);
}

#[tokio::test]
async fn a_task_that_always_fails_ends_failed_after_exactly_max_attempts() {
    let t = start_hub().await;
    let _w = spawn_worker(&t.url, &["flaky"], 2, |_task: Assignment| async {
        Outcome::failure("disk on fire", true)
    });
    let submitted = t
        .client
        .submit(&NewTask {
            max_attempts: Some(4),
            backoff_ms: Some(5),
            ..NewTask::new("flaky")
        })
        .await
        .unwrap();
    let done = finished(&t.client, &submitted.id).await;
    assert_eq!(done.status, TaskStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("disk on fire"));
    assert_eq!(done.attempts.len(), 4);
    assert!(
        done.attempts
            .iter()
            .all(|a| a.outcome == Some(AttemptOutcome::Failed))
    );
}

#[tokio::test]
async fn a_dependency_chain_runs_in_order_and_a_failed_parent_fails_its_children() {
    let t = start_hub().await;
    let a = t.client.submit(&task("step", r#""a""#)).await.unwrap();
    let b = t
        .client
        .submit(&NewTask {
            depends_on: Some(vec![a.id.clone()]),
            ..task("step", r#""b""#)
        })
        .await
        .unwrap();
    let c = t
        .client
        .submit(&NewTask {
            depends_on: Some(vec![b.id.clone()]),
            ..task("step", r#""c""#)
        })
        .await
        .unwrap();
    assert_eq!(
        (b.status.as_str(), c.status.as_str()),
        ("waiting", "waiting")
    );

    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let _w = spawn_worker(&t.url, &["step"], 4, move |task: Assignment| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(task.payload.get().to_string());
            if task.payload.get() == r#""fail""# {
                return Outcome::failure("parent broke", false);
            }
            Outcome::Success(task.payload)
        }
    });
    let done_c = finished(&t.client, &c.id).await;
    assert_eq!(done_c.status, TaskStatus::Succeeded);
    assert_eq!(*order.lock().unwrap(), vec![r#""a""#, r#""b""#, r#""c""#]);
    let done_a = t.client.task(&a.id).await.unwrap();
    let done_b = t.client.task(&b.id).await.unwrap();
    assert!(done_b.attempts[0].started_at >= *done_a.attempts[0].ended_at.as_ref().unwrap());

    let p = t
        .client
        .submit(&NewTask {
            max_attempts: Some(1),
            ..task("step", r#""fail""#)
        })
        .await
        .unwrap();
    let q = t
        .client
        .submit(&NewTask {
            depends_on: Some(vec![p.id.clone()]),
            ..task("step", r#""q""#)
        })
        .await
        .unwrap();
    let r = t
        .client
        .submit(&NewTask {
            depends_on: Some(vec![q.id.clone()]),
            ..task("step", r#""r""#)
        })
        .await
        .unwrap();
    let done_r = finished(&t.client, &r.id).await;
    assert_eq!(
        t.client.task(&p.id).await.unwrap().status,
        TaskStatus::Failed
    );
    let done_q = t.client.task(&q.id).await.unwrap();
    assert_eq!(done_q.status, TaskStatus::Failed);
    assert!(done_q.error.unwrap().contains(&p.id));
    assert_eq!(done_r.status, TaskStatus::Failed);
    assert!(
        done_q.attempts.is_empty() && done_r.attempts.is_empty(),
        "children never ran"
    );
    // A child of an already failed task fails at once.
    let late = t
        .client
        .submit(&NewTask {
            depends_on: Some(vec![p.id.clone()]),
            ..task("step", "1")
        })
        .await
        .unwrap();
    assert_eq!(late.status, TaskStatus::Failed);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_task() {
    let t = start_hub().await;
    let new = NewTask {
        idempotency_key: Some("order-42".into()),
        ..task("pay", "1")
    };
    let first = t.client.submit(&new).await.unwrap();
    let again = t.client.submit(&new).await.unwrap();
    assert_eq!(first.id, again.id);
    let ids = t
        .client
        .submit_batch(vec![new.clone(), task("pay", "2")])
        .await
        .unwrap();
    assert_eq!(ids[0], first.id);
    assert_ne!(ids[1], first.id);
    // Over raw HTTP: 201 the first time, 200 after.
    let http = http();
    let body = r#"{"capability":"pay","idempotency_key":"k2"}"#;
    let post = || {
        http.post(format!("{}/api/v1/tasks", t.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 201);
    assert_eq!(post().await.unwrap().status(), 200);
    let status = t.client.status().await.unwrap();
    assert_eq!(status.tasks["queued"], 3);
}

/// Keys and parents of tasks that have left the scheduler are read from the store off the
/// actor's path, concurrently with other submits; each answer is still exact.
#[tokio::test]
async fn keys_and_parents_of_finished_tasks_are_read_from_the_store() {
    let t = start_hub().await;
    let _w = spawn_worker(&t.url, &["pay"], 4, echo());
    let keyed = NewTask {
        idempotency_key: Some("order-7".into()),
        ..task("pay", "7")
    };
    let first = t.client.submit(&keyed).await.unwrap();
    assert_eq!(
        finished(&t.client, &first.id).await.status,
        TaskStatus::Succeeded
    );
    // The task has left the scheduler: its key, its end and its status come from the store,
    // while plain submits go on beside them.
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..40 {
        let client = t.client.clone();
        let (keyed, parent) = (keyed.clone(), first.id.clone());
        requests.spawn(async move {
            match n % 3 {
                0 => {
                    let again = client.submit(&keyed).await.unwrap();
                    assert_eq!((again.id, again.status.as_str()), (parent, "succeeded"));
                    None
                }
                1 => {
                    let child = NewTask {
                        depends_on: Some(vec![parent]),
                        ..task("pay", "8")
                    };
                    Some(client.submit(&child).await.unwrap().id)
                }
                _ => Some(client.submit(&task("pay", "9")).await.unwrap().id),
            }
        });
    }
    let ids: Vec<String> = requests.join_all().await.into_iter().flatten().collect();
    for id in &ids {
        let done = finished(&t.client, id).await;
        assert_eq!(done.status, TaskStatus::Succeeded, "{id}");
    }
    let refused = t.client.cancel(&first.id).await.unwrap_err();
    assert!(
        matches!(&refused, hive_client::ClientError::Api { status, .. } if status.as_u16() == 409),
        "{refused}"
    );
    let unknown = t
        .client
        .cancel("0190f1a2-0000-7000-8000-000000000000")
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, hive_client::ClientError::Api { status, .. } if status.as_u16() == 404),
        "{unknown}"
    );
    let missing = NewTask {
        depends_on: Some(vec!["0190f1a2-0000-7000-8000-000000000001".into()]),
        ..task("pay", "1")
    };
    let refused = t.client.submit(&missing).await.unwrap_err();
    assert!(refused.to_string().contains("does not exist"), "{refused}");
}

#[tokio::test]
async fn cancelling_stops_a_queued_and_a_running_task() {
    let t = start_hub().await;
    let queued = t.client.submit(&NewTask::new("nobody")).await.unwrap();
    let cancelled = t.client.cancel(&queued.id).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);

    let (got, mut got_rx) = mpsc::unbounded_channel();
    let _w = spawn_worker(&t.url, &["long"], 1, move |task: Assignment| {
        let got = got.clone();
        async move {
            let _ = got.send(task.task_id);
            std::future::pending::<Outcome>().await
        }
    });
    let running = t.client.submit(&NewTask::new("long")).await.unwrap();
    got_rx.recv().await.unwrap();
    let cancelled = t.client.cancel(&running.id).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert_eq!(
        cancelled.attempts[0].outcome,
        Some(AttemptOutcome::Cancelled)
    );
    // The slot it held is free again.
    let next = t.client.submit(&NewTask::new("long")).await.unwrap();
    assert_eq!(got_rx.recv().await.unwrap(), next.id);
}

#[tokio::test]
async fn a_drained_worker_finishes_and_exits() {
    let t = start_hub().await;
    let worker = spawn_worker(&t.url, &["d"], 2, echo());
    let agent = eventually("the agent", Duration::from_secs(10), || async {
        t.client
            .agents()
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.state == AgentState::Idle)
    })
    .await;
    let drained = t.client.drain(&agent.id).await.unwrap();
    assert_eq!(drained.state, AgentState::Draining);
    assert_eq!(worker.handle.await.unwrap().unwrap(), WorkerExit::Drained);
    let queued = t.client.submit(&NewTask::new("d")).await.unwrap();
    assert_eq!(
        t.client.task(&queued.id).await.unwrap().status,
        TaskStatus::Queued
    );
    eventually("the agent offline", Duration::from_secs(10), || async {
        t.client
            .agents()
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.id == agent.id && a.state == AgentState::Offline)
    })
    .await;
}

#[tokio::test]
async fn tasks_accepted_before_a_restart_run_after_it() {
    let t = start_hub().await;
    let ids = t
        .client
        .submit_batch((0..50).map(|i| task("later", &i.to_string())).collect())
        .await
        .unwrap();
    let t = restart(t).await;
    assert_eq!(t.hub.recovered(), 50);
    let _w = spawn_worker(&t.url, &["later"], 8, echo());
    for (i, id) in ids.iter().enumerate() {
        let done = finished(&t.client, id).await;
        assert_eq!(done.status, TaskStatus::Succeeded);
        assert_eq!(done.result.unwrap().get(), i.to_string());
    }
    t.hub.shutdown().await;
}

#[tokio::test]
/// Under the default (learned) policy, agents expected to do equally well (here two of one
/// name, nothing learned yet) get the work by load, as under least-loaded.
async fn equal_agents_share_the_tasks_by_load() {
    let t = start_hub().await;
    let (got, mut got_rx) = mpsc::unbounded_channel();
    let hold = |got: mpsc::UnboundedSender<String>, name: &'static str| {
        move |_task: Assignment| {
            let got = got.clone();
            async move {
                let _ = got.send(name.to_string());
                std::future::pending::<Outcome>().await
            }
        }
    };
    let _a = spawn_worker(&t.url, &["x"], 2, hold(got.clone(), "a"));
    let _b = spawn_worker(&t.url, &["x"], 2, hold(got.clone(), "b"));
    eventually("two agents", Duration::from_secs(10), || async {
        (t.client.agents().await.unwrap().len() == 2).then_some(())
    })
    .await;
    for _ in 0..4 {
        t.client.submit(&NewTask::new("x")).await.unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(got_rx.recv().await.unwrap());
    }
    seen.sort();
    assert_eq!(
        seen,
        vec!["a", "a", "b", "b"],
        "4 tasks over two 2-slot agents: 2 each"
    );
}

#[tokio::test]
async fn an_undone_drain_puts_the_agent_back_to_work() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let t = start_hub().await;
    let mut socket = ws(&t.url, "/ws/agent").await;
    let hello = serde_json::json!({"type": "hello", "name": "u", "capabilities": ["u"]});
    socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    let welcome = next_json(&mut socket).await;
    let id = welcome["agent_id"].as_str().unwrap().to_string();
    assert_eq!(
        t.client.drain(&id).await.unwrap().state,
        AgentState::Draining
    );
    assert_eq!(next_json(&mut socket).await["type"], "drain");
    let queued = t.client.submit(&NewTask::new("u")).await.unwrap();
    assert_eq!(queued.status, TaskStatus::Queued);
    assert_eq!(t.client.undrain(&id).await.unwrap().state, AgentState::Busy);
    assert_eq!(next_json(&mut socket).await["type"], "resume");
    let assign = next_json(&mut socket).await;
    assert_eq!(assign["tasks"][0]["task_id"], queued.id.as_str());
    let unknown = t
        .client
        .undrain("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("404"), "{unknown}");
}

/// A hub that holds a wait for less than the client asks: the Rust client waits in polls of the
/// hub's bound (named in its refusal) for as long as it was asked, instead of failing.
#[tokio::test]
async fn a_wait_longer_than_the_hub_allows_is_made_of_polls_of_its_bound() {
    let t = start_hub_with(|c| c.max_wait = Duration::from_secs(1)).await;
    let id = t.client.submit(&NewTask::new("nobody")).await.unwrap().id;
    let started = std::time::Instant::now();
    let task = t
        .client
        .wait(&id, Duration::from_millis(2_500))
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Queued, "no agent serves it");
    // Not one poll of the bound and back: the whole wait (a lower bound only, which a slow
    // machine cannot break).
    assert!(
        started.elapsed() >= Duration::from_millis(2_400),
        "{:?}",
        started.elapsed()
    );
    t.hub.shutdown().await;
}

/// A hub that holds no wait at all (a bound of 0, which `hive serve`'s config no longer allows
/// but an API hub may have): the wait still ends when asked, polling at a tenth of a second.
#[tokio::test]
async fn a_wait_on_a_hub_that_holds_none_ends_when_asked() {
    let t = start_hub_with(|c| c.max_wait = Duration::ZERO).await;
    let id = t.client.submit(&NewTask::new("nobody")).await.unwrap().id;
    let task = tokio::time::timeout(
        Duration::from_secs(60),
        t.client.wait(&id, Duration::from_millis(500)),
    )
    .await
    .expect("the wait ends")
    .unwrap();
    assert_eq!(task.status, TaskStatus::Queued);
    t.hub.shutdown().await;
}
