//! A hub on PostgreSQL with the streaming replica `.ci/postgres` starts: listings and status
//! counts read on the replica, except a client's reads after its own writes, which see them even
//! while the replica lags; the replica's state in /metrics.

use std::time::Duration;

use hive_proto::api::NewTask;
use hive_server::{HubIdentity, PoolBounds, PostgresConfig, ReplicaConfig};
use hive_store::postgres::scratch::{ScratchSchema, execute_on, query_on, replica_for_test};

use crate::util::*;

/// Resumes the replica's replay when the test ends, passed or not.
struct Paused(String);

impl Drop for Paused {
    fn drop(&mut self) {
        execute_on(&self.0, "SELECT pg_wal_replay_resume()");
    }
}

/// Queries the replica answered so far (`hive_store_replica_queries_total`).
async fn replica_answers(url: &str) -> f64 {
    metrics_text(url)
        .await
        .lines()
        .find(|l| {
            l.starts_with("hive_store_replica_queries_total{replica=\"127.0.0.1:")
                && l.contains("result=\"answered\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("the replica's queries in /metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_its_own_writes_while_others_read_the_lagging_replica() {
    let Some(database) = ScratchSchema::for_test("replica reads") else {
        return;
    };
    let Some(replica) = replica_for_test("replica reads") else {
        return;
    };
    let replica_url = database.url_at(&replica);
    let url = database.url().to_string();
    // A bound no lag in this test reaches: the replica is paused below while the other tests
    // write to the same cluster, and on a slow machine it may already lag tens of seconds when
    // it pauses. Leaving the rotation on lag is `store`'s replica tests' subject, not this one's.
    let replicas = ReplicaConfig {
        urls: vec![replica_url.clone()],
        max_lag: Duration::from_secs(3600),
    };
    let t = start_hub_with(move |c| {
        c.postgres = Some(PostgresConfig {
            url,
            pool: PoolBounds { min: 1, max: 4 },
            hub: HubIdentity::default(),
            drain_grace: Duration::from_secs(5),
            replicas,
        })
    })
    .await;
    let other = http_from_other_address();

    let first = t.client.submit(&NewTask::new("echo")).await.unwrap().id;
    eventually(
        "the replica in rotation",
        Duration::from_secs(60),
        || async {
            (metrics_text(&t.url)
                .await
                .lines()
                .any(|l| l.starts_with("hive_store_replica_in_rotation") && l.ends_with(" 1")))
            .then_some(())
        },
    )
    .await;
    // Read on the replica itself (a listing could be the primary's answer): its replay must
    // pause past the first task.
    let written = query_on(database.url(), "SELECT pg_current_wal_lsn()::text");
    let replayed_first = format!("SELECT (pg_last_wal_replay_lsn() >= '{written}')::text");
    eventually(
        "the replica replays the first task",
        Duration::from_secs(60),
        || async { (query_on(&replica_url, &replayed_first) == "true").then_some(()) },
    )
    .await;

    // Replay paused (it pauses at the next record it replays: tasks are submitted until it has).
    execute_on(&replica_url, "SELECT pg_wal_replay_pause()");
    let resume = Paused(replica_url.clone());
    eventually(
        "the replica's replay pauses",
        Duration::from_secs(60),
        || async {
            t.client.submit(&NewTask::new("filler")).await.unwrap();
            (query_on(&replica_url, "SELECT pg_get_wal_replay_pause_state()") == "paused")
                .then_some(())
        },
    )
    .await;
    let second = t.client.submit(&NewTask::new("echo")).await.unwrap().id;
    assert!(
        listed_ids(&http(), &t.url, 1000).await.contains(&second),
        "the writer reads its own write"
    );
    // A listing the query cache has not seen (another page size each try): read on the
    // replica once a check of it is fresh (on a busy machine the checks may come late, and a
    // replica whose last good check is too old sends reads to the primary).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut tries = 0;
    let theirs = loop {
        tries += 1;
        let answered = replica_answers(&t.url).await;
        let theirs = listed_ids(&other, &t.url, 1000 - tries % 500).await;
        if replica_answers(&t.url).await > answered {
            break theirs;
        }
        // A bound against hanging that says what the hub thought of its replica.
        if tokio::time::Instant::now() > deadline {
            let metrics = metrics_text(&t.url).await;
            let replica: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("hive_store_replica"))
                .collect();
            panic!("no read on the replica in 120 s; the hub's view: {replica:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        theirs.contains(&first) && !theirs.contains(&second),
        "the other client reads the paused replica"
    );
    // While it is paused and the primary moves on, /metrics shows how far behind it is.
    eventually(
        "the replica's lag in /metrics",
        Duration::from_secs(60),
        || async {
            t.client.submit(&NewTask::new("filler")).await.unwrap();
            metrics_text(&t.url)
                .await
                .lines()
                .find(|l| l.starts_with("hive_store_replica_lag_seconds{replica=\"127.0.0.1:"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .filter(|lag| *lag > 0.0)
                .map(|_| ())
        },
    )
    .await;

    drop(resume);
    eventually(
        "the other client sees the second task once replayed",
        Duration::from_secs(60),
        || async {
            listed_ids(&other, &t.url, 1000)
                .await
                .contains(&second)
                .then_some(())
        },
    )
    .await;
    t.hub.shutdown().await;
}
