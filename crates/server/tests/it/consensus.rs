//! Consensus tasks over real sockets: honest agents agree, a lying agent is outvoted (and
//! routing learns it), a crashed replica is replaced by another agent, and with too few agents
//! the task waits for another identity.

use std::time::Duration;

use hive_client::HubClient;
use hive_client::worker::{Executor, Outcome};
use hive_proto::RawValue;
use hive_proto::api::{AttemptOutcome, NewTask, TaskStatus};
use hive_proto::protocol::Assignment;
use serde_json::{Value, json};

use crate::util::*;

fn ask(replicas: u32, quorum: u32, vote: Option<&str>) -> NewTask {
    NewTask {
        replicas: Some(replicas),
        quorum: Some(quorum),
        vote: vote.map(str::to_string),
        payload: Some(RawValue::from_string(r#""6 x 7?""#.into()).unwrap()),
        ..NewTask::new("oracle")
    }
}

/// Answers `answer`, with a reason naming the agent (so whole results differ).
fn answering(name: &'static str, answer: i64) -> impl Executor {
    move |_task: Assignment| async move {
        let result = json!({ "answer": answer, "by": name }).to_string();
        Outcome::Success(RawValue::from_string(result).unwrap())
    }
}

async fn votes_in(client: &HubClient, id: &str) -> usize {
    let task = client.task(id).await.unwrap();
    task.votes.map_or(0, |v| v.len())
}

#[tokio::test]
async fn honest_agents_agree_on_the_value_at_the_pointer() {
    let t = start_hub().await;
    let _a = spawn_named_worker(&t.url, "a", &["oracle"], answering("a", 42));
    let _b = spawn_named_worker(&t.url, "b", &["oracle"], answering("b", 42));
    let _c = spawn_named_worker(&t.url, "c", &["oracle"], answering("c", 42));
    let id = t
        .client
        .submit(&ask(3, 2, Some("/answer")))
        .await
        .unwrap()
        .id;
    let done = finished(&t.client, &id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.result.unwrap().get(), "42");
    assert_eq!((done.replicas, done.quorum), (Some(3), Some(2)));
    let votes = done.votes.unwrap();
    assert!(
        votes.len() >= 2 && votes.iter().all(|v| v.agreed),
        "{votes:?}"
    );
    assert_eq!(done.dissenters, Some(vec![]));
    // Each replica ran on a different agent; a third still running at the quorum was cancelled.
    let mut agents: Vec<_> = done.attempts.iter().map(|a| a.agent_id.clone()).collect();
    agents.sort();
    agents.dedup();
    assert_eq!(agents.len(), done.attempts.len(), "{:?}", done.attempts);
    t.hub.shutdown().await;
}

#[tokio::test]
async fn a_lying_agent_is_outvoted_named_and_trusted_less() {
    let t = start_hub().await;
    let _liar = spawn_named_worker(&t.url, "liar", &["oracle"], answering("liar", 41));
    // The honest agents answer once the liar's vote is in, so that it is counted.
    let honest = |name: &'static str| {
        let client = HubClient::new(&t.url);
        move |task: Assignment| {
            let client = client.clone();
            async move {
                eventually("the liar's vote", Duration::from_secs(30), || async {
                    (votes_in(&client, &task.task_id).await >= 1).then_some(())
                })
                .await;
                answering(name, 42).execute(task).await
            }
        }
    };
    let _a = spawn_named_worker(&t.url, "honest-a", &["oracle"], honest("honest-a"));
    let _b = spawn_named_worker(&t.url, "honest-b", &["oracle"], honest("honest-b"));
    let id = t
        .client
        .submit(&ask(3, 2, Some("/answer")))
        .await
        .unwrap()
        .id;
    let done = finished(&t.client, &id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.result.unwrap().get(), "42");
    let agents = t.client.agents().await.unwrap();
    let liar = agents.iter().find(|a| a.name == "liar").unwrap();
    assert_eq!(done.dissenters, Some(vec![liar.id.clone()]));
    let votes = done.votes.unwrap();
    let lie = votes
        .iter()
        .find(|v| v.agent_id.as_ref() == Some(&liar.id))
        .unwrap();
    assert_eq!((lie.value.get(), lie.agreed), ("41", false));
    // Routing counts the lost vote as a failed attempt.
    let believed = |name: &str| {
        let agent = agents.iter().find(|a| a.name == name).unwrap();
        agent.routing["oracle"].success_probability
    };
    assert!(
        believed("liar") < believed("honest-a"),
        "liar {} vs honest {}",
        believed("liar"),
        believed("honest-a")
    );
    t.hub.shutdown().await;
}

#[tokio::test]
async fn a_crashed_replica_is_replaced_by_another_agent() {
    let t = start_hub().await;
    let (got, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    let crashing = spawn_named_worker(&t.url, "crashing", &["oracle"], move |_task: Assignment| {
        let got = got.clone();
        async move {
            let _ = got.send(());
            std::future::pending::<Outcome>().await
        }
    });
    let _b = spawn_named_worker(&t.url, "b", &["oracle"], answering("b", 7));
    let _c = spawn_named_worker(&t.url, "c", &["oracle"], answering("c", 7));
    let id = t
        .client
        .submit(&NewTask {
            timeout_ms: Some(500),
            ..ask(3, 3, Some("/answer"))
        })
        .await
        .unwrap()
        .id;
    got_rx.recv().await.unwrap();
    crashing.kill().await;
    // Its lease runs out; the replacement goes to the only identity not yet asked.
    let _d = spawn_named_worker(&t.url, "d", &["oracle"], answering("d", 7));
    let done = finished(&t.client, &id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.result.unwrap().get(), "7");
    let outcomes: Vec<_> = done.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    assert!(outcomes.contains(&Some(AttemptOutcome::LeaseExpired)));
    assert_eq!(done.votes.unwrap().len(), 3);
    t.hub.shutdown().await;
}

#[tokio::test]
async fn with_too_few_agents_the_task_waits_for_another_identity() {
    let t = start_hub().await;
    let _a = spawn_named_worker(&t.url, "a", &["oracle"], answering("a", 1));
    let id = t.client.submit(&ask(2, 2, None)).await.unwrap().id;
    eventually("the first vote", Duration::from_secs(30), || async {
        (votes_in(&t.client, &id).await == 1).then_some(())
    })
    .await;
    let waiting = t.client.task(&id).await.unwrap();
    assert_eq!(
        waiting.status,
        TaskStatus::Running,
        "running from its first replica on"
    );
    let status = t.client.status().await.unwrap();
    assert_eq!(
        status.queue_depth.get("oracle"),
        Some(&1),
        "{:?}",
        status.queue_depth
    );
    // Whole results are compared: "by" differs, so b must answer exactly what a did.
    let _b = spawn_named_worker(&t.url, "b", &["oracle"], answering("a", 1));
    let done = finished(&t.client, &id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
    let result: Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
    assert_eq!(result, json!({"answer": 1, "by": "a"}));
    t.hub.shutdown().await;
}

#[tokio::test]
async fn bad_consensus_fields_are_named() {
    let t = start_hub().await;
    for (body, field) in [
        (json!({"capability": "x", "replicas": 17}), "replicas"),
        (
            json!({"capability": "x", "replicas": 3, "quorum": 4}),
            "quorum",
        ),
        (
            json!({"capability": "x", "replicas": 3, "vote": "answer"}),
            "vote",
        ),
    ] {
        let response = http()
            .post(format!("{}/api/v1/tasks", t.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    t.hub.shutdown().await;
}

#[tokio::test]
async fn votes_survive_a_restart_and_the_task_is_decided_after_it() {
    let t = start_hub().await;
    let a = spawn_named_worker(&t.url, "a", &["oracle"], answering("a", 9));
    let id = t
        .client
        .submit(&ask(2, 2, Some("/answer")))
        .await
        .unwrap()
        .id;
    eventually("the first vote", Duration::from_secs(30), || async {
        (votes_in(&t.client, &id).await == 1).then_some(())
    })
    .await;
    a.kill().await;
    let t = restart(t).await;
    assert_eq!(t.hub.recovered(), 1);
    // "a" voted before the restart: only another identity completes the quorum.
    let _a = spawn_named_worker(&t.url, "a", &["oracle"], answering("a", 9));
    let _b = spawn_named_worker(&t.url, "b", &["oracle"], answering("b", 9));
    let done = finished(&t.client, &id).await;
    assert_eq!(done.status, TaskStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.result.unwrap().get(), "9");
    let votes = done.votes.unwrap();
    assert_eq!(votes.len(), 2);
    assert_eq!(
        done.attempts.len(),
        2,
        "nothing asked twice: {:?}",
        done.attempts
    );
    t.hub.shutdown().await;
}
