//! A hub on PostgreSQL (`HIVE_TEST_POSTGRES`, each test on a schema of its own; skipped with a
//! message when unset, a failure under `.ci/run`): the life of tasks across a restart, results
//! through a graph, and a database that goes away and comes back.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_client::worker::Outcome;
use hive_proto::api::{NewTask, TaskStatus};
use hive_proto::protocol::Assignment;
use hive_server::{HubIdentity, PoolBounds, PostgresConfig};
use hive_store::postgres::scratch::ScratchSchema;
use serde_json::json;

use crate::util::*;

/// A hub on the schema, named `it`: started again, it is the same hub restarted.
async fn hub_on_postgres(database: &ScratchSchema) -> TestHub {
    hub_named(database, "it").await
}

/// A hub of the hubs sharing the schema, with a short lease (2 s) so that tests see leases end.
pub async fn hub_named(database: &ScratchSchema, name: &str) -> TestHub {
    let url = database.url().to_string();
    let name = name.to_string();
    start_hub_with(move |c| {
        c.postgres = Some(PostgresConfig {
            url,
            pool: PoolBounds { min: 1, max: 4 },
            hub: HubIdentity {
                name: Some(name),
                lease: Duration::from_secs(2),
            },
            drain_grace: Duration::from_secs(5),
            replicas: Default::default(),
        })
    })
    .await
}

fn task(capability: &str, payload: serde_json::Value) -> NewTask {
    NewTask {
        payload: Some(hive_proto::RawValue::from_string(payload.to_string()).unwrap()),
        ..NewTask::new(capability)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_on_postgres_runs_tasks_and_keeps_them_across_a_restart() {
    let Some(database) = ScratchSchema::for_test("a_hub_on_postgres_runs_tasks") else {
        return;
    };
    let t = hub_on_postgres(&database).await;
    let worker = spawn_worker(&t.url, &["pg"], 8, echo());
    let ids = t
        .client
        .submit_batch((0..100).map(|n| task("pg", json!(n))).collect())
        .await
        .unwrap();
    for id in &ids {
        assert_eq!(finished(&t.client, id).await.status, TaskStatus::Succeeded);
    }
    let keyed = NewTask {
        idempotency_key: Some("once".into()),
        ..task("pg", json!("keyed"))
    };
    let first = t.client.submit(&keyed).await.unwrap();
    let parent = finished(&t.client, &first.id).await;
    assert_eq!(parent.result.as_ref().map(|r| r.get()), Some("\"keyed\""));
    // Queued for a capability nobody offers: these must survive the restart.
    let waiting = t
        .client
        .submit_batch((0..20).map(|n| task("later", json!(n))).collect())
        .await
        .unwrap();
    worker.kill().await;

    let dir = t.dir;
    t.hub.shutdown().await;
    let t = hub_on_postgres(&database).await;
    drop(dir);
    assert_eq!(t.hub.recovered(), 20, "the queued tasks were read back");
    let again = t.client.submit(&keyed).await.unwrap();
    assert_eq!(
        (again.id.as_str(), again.status.as_str()),
        (first.id.as_str(), "succeeded")
    );
    let child = NewTask {
        depends_on: Some(vec![first.id.clone()]),
        ..NewTask::new("inputs")
    };
    let child = t.client.submit(&child).await.unwrap();
    let inputs: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = inputs.clone();
    let _inputs = spawn_worker(&t.url, &["inputs"], 1, move |a: Assignment| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .push(a.inputs.map(|i| i.get().to_string()).unwrap_or_default());
            Outcome::json(&1)
        }
    });
    let _later = spawn_worker(&t.url, &["later"], 8, echo());
    for id in waiting.iter().chain([&child.id]) {
        assert_eq!(finished(&t.client, id).await.status, TaskStatus::Succeeded);
    }
    assert_eq!(
        *inputs.lock().unwrap(),
        vec![format!("{{\"{}\":\"keyed\"}}", first.id)],
        "the parent's result, read from PostgreSQL after the restart"
    );
    let status = t.client.status().await.unwrap();
    assert_eq!(status.tasks["succeeded"], 100 + 1 + 20 + 1);
    let metrics = metrics_text(&t.url).await;
    for family in [
        "hive_store_pool_connections{state=\"in_use\"}",
        "hive_store_pool_max_connections 4",
        "hive_store_pool_acquired_total",
        "hive_store_pool_wait_seconds_total",
    ] {
        assert!(metrics.contains(family), "{family} missing from /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_answers_503_and_the_hub_comes_back_by_itself() {
    let Some(mut database) = ScratchSchema::for_test("a_database_that_goes_away") else {
        return;
    };
    database.as_role();
    let t = hub_on_postgres(&database).await;
    let executed: Arc<Mutex<Vec<u64>>> = Arc::default();
    let seen = executed.clone();
    let _worker = spawn_worker(&t.url, &["pg"], 8, move |a: Assignment| {
        let seen = seen.clone();
        async move {
            let n: u64 = serde_json::from_str(a.payload.get()).unwrap();
            seen.lock().unwrap().push(n);
            Outcome::json(&n)
        }
    });
    let http = http();
    let submit = |n: u64| {
        http.post(format!("{}/api/v1/tasks", t.url))
            .json(&json!({"capability": "pg", "payload": n}))
            .send()
    };
    let mut accepted: Vec<(u64, String)> = Vec::new();
    let mut refused: BTreeSet<u64> = BTreeSet::new();
    let mut next = 0u64;
    for _ in 0..10 {
        let answer = submit(next).await.unwrap();
        assert_eq!(answer.status(), 201);
        let body: serde_json::Value = answer.json().await.unwrap();
        accepted.push((next, body["id"].as_str().unwrap().to_string()));
        next += 1;
    }

    database.take_away();
    // Until the hub finds out: submits fail with 503 naming the store, never a 500.
    let mut refusals = 0;
    for _ in 0..200 {
        let answer = submit(next).await.unwrap();
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().await.unwrap();
        match status {
            201 => accepted.push((next, body["id"].as_str().unwrap().to_string())),
            503 => {
                assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
                refused.insert(next);
                refusals += 1;
            }
            other => panic!("answered {other}: {body}"),
        }
        next += 1;
        if refusals >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refusals >= 3, "the hub never noticed the database was gone");

    database.give_back();
    let back = eventually("submits accepted again", Duration::from_secs(60), || {
        let request = submit(next);
        async move {
            let answer = request.await.ok()?;
            (answer.status() == 201).then_some(())?;
            let body: serde_json::Value = answer.json().await.ok()?;
            Some(body["id"].as_str()?.to_string())
        }
    })
    .await;
    accepted.push((next, back));

    for (_, id) in &accepted {
        assert_eq!(
            finished(&t.client, id).await.status,
            TaskStatus::Succeeded,
            "{id}"
        );
    }
    let ran: HashSet<u64> = executed.lock().unwrap().iter().copied().collect();
    for (n, _) in &accepted {
        assert!(ran.contains(n), "accepted task {n} never ran");
    }
    for n in &refused {
        assert!(!ran.contains(n), "refused task {n} ran");
    }
}
