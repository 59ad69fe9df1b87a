//! A read replica that goes away mid-run: two hubs on one PostgreSQL schema, both reading
//! through a replica reached over a relay the test cuts while tasks run. A client that only
//! reads, through the second hub (so none of its reads is sent to the primary as a read after
//! its own write), keeps getting answers; the replica leaves the rotation, and comes back when
//! the relay is restored; every acknowledged task still succeeds exactly once. (That a read in
//! flight on a replica that fails is answered by the primary is the store's replica tests'.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hive_client::HubClient;
use hive_client::http::ListQuery;
use hive_store::postgres::relay::Relay;
use hive_store::postgres::scratch::{ScratchSchema, replica_for_test};

use crate::hubs::{new_task, spread_workers};
use crate::survival::{Acked, each_succeeded_once, submitters, until_idle};
use crate::util::*;

// Enough that the submitters are far from done at the cut, on a fast machine too.
const TOTAL: usize = 12_000;
const CUT_AFTER: usize = 2_000;

/// The relay runs its own runtime, which may be neither started, restored nor dropped on this
/// test's: each of those happens on a thread of its own.
struct OffRuntime(Option<Relay>);

impl OffRuntime {
    async fn start(target: String) -> OffRuntime {
        let relay = tokio::task::spawn_blocking(move || Relay::start(&target));
        OffRuntime(Some(relay.await.unwrap()))
    }

    fn relay(&self) -> &Relay {
        self.0.as_ref().expect("held until dropped")
    }

    async fn restore(&mut self) {
        let relay = self.0.take().expect("held until dropped");
        let relay = tokio::task::spawn_blocking(move || {
            relay.restore();
            relay
        });
        self.0 = Some(relay.await.unwrap());
    }
}

impl Drop for OffRuntime {
    fn drop(&mut self) {
        if let Some(relay) = self.0.take() {
            let _ = std::thread::spawn(move || drop(relay)).join();
        }
    }
}

/// The value of the replica's series `name` (with `more` in its labels) in `/metrics`.
async fn replica_series(url: &str, replica: &str, name: &str, more: &str) -> Option<f64> {
    // The label is the replica's `host:port/database`.
    let label = format!("{name}{{replica=\"{replica}/");
    HubClient::new(url)
        .prometheus()
        .await
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&label) && l.contains(more))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits (`limit` at most: a bound against hanging) until `probe` holds.
async fn until<F, Fut>(what: &str, limit: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads through `url` until `stop`, each listing of another size (so the query cache, which
/// keeps an answer for a second, has not seen it), and the status counts; counts the reads and
/// keeps every failure.
fn reader(
    url: &str,
    stop: &Arc<AtomicBool>,
    reads: &Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    // No waiting out a 503: every refusal counts as a failure.
    let client = HubClient::new(url).with_busy_budget(Duration::ZERO);
    let (stop, reads) = (stop.clone(), reads.clone());
    tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut size = 0;
        while !stop.load(Ordering::Relaxed) {
            size = size % 500 + 1;
            let query = ListQuery {
                limit: Some(size),
                ..Default::default()
            };
            if let Err(e) = client.tasks(&query).await {
                failures.push(format!("listing: {e}"));
            }
            if let Err(e) = client.status().await {
                failures.push(format!("status: {e}"));
            }
            reads.fetch_add(2, Ordering::Relaxed);
        }
        failures
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_keep_answering_when_the_replica_goes_away_mid_run() {
    let Some(database) = ScratchSchema::for_test("replica_goes_away") else {
        return;
    };
    let Some(replica) = replica_for_test("replica_goes_away") else {
        return;
    };
    let mut relay = OffRuntime::start(replica).await;
    let through_relay = relay.relay().address().to_string();
    let replica_url = database.url_at(&through_relay);
    let url = database.url().to_string();

    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut hubs = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        let config = dir.path().join("hub.toml");
        // A lag bound no lag here reaches: on a busy machine the replica may be seconds behind,
        // and leaving the rotation on lag is the store's replica tests' subject, not this one's.
        std::fs::write(&config, "[store]\nreplica_max_lag_ms = 600000\n").unwrap();
        let name = format!("hub{n}");
        let args = [
            "--store",
            &url,
            "--replica",
            &replica_url,
            "--hub-name",
            &name,
            "--config",
            config.to_str().unwrap(),
        ];
        hubs.push(HubProcess::start_with(&dir.path().join("data"), free_port(), &args).await);
    }
    let (writes_to, reads_from) = (hubs[0].url.clone(), hubs[1].url.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let workers = spread_workers(
        &[writes_to.clone(), reads_from.clone()],
        &stop,
        Duration::ZERO,
    );
    let reads = Arc::new(AtomicUsize::new(0));
    let reading = reader(&reads_from, &stop, &reads);
    // Reads the replica answered for the reading hub so far.
    let answered = || async {
        replica_series(
            &reads_from,
            &through_relay,
            "hive_store_replica_queries_total",
            "result=\"answered\"",
        )
        .await
        .unwrap_or(0.0)
    };
    until(
        "the replica answers the reading hub's reads",
        Duration::from_secs(120),
        || async { answered().await > 0.0 },
    )
    .await;

    let acked = Acked::default();
    let submitting = submitters(&writes_to, &acked, TOTAL, new_task);
    // Polled closely, so that the cut comes while most of the tasks are still to come.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < CUT_AFTER {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{CUT_AFTER} tasks not acknowledged in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.relay().cut();
    let cut_at = reads.load(Ordering::Relaxed);
    assert!(acked.lock().unwrap().len() < TOTAL, "the cut came mid-run");
    until(
        "the replica leaves the rotation",
        Duration::from_secs(60),
        || async {
            let in_rotation = replica_series(
                &reads_from,
                &through_relay,
                "hive_store_replica_in_rotation",
                "",
            );
            in_rotation.await == Some(0.0)
        },
    )
    .await;
    until("reads after the cut", Duration::from_secs(60), || async {
        reads.load(Ordering::Relaxed) >= cut_at + 200
    })
    .await;

    for submitter in submitting {
        submitter.await.unwrap();
    }
    let client = HubClient::new(&writes_to);
    until_idle(&client, Duration::from_secs(240)).await;
    each_succeeded_once(&client, &acked, TOTAL).await;

    // Restored: it is checked, found healthy and answers reads again.
    let before = answered().await;
    relay.restore().await;
    until(
        "the replica answers again once restored",
        Duration::from_secs(120),
        || async { answered().await > before },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    let failures = reading.await.unwrap();
    assert!(failures.is_empty(), "reads failed: {failures:#?}");
    for worker in workers {
        let _ = worker.await;
    }
    for hub in hubs {
        assert!(hub.terminate().await.success());
    }
}
