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

#[tokio::test]
async fn a_broadcast_and_its_replies_keep_the_bounds_of_a_task() {
    let t = start_hub_with(|c| {
        c.limits.max_payload_bytes = 2_048;
        c.limits.max_output_bytes = 1_024;
    })
    .await;
    let _a = member(&t.url, "a", &["council"], true);
    eventually("a member in the swarm", Duration::from_secs(10), || async {
        let swarms = t.client.swarms().await.unwrap();
        (swarms.items.len() == 1).then_some(())
    })
    .await;
    // Waiting stops when every member answered, or at the timeout.
    let send = |payload: String, timeout_ms: u64| {
        let client = t.client.clone();
        async move {
            let message = NewSwarmMessage {
                payload: Some(RawValue::from_string(payload).unwrap()),
                timeout_ms: Some(timeout_ms),
            };
            client.broadcast("council", &message).await
        }
    };
    // Over the payload bound: refused before anything is sent, naming the field.
    let big = format!(r#"{{"q":"vote","pad":"{}"}}"#, "x".repeat(3_000));
    let refused = send(big, 10_000).await;
    assert!(
        matches!(&refused, Err(hive_client::ClientError::Api { status, field: Some(f), .. })
            if status.as_u16() == 413 && f == "payload"),
        "{refused:?}"
    );
    let deep = format!(
        r#"{{"q":"vote","deep":{}{}}}"#,
        "[".repeat(70),
        "]".repeat(70)
    );
    let refused = send(deep, 10_000).await;
    assert!(
        matches!(&refused, Err(hive_client::ClientError::Api { status, field: Some(f), .. })
            if status.as_u16() == 400 && f == "payload"),
        "{refused:?}"
    );
    // Within the bounds, but the member's reply (what it heard, and more) is over the output
    // bound: the reply is dropped and the member reported missing.
    let outcome = send(
        format!(r#"{{"q":"vote","pad":"{}"}}"#, "x".repeat(1_500)),
        1_000,
    )
    .await
    .unwrap();
    assert_eq!(outcome.recipients, 1);
    assert!(outcome.replies.is_empty(), "{outcome:?}");
    assert_eq!(outcome.missing.len(), 1);
    // A small message gets its reply.
    let outcome = send(r#"{"q":"vote"}"#.into(), 10_000).await.unwrap();
    assert_eq!(senders(&outcome), ["a"]);
}
