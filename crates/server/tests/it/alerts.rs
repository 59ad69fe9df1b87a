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
