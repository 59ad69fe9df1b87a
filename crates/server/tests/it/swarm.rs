//! Swarms: a broadcast reaches every connected member and collects their replies.

use std::time::Duration;

use hive_client::WorkerOptions;
use hive_client::worker::Outcome;
use hive_proto::RawValue;
use hive_proto::api::NewSwarmMessage;
use hive_proto::protocol::Assignment;

use crate::util::*;

/// A worker in `groups` that answers each message with its name and what it heard (or never).
pub fn member(url: &str, name: &str, groups: &[&str], answer: bool) -> tokio::task::JoinHandle<()> {
    let mut options = WorkerOptions::new(url, &["chat"], 1);
    options.name = name.to_string();
    options.groups = groups.iter().map(|g| g.to_string()).collect();
    let name = name.to_string();
    let executor = std::sync::Arc::new(move |task: Assignment| {
        let name = name.clone();
        async move {
            if !answer {
                return std::future::pending().await;
            }
            assert!(task.capability.starts_with("swarm:"), "{}", task.capability);
            Outcome::json(
                &serde_json::json!({ "from": name, "heard": serde_json::from_str::<serde_json::Value>(task.payload.get()).unwrap() }),
            )
        }
    });
    tokio::spawn(async move {
        let _ = hive_client::worker::run_worker(options, executor, std::future::pending()).await;
    })
}

/// Who answered, sorted: each reply checked to echo the `{"q":"vote"}` sent.
pub fn senders(outcome: &hive_proto::api::SwarmMessageOutcome) -> Vec<String> {
    let mut from: Vec<String> = outcome
        .replies
        .iter()
        .map(|r| {
            let reply: serde_json::Value = serde_json::from_str(r.output.get()).unwrap();
            assert_eq!(reply["heard"]["q"], "vote");
            reply["from"].as_str().unwrap().to_string()
        })
        .collect();
    from.sort();
    from
}

#[tokio::test]
async fn a_broadcast_reaches_every_member_and_collects_the_replies() {
    let t = start_hub().await;
    let _a = member(&t.url, "a", &["council"], true);
    let _b = member(&t.url, "b", &["council", "other"], true);
    let _c = member(&t.url, "c", &["other"], true);
    let _silent = member(&t.url, "silent", &["council"], false);
    eventually(
        "four agents in their swarms",
        Duration::from_secs(10),
        || async {
            let swarms = t.client.swarms().await.unwrap();
            let council = swarms
                .items
                .iter()
                .find(|s| s.name == "council")
                .map_or(0, |s| s.agents.len());
            (council == 3 && swarms.items.len() == 2).then_some(())
        },
    )
    .await;

    let message = NewSwarmMessage {
        payload: Some(RawValue::from_string(r#"{"q":"vote"}"#.into()).unwrap()),
        timeout_ms: Some(500),
    };
    let outcome = t.client.broadcast("council", &message).await.unwrap();
    assert_eq!(outcome.recipients, 3);
    assert_eq!(senders(&outcome), ["a", "b"]);
    assert_eq!(
        outcome.missing.len(),
        1,
        "the silent member is reported missing"
    );

    let none = t
        .client
        .broadcast(
            "nobody",
            &NewSwarmMessage {
                payload: None,
                timeout_ms: None,
            },
        )
        .await;
    assert!(matches!(none, Err(hive_client::ClientError::Api { status, .. }) if status == 404));
    let bad = t
        .client
        .broadcast(
            "council",
            &NewSwarmMessage {
                payload: None,
                timeout_ms: Some(999_999),
            },
        )
        .await;
    assert!(
        matches!(bad, Err(hive_client::ClientError::Api { field: Some(f), .. }) if f == "timeout_ms")
    );
}
