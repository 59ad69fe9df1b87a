//! The query cache on a hub: finished tasks and repeated listings answered from memory, counted
//! in /metrics, and a client's listing right after its own write still showing it.

use std::time::Duration;

use hive_proto::api::NewTask;

use crate::util::*;

/// `hive_query_cache_lookups_total` for `query` and `result` (hit or miss).
async fn lookups(url: &str, query: &str, result: &str) -> f64 {
    let wanted =
        format!("hive_query_cache_lookups_total{{query=\"{query}\",result=\"{result}\"}} ");
    let text = metrics_text(url).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&wanted)?.parse().ok())
        .unwrap_or_else(|| panic!("no {wanted} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reads_come_from_memory_without_hiding_a_clients_own_writes() {
    let t = start_hub_with(|c| c.metrics_interval = Duration::from_millis(100)).await;
    let _worker = spawn_worker(&t.url, &["echo"], 2, echo());
    let id = t.client.submit(&NewTask::new("echo")).await.unwrap().id;
    finished(&t.client, &id).await;

    // A finished task never changes: read once from the store, then from memory.
    let hits = lookups(&t.url, "finished_task", "hit").await;
    let first = t.client.task(&id).await.unwrap();
    let again = t.client.task(&id).await.unwrap();
    assert_eq!(
        serde_json::to_value(&first).unwrap(),
        serde_json::to_value(&again).unwrap()
    );
    assert!(lookups(&t.url, "finished_task", "hit").await > hits);

    // A listing asked again soon is answered from memory.
    let other = http_from_other_address();
    let hits = lookups(&t.url, "task_list", "hit").await;
    eventually(
        "a listing answered from memory",
        Duration::from_secs(60),
        || async {
            listed_ids(&other, &t.url, 1000).await;
            (lookups(&t.url, "task_list", "hit").await > hits).then_some(())
        },
    )
    .await;

    // The dashboard's tile: the hit rates in the snapshot.
    eventually(
        "the hit rates in a snapshot",
        Duration::from_secs(60),
        || async {
            let snapshot: serde_json::Value = http()
                .get(format!("{}/api/v1/metrics", t.url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let rates = &snapshot["cache_hit_rates"];
            (rates["query_task_list"].as_f64()? > 0.0 && rates["query_cache"].as_f64()? > 0.0)
                .then_some(())
        },
    )
    .await;

    // The writer's listing right after its write shows it, though another client's listing of
    // the same page was just cached.
    listed_ids(&other, &t.url, 1000).await;
    let second = t.client.submit(&NewTask::new("nobody")).await.unwrap().id;
    assert!(listed_ids(&http(), &t.url, 1000).await.contains(&second));
    t.hub.shutdown().await;
}
