//! What routing learned about a worker's name survives a `kill -9` of the hub: after the restart
//! the reconnected workers (new connections, new agent ids, the same names) are believed what
//! they were before.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hive_client::worker::{Outcome, run_worker};
use hive_client::{HubClient, WorkerOptions};
use hive_proto::api::{AgentState, NewTask, RoutingEstimate};
use hive_proto::protocol::Assignment;
use tokio::sync::oneshot;

use crate::survival::until_idle;
use crate::util::*;

const CAPABILITY: &str = "learn";

/// A worker named `name` that succeeds or fails every attempt, until the sender is dropped.
fn worker(url: &str, name: &str, succeeds: bool) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let options = WorkerOptions {
        name: name.into(),
        max_reconnect_delay: Duration::from_millis(200),
        ..WorkerOptions::new(url, &[CAPABILITY], 2)
    };
    let executor = Arc::new(move |task: Assignment| async move {
        if succeeds {
            Outcome::Success(task.payload)
        } else {
            Outcome::failure("always fails", false)
        }
    });
    tokio::spawn(run_worker(options, executor, async move {
        let _ = stopped.await;
    }));
    stop
}

/// What routing believes of each connected worker of the capability, by name, once exactly
/// `names` are connected (the hub's built-in agent has other capabilities).
async fn beliefs(client: &HubClient, names: &[&str]) -> BTreeMap<String, RoutingEstimate> {
    for _ in 0..200 {
        let agents = client.agents().await.unwrap();
        let online: BTreeMap<_, _> = agents
            .into_iter()
            .filter(|a| a.state != AgentState::Offline)
            .filter_map(|a| Some((a.name, a.routing.get(CAPABILITY)?.clone())))
            .collect();
        if online.keys().eq(names.iter()) {
            return online;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not exactly {names:?} connected");
}

async fn run_tasks(client: &HubClient, n: usize) {
    for _ in 0..n {
        client.submit(&NewTask::new(CAPABILITY)).await.unwrap();
    }
    until_idle(client, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_routing_learned_of_a_name_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut hub = HubProcess::start(dir.path(), port).await;
    let client = HubClient::new(&hub.url);

    // One at a time, so each gets all the tasks whatever the policy: a worker that fails every
    // attempt, then one that succeeds.
    let failing = worker(&hub.url, "always-fails", false);
    beliefs(&client, &["always-fails"]).await;
    run_tasks(&client, 6).await;
    drop(failing);
    beliefs(&client, &[]).await;
    let steady = worker(&hub.url, "steady", true);
    beliefs(&client, &["steady"]).await;
    run_tasks(&client, 10).await;
    let failing = worker(&hub.url, "always-fails", false);
    let both = ["always-fails", "steady"];
    let before = beliefs(&client, &both).await;
    assert_eq!(before["always-fails"].samples, 6);
    assert_eq!(before["steady"].samples, 10);
    assert!(
        before["always-fails"].success_probability < 0.2,
        "{before:?}"
    );
    assert!(before["steady"].success_probability > 0.85, "{before:?}");

    hub.kill_9().await;
    let hub = HubProcess::start(dir.path(), port).await;
    // The workers reconnect by themselves, as new agents under their old names.
    let after = beliefs(&client, &both).await;
    for name in ["always-fails", "steady"] {
        assert_eq!(after[name].samples, before[name].samples, "{name}");
        assert_eq!(
            after[name].success_probability, before[name].success_probability,
            "{name}"
        );
        assert!(after[name].latency_ms.is_some(), "{name}");
    }
    drop((failing, steady));
    assert!(hub.terminate().await.success());
}
