//! The built-in executors: `hive.sha256` runs on the hub's CPU pool as the `builtin` agent, with
//! the same leases, failures and cancels as any worker's task.

use std::time::Duration;

use hive_proto::RawValue;
use hive_proto::api::{NewTask, TaskStatus};
use sha2::{Digest, Sha256};

use crate::util::*;

fn sha_task(data: &str, rounds: u64) -> NewTask {
    NewTask {
        payload: Some(
            RawValue::from_string(serde_json::json!({"data": data, "rounds": rounds}).to_string())
                .unwrap(),
        ),
        ..NewTask::new("hive.sha256")
    }
}

fn expected(data: &str, rounds: u64) -> String {
    let mut digest = Sha256::digest(data.as_bytes());
    for _ in 1..rounds {
        digest = Sha256::digest(digest);
    }
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn the_builtin_agent_computes_digests_on_its_pool() {
    let t = start_hub_with(|c| c.builtin_threads = 2).await;
    let agents = t.client.agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].name, "builtin");
    assert_eq!(agents[0].slots, 4, "two slots per pool thread");

    let cases: Vec<(String, u64)> = (0..40)
        .map(|n| (format!("input-{n}"), 1 + n * 97))
        .collect();
    let ids = t
        .client
        .submit_batch(cases.iter().map(|(d, r)| sha_task(d, *r)).collect())
        .await
        .unwrap();
    for (id, (data, rounds)) in ids.iter().zip(&cases) {
        let done = finished(&t.client, id).await;
        assert_eq!(done.status, TaskStatus::Succeeded, "{id}");
        let output: serde_json::Value = serde_json::from_str(done.result.unwrap().get()).unwrap();
        assert_eq!(
            output["sha256"],
            expected(data, *rounds),
            "{data} x{rounds}"
        );
        assert_eq!(output["rounds"], *rounds);
    }
    let agent = &t.client.agents().await.unwrap()[0];
    assert_eq!(agent.stats["hive.sha256"].completed, 40);
}

#[tokio::test]
async fn a_bad_payload_fails_once_and_a_cancel_stops_a_long_digest() {
    let t = start_hub_with(|c| c.builtin_threads = 1).await;
    let bad = t.client.submit(&sha_task("x", 0)).await.unwrap();
    let done = finished(&t.client, &bad.id).await;
    assert_eq!(done.status, TaskStatus::Failed);
    assert_eq!(done.attempts.len(), 1, "a bad payload is not retried");
    let error = done.attempts[0].error.clone().unwrap();
    assert!(error.contains("payload.rounds"), "{error}");

    // Long enough to still be running when cancelled (the pool checks every 4096 rounds).
    let long = t.client.submit(&sha_task("x", 100_000_000)).await.unwrap();
    eventually("the digest is running", Duration::from_secs(10), || async {
        (t.client.task(&long.id).await.unwrap().status == TaskStatus::Running).then_some(())
    })
    .await;
    let cancelled = t.client.cancel(&long.id).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    // The pool's only thread is free again: a small digest gets through.
    let small = t.client.submit(&sha_task("abc", 1)).await.unwrap();
    assert_eq!(
        finished(&t.client, &small.id).await.status,
        TaskStatus::Succeeded
    );
}

/// A hub that stops while its pool works: the digest running stops and fails (retried at once,
/// not after its lease), the one queued behind it is given back unstarted (not counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_hub_fails_the_running_digest_and_releases_the_queued_one() {
    use hive_proto::api::AttemptOutcome;

    // One thread, two slots: the second digest waits behind the first on the pool.
    let t = start_hub_with(|c| c.builtin_threads = 1).await;
    let long = |data: &str| NewTask {
        timeout_ms: Some(600_000),
        backoff_ms: Some(1),
        ..sha_task(data, hive_server::builtin::sha256::MAX_ROUNDS)
    };
    let first = t.client.submit(&long("first")).await.unwrap().id;
    let second = t.client.submit(&long("second")).await.unwrap().id;
    // Both assigned, and one begun on the pool's thread (its first progress report): the pool's
    // thread runs at the lowest priority, so on a busy machine it may not have begun by the time
    // both are assigned, and a job not begun when the hub stops is given back unstarted.
    let (running, queued) = eventually("one digest begun", Duration::from_secs(30), || async {
        let agents = t.client.agents().await.ok()?;
        if agents[0].running != 2 {
            return None;
        }
        let first_begun = t.client.task(&first).await.ok()?.progress.is_some();
        let second_begun = t.client.task(&second).await.ok()?.progress.is_some();
        match (first_begun, second_begun) {
            (true, false) => Some((first.clone(), second.clone())),
            (false, true) => Some((second.clone(), first.clone())),
            _ => None,
        }
    })
    .await;

    let t = restart_with(t, |c| c.builtin_threads = 1).await;
    // Ended before the restart, as recorded; the retries that follow do not matter here.
    let first_attempt = |task: hive_proto::api::Task| task.attempts[0].clone();
    let stopped = first_attempt(t.client.task(&running).await.unwrap());
    assert_eq!(stopped.outcome, Some(AttemptOutcome::Failed));
    assert!(stopped.error.unwrap().contains("the hub shut down"));
    let released = first_attempt(t.client.task(&queued).await.unwrap());
    assert_eq!(released.outcome, Some(AttemptOutcome::Released));
    for id in [running, queued] {
        t.client.cancel(&id).await.unwrap();
    }
}
