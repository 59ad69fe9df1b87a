//! Alerting end to end: a rule fires on a real metric, reaches a real HTTP receiver through a
//! failed first call, resolves, and both transitions are in the stored history.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hive_proto::alerts::AlertList;
use hive_proto::api::NewTask;
use hive_proto::enums::AlertState;
use hive_server::alerts::AlertConfig;
use hive_server::alerts::rules::{Direction, Metric, Rule};
use serde_json::Value;

use crate::util::*;

/// Every body the receiver got, and whether it accepted it.
type Calls = Arc<Mutex<Vec<(Value, bool)>>>;

/// A webhook receiver on 127.0.0.1 that refuses its first call with a 500.
async fn receiver() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |State(calls): State<Calls>, Json(body): Json<Value>| async move {
                    let mut calls = calls.lock().unwrap();
                    let accept = !calls.is_empty();
                    calls.push((body, accept));
                    if accept {
                        StatusCode::OK
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                },
            ),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

async fn alerts(url: &str) -> AlertList {
    http()
        .get(format!("{url}/api/v1/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn accepted(calls: &Calls) -> Vec<Value> {
    let calls = calls.lock().unwrap();
    calls
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(b, _)| b.clone())
        .collect()
}

#[tokio::test]
async fn an_alert_fires_reaches_the_webhook_after_a_failure_and_resolves() {
    let (hook, calls) = receiver().await;
    let t = start_hub_with(|c| {
        c.metrics_interval = Duration::from_millis(100);
        c.alerts = AlertConfig {
            rules: vec![Rule {
                name: "backlog".into(),
                metric: Metric::QueuedTasks,
                direction: Direction::Above,
                threshold: 2.0,
                clear: 0.0,
                for_ms: 0,
                severity: "critical".into(),
                when: None,
            }],
            webhook_url: Some(hook),
            webhook_ca_file: None,
        };
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(t.client.submit(&NewTask::new("slow")).await.unwrap().id);
    }
    let firing = eventually("the alert fires", Duration::from_secs(10), || async {
        let list = alerts(&t.url).await;
        list.active
            .into_iter()
            .find(|a| a.state == AlertState::Firing)
    })
    .await;
    assert_eq!((firing.rule.as_str(), firing.value), ("backlog", Some(3.0)));
    let delivered = eventually(
        "the webhook accepts the call",
        Duration::from_secs(10),
        || async { accepted(&calls).first().cloned() },
    )
    .await;
    assert_eq!(delivered["state"], "firing");
    assert_eq!(delivered["rule"], "backlog");
    assert!(
        delivered["text"]
            .as_str()
            .unwrap()
            .contains("backlog firing"),
        "{delivered}"
    );
    assert!(
        !calls.lock().unwrap()[0].1,
        "the first call was refused and retried"
    );

    let _worker = spawn_worker(&t.url, &["slow"], 4, echo());
    for id in &ids {
        finished(&t.client, id).await;
    }
    eventually(
        "the webhook hears it resolved",
        Duration::from_secs(10),
        || async { (accepted(&calls).len() == 2).then_some(()) },
    )
    .await;
    assert_eq!(accepted(&calls)[1]["state"], "resolved");
    let list = alerts(&t.url).await;
    assert!(list.active.is_empty(), "{list:?}");
    let states: Vec<&str> = list.recent.iter().map(|e| e.state.as_str()).collect();
    assert_eq!(states, ["resolved", "firing"], "stored, newest first");
}

#[tokio::test]
async fn a_bad_alerts_limit_is_a_400_naming_it() {
    let t = start_hub().await;
    for query in ["limit=0", "limit=x"] {
        let response = http()
            .get(format!("{}/api/v1/alerts?{query}", t.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], "limit", "{body}");
    }
}

/// The totals of the hub's latest snapshot, once `ready` holds for them (polled, bounded).
async fn totals_when(
    t: &TestHub,
    what: &str,
    ready: impl Fn(&std::collections::BTreeMap<String, u64>) -> bool,
) -> std::collections::BTreeMap<String, u64> {
    eventually(what, Duration::from_secs(10), || async {
        let totals = snapshot(&t.url).await.totals;
        ready(&totals).then_some(totals)
    })
    .await
}

/// A worker stopped on purpose is not an operator's problem, one that vanishes is: only the
/// second counts as lost, and the default `agents_lost` rule fires on it.
#[tokio::test]
async fn a_worker_stopped_cleanly_is_not_lost_and_one_that_vanishes_fires_agents_lost() {
    let t = start_hub_with(|c| c.metrics_interval = Duration::from_millis(100)).await;
    let count = |name: &'static str| {
        move |totals: &std::collections::BTreeMap<String, u64>| {
            totals.get(name).copied().unwrap_or(0)
        }
    };

    let clean = spawn_worker(&t.url, &["calm"], 1, echo());
    totals_when(&t, "the first worker registers", |s| {
        count("agents_registered")(s) == 1
    })
    .await;
    clean.stop().await;
    let after_stop = totals_when(&t, "the clean stop is counted", |s| {
        count("agents_disconnected")(s) == 1
    })
    .await;
    assert_eq!(count("agents_lost")(&after_stop), 0, "{after_stop:?}");

    let vanishing = spawn_worker(&t.url, &["calm"], 1, echo());
    totals_when(&t, "the second worker registers", |s| {
        count("agents_registered")(s) == 2
    })
    .await;
    vanishing.kill().await;
    let firing = eventually("agents_lost fires", Duration::from_secs(10), || async {
        alerts(&t.url)
            .await
            .active
            .into_iter()
            .find(|a| a.rule == "agents_lost" && a.state == AlertState::Firing)
    })
    .await;
    assert_eq!(firing.value, Some(1.0), "one agent lost, not two");
    let after_kill = snapshot(&t.url).await.totals;
    assert_eq!(count("agents_lost")(&after_kill), 1, "{after_kill:?}");
    assert_eq!(
        count("agents_disconnected")(&after_kill),
        2,
        "{after_kill:?}"
    );
}
