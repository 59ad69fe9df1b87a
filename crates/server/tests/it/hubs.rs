//! Several hubs on one PostgreSQL schema, in one process: work submitted on one hub runs on
//! another's agents, the list of hubs, a hub that stops hands its work on. (Killing a hub with
//! -9 needs processes: `crates/cli/tests/it/hubs.rs`.)

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hive_client::worker::Outcome;
use hive_proto::api::{HubList, LeaseState, NewSwarmMessage, NewTask, StoreKind, TaskStatus};
use hive_proto::protocol::Assignment;
use hive_store::postgres::scratch::{ScratchSchema, query_on};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::postgres::hub_named;
use crate::swarm::{member, senders};
use crate::util::*;

fn task(capability: &str, n: usize) -> NewTask {
    NewTask {
        payload: Some(hive_proto::RawValue::from_string(json!(n).to_string()).unwrap()),
        ..NewTask::new(capability)
    }
}

/// `hive_hub_tasks_moved_total{how}` of a hub.
async fn moved(t: &TestHub, how: &str) -> u64 {
    let text = metrics_text(&t.url).await;
    let sample = format!("hive_hub_tasks_moved_total{{how=\"{how}\"}} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&sample))
        .unwrap_or_else(|| panic!("{sample} missing from /metrics"));
    line[sample.len()..].trim().parse().unwrap()
}

async fn hubs(t: &TestHub) -> HubList {
    t.client.hubs().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_submitted_on_one_hub_runs_on_the_agents_of_another() {
    let Some(database) = ScratchSchema::for_test("work_submitted_on_one_hub") else {
        return;
    };
    let a = hub_named(&database, "a").await;
    let b = hub_named(&database, "b").await;
    // Only b has an agent for `far`, and a worker that says where it ran.
    let _far = spawn_named_worker(&b.url, "on-b", &["far"], |task: Assignment| async move {
        Outcome::Success(task.payload)
    });
    let ids = a
        .client
        .submit_batch((0..300).map(|n| task("far", n)).collect())
        .await
        .unwrap();
    let mut ran = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let done = finished(&a.client, id).await;
        assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
        assert_eq!(done.result.unwrap().get(), n.to_string());
        ran.push(
            done.attempts
                .iter()
                .filter_map(|at| at.agent_id.clone())
                .collect::<Vec<_>>(),
        );
    }
    let on_b: Vec<String> = b
        .client
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert!(
        ran.iter().all(|r| *r == on_b),
        "one attempt each, on b's agent"
    );
    // a pooled all 300 (no agent of its own), b claimed them.
    assert_eq!(moved(&a, "released").await, 300);
    assert_eq!(moved(&b, "claimed").await, 300);
    assert_eq!(moved(&a, "claimed").await, 0);

    let list = hubs(&a).await;
    assert_eq!(list.store, StoreKind::Postgres);
    let names: HashSet<(String, bool, String)> = list
        .items
        .iter()
        .map(|h| (h.name.clone(), h.this, h.lease.to_string()))
        .collect();
    assert_eq!(
        names,
        HashSet::from([
            ("a".into(), true, "held".into()),
            ("b".into(), false, "held".into())
        ])
    );
    let b_row = list.items.iter().find(|h| h.name == "b").unwrap();
    assert_eq!(b_row.address, b.hub.addr().to_string());
    let b_load = eventually("b reports its agent", Duration::from_secs(10), || async {
        let list = hubs(&a).await;
        let b = list.items.into_iter().find(|h| h.name == "b")?;
        (b.agents == 1).then_some(b)
    })
    .await;
    assert_eq!(b_load.slots, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_stops_hands_its_queued_work_to_the_others() {
    let Some(database) = ScratchSchema::for_test("a_hub_that_stops_hands") else {
        return;
    };
    let a = hub_named(&database, "a").await;
    // Queued on a, alone: nobody else could take them.
    let ids = a
        .client
        .submit_batch((0..50).map(|n| task("later", n)).collect())
        .await
        .unwrap();
    assert_eq!(hubs(&a).await.pooled, 0);
    a.hub.shutdown().await;
    let b = hub_named(&database, "b").await;
    assert_eq!(b.hub.recovered(), 50, "b took a's tasks over as it started");
    let _later = spawn_worker(&b.url, &["later"], 8, echo());
    for id in &ids {
        assert_eq!(finished(&b.client, id).await.status, TaskStatus::Succeeded);
    }
    let list = hubs(&b).await;
    assert_eq!(list.items.len(), 1, "a's row went with its tasks: {list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_alone_in_sqlite_lists_itself() {
    let t = start_hub().await;
    let _w = spawn_worker(&t.url, &["x"], 3, echo());
    let list = eventually("the worker registered", Duration::from_secs(10), || async {
        let list = hubs(&t).await;
        (list.items[0].agents == 1).then_some(list)
    })
    .await;
    assert_eq!(list.store, StoreKind::Sqlite);
    assert_eq!(list.items.len(), 1);
    let me = &list.items[0];
    assert!(me.this && me.id.is_none() && me.lease == LeaseState::NoLease);
    assert_eq!(
        (me.slots, me.address.clone()),
        (3, t.hub.addr().to_string())
    );
}

/// An executor that holds each task until the test lets one go (or its cancel comes).
fn held(gate: &Arc<Semaphore>) -> impl hive_client::worker::Executor {
    let gate = gate.clone();
    move |task: Assignment| {
        let gate = gate.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            Outcome::Success(task.payload)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_waits_for_a_parent_another_hub_runs_and_a_cancel_reaches_the_hub_holding_a_task() {
    let Some(database) = ScratchSchema::for_test("a_child_waits_for_a_parent") else {
        return;
    };
    let a = hub_named(&database, "a").await;
    let b = hub_named(&database, "b").await;
    let gate = Arc::new(Semaphore::new(0));
    let _slow = spawn_worker(&b.url, &["slow"], 4, held(&gate));
    let _fast = spawn_worker(&a.url, &["fast"], 4, echo());

    // Submitted on a, run on b (only b has `slow`), held there.
    let parent = a.client.submit(&task("slow", 1)).await.unwrap();
    eventually("b runs the parent", Duration::from_secs(20), || async {
        let t = a.client.task(&parent.id).await.unwrap();
        (t.status == TaskStatus::Running).then_some(())
    })
    .await;
    // Its child, submitted on a, waits for a parent a does not hold.
    let child = NewTask {
        depends_on: Some(vec![parent.id.clone()]),
        ..task("fast", 2)
    };
    let child = a.client.submit(&child).await.unwrap();
    assert_eq!(child.status, TaskStatus::Waiting);
    gate.add_permits(1);
    let done = finished(&a.client, &child.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
    assert_eq!(
        finished(&a.client, &parent.id).await.status,
        TaskStatus::Succeeded
    );

    // A cancel on a of a task b runs reaches b, which tells its worker.
    let doomed = a.client.submit(&task("slow", 3)).await.unwrap();
    eventually("b runs it", Duration::from_secs(20), || async {
        let t = a.client.task(&doomed.id).await.unwrap();
        (t.status == TaskStatus::Running).then_some(())
    })
    .await;
    let cancelled = a.client.cancel(&doomed.id).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    // A cancel of a task pooled for a capability no hub serves is done in the pool.
    let nobody = a.client.submit(&task("nobody", 4)).await.unwrap();
    eventually(
        "a pools it (b is its peer)",
        Duration::from_secs(20),
        || async { (hubs(&a).await.pooled == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        b.client.cancel(&nobody.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    assert_eq!(hubs(&b).await.pooled, 0);
    let again = b.client.cancel(&nobody.id).await.unwrap_err();
    assert!(again.to_string().contains("already cancelled"), "{again}");
}

/// A graph accepted while a hub was alone, whose root no agent of that hub serves: once a
/// peer with such an agent comes, the root goes to the pool and the tasks waiting on it are
/// parked, so the whole graph runs (before, a root with waiting children was never let go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_whose_root_no_agent_here_serves_runs_on_a_peer() {
    let Some(database) = ScratchSchema::for_test("a_graph_whose_root") else {
        return;
    };
    let a = hub_named(&database, "a").await;
    let _near_on_a = spawn_worker(&a.url, &["near"], 2, echo());
    let root = a.client.submit(&task("far", 1)).await.unwrap();
    let child = NewTask {
        depends_on: Some(vec![root.id.clone()]),
        ..task("near", 2)
    };
    let child = a.client.submit(&child).await.unwrap();
    let grandchild = NewTask {
        depends_on: Some(vec![child.id.clone()]),
        ..task("far", 3)
    };
    let grandchild = a.client.submit(&grandchild).await.unwrap();
    assert_eq!(child.status, TaskStatus::Waiting);
    assert_eq!(grandchild.status, TaskStatus::Waiting);
    // Alone, a keeps them all: the root queued, no agent for it anywhere.
    assert_eq!(hubs(&a).await.pooled, 0);
    let b = hub_named(&database, "b").await;
    let _far_on_b = spawn_worker(&b.url, &["far"], 2, echo());
    for (id, what) in [
        (&root.id, "the root"),
        (&child.id, "the child"),
        (&grandchild.id, "the grandchild"),
    ] {
        let done = finished(&a.client, id).await;
        assert_eq!(
            done.status,
            TaskStatus::Succeeded,
            "{what}: {:?}",
            done.error
        );
    }
}

/// A consensus task submitted to a hub with no agent for it goes to the pool whole, and the
/// hub whose agents claim it runs its replicas and decides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consensus_task_runs_on_the_agents_of_another_hub() {
    let Some(database) = ScratchSchema::for_test("a_consensus_task_runs") else {
        return;
    };
    let a = hub_named(&database, "a").await;
    let b = hub_named(&database, "b").await;
    let _voters: Vec<_> = ["v1", "v2", "v3"]
        .into_iter()
        .map(|name| {
            spawn_named_worker(&b.url, name, &["vote"], |_: Assignment| async move {
                Outcome::json(&json!({"answer": 42}))
            })
        })
        .collect();
    let voted = NewTask {
        replicas: Some(3),
        quorum: Some(2),
        ..task("vote", 1)
    };
    let submitted = a.client.submit(&voted).await.unwrap();
    let done = finished(&a.client, &submitted.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.result.unwrap().get(), r#"{"answer":42}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_hub_starts_nothing_new_and_hands_its_queue_to_the_others() {
    let Some(database) = ScratchSchema::for_test("a_draining_hub") else {
        return;
    };
    let a = hub_named(&database, "a").await;
    let b = hub_named(&database, "b").await;
    let gate = Arc::new(Semaphore::new(0));
    let _on_a = spawn_worker(&a.url, &["slow"], 2, held(&gate));
    let _on_b = spawn_worker(&b.url, &["slow"], 2, held(&gate));
    eventually(
        "both workers connected",
        Duration::from_secs(20),
        || async {
            let list = hubs(&a).await;
            (list.items.iter().filter(|h| h.agents == 1).count() == 2).then_some(())
        },
    )
    .await;
    let ids = a
        .client
        .submit_batch((0..12).map(|n| task("slow", n)).collect())
        .await
        .unwrap();
    eventually("a runs two", Duration::from_secs(20), || async {
        let agents = a.client.agents().await.unwrap();
        (agents.iter().map(|x| x.running).sum::<u32>() == 2).then_some(())
    })
    .await;
    let (left, ()) = tokio::join!(a.hub.drain(Duration::from_secs(30)), async {
        gate.add_permits(1_000);
    });
    assert_eq!(left, 0, "what ran on a finished before it left");
    let agents = a.client.agents().await.unwrap();
    // Drained (a drained worker with nothing to run may also have gone).
    assert!(
        agents
            .iter()
            .all(|x| matches!(x.state.as_str(), "draining" | "offline")),
        "{agents:?}"
    );
    // Still up, starting nothing: the rest ran on b.
    for id in &ids {
        let done = finished(&a.client, id).await;
        assert_eq!(done.status, TaskStatus::Succeeded);
        assert_eq!(done.attempts.len(), 1, "nothing ran twice");
    }
    a.hub.shutdown().await;
}

/// Members of `group` connected to `t`.
async fn members(t: &TestHub, group: &str) -> usize {
    let swarms = t.client.swarms().await.unwrap();
    swarms
        .items
        .iter()
        .find(|s| s.name == group)
        .map_or(0, |s| s.agents.len())
}

fn message(timeout_ms: u64) -> NewSwarmMessage {
    NewSwarmMessage {
        payload: Some(hive_proto::RawValue::from_string(r#"{"q":"vote"}"#.into()).unwrap()),
        timeout_ms: Some(timeout_ms),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_the_members_on_every_hub() {
    let Some(database) = ScratchSchema::for_test("a_broadcast_reaches_every_hub") else {
        return;
    };
    let a = hub_named(&database, "a").await;
    let b = hub_named(&database, "b").await;
    let _on_a = member(&a.url, "on-a", &["council"], true);
    let _on_b = member(&b.url, "on-b", &["council"], true);
    let _silent = member(&b.url, "silent-on-b", &["council"], false);
    let _far = member(&b.url, "far-on-b", &["far"], true);
    eventually("the members connected", Duration::from_secs(30), || async {
        (members(&a, "council").await == 1
            && members(&b, "council").await == 2
            && members(&b, "far").await == 1)
            .then_some(())
    })
    .await;

    // Through a: its own member and b's, the silent one reported missing.
    let outcome = a
        .client
        .broadcast("council", &message(2_000))
        .await
        .unwrap();
    assert_eq!(outcome.recipients, 3);
    assert_eq!(senders(&outcome), ["on-a", "on-b"]);
    assert_eq!(outcome.missing.len(), 1, "{outcome:?}");

    assert_eq!(outcome.unreported_hubs, 0);

    // A swarm whose members are all on the other hub: answered once its one member replied,
    // not at the timeout (a minute; the bound here only stops a hang).
    let long = message(60_000);
    let outcome = tokio::time::timeout(Duration::from_secs(30), a.client.broadcast("far", &long))
        .await
        .expect("answered when every recipient replied")
        .unwrap();
    assert_eq!(
        (outcome.recipients, senders(&outcome)),
        (1, vec!["far-on-b".to_string()])
    );
    // No wait for replies at all: still sent; answered before b could report (so b counts as
    // unreported) or just after (404), never as a failure of the store.
    match a.client.broadcast("nobody", &message(0)).await {
        Ok(outcome) => assert_eq!((outcome.recipients, outcome.unreported_hubs), (0, 1)),
        Err(hive_client::ClientError::Api { status, .. }) => assert_eq!(status, 404),
        Err(e) => panic!("{e}"),
    }
    let nowhere = a.client.broadcast("nobody", &message(2_000)).await;
    assert!(
        matches!(nowhere, Err(hive_client::ClientError::Api { status, .. }) if status == 404),
        "{nowhere:?}"
    );
    // The messages' rows are gone once their broadcasts ended.
    eventually("the messages deleted", Duration::from_secs(30), || async {
        let left = query_on(database.url(), "SELECT count(*) FROM swarm_messages");
        (left == "0").then_some(())
    })
    .await;
}
