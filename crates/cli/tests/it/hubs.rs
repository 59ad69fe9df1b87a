//! Three hubs on one PostgreSQL schema (`HIVE_TEST_POSTGRES`; skipped without it, a failure
//! under `.ci/run`), workers spread across them, submissions to all three, and one hub killed
//! with SIGKILL mid-run and started again under its name. Every acknowledged task must finish
//! exactly once (one successful attempt on record) with its own result, and none stay stuck.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hive_client::worker::{Outcome, WorkerError, WorkerExit, run_worker};
use hive_client::{HubClient, WorkerOptions};
use hive_proto::RawValue;
use hive_proto::api::NewTask;
use hive_proto::protocol::Assignment;
use hive_store::postgres::scratch::ScratchSchema;

use crate::survival::{Acked, each_succeeded_once, submitters, until_idle};
use crate::util::*;

const TOTAL: usize = 20_000;
const KILL_AFTER: usize = 8_000;

pub(crate) fn new_task(n: usize) -> NewTask {
    NewTask {
        payload: Some(RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap()),
        timeout_ms: Some(2_000),
        backoff_ms: Some(20),
        ..NewTask::new("spread")
    }
}

async fn start(url: &str, port: u16, name: &str, dir: &std::path::Path) -> HubProcess {
    let config = dir.join("hub.toml");
    // A short lease: a hub that vanished is noticed within seconds.
    std::fs::write(&config, "[store]\nhub_lease_s = 2\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    HubProcess::start_with(
        &dir.join("data"),
        port,
        &["--store", url, "--hub-name", name, "--config", &config],
    )
    .await
}

type Worker = tokio::task::JoinHandle<Result<WorkerExit, WorkerError>>;

/// A worker of 16 slots on each hub, each task answered with its payload after `each`,
/// until `stop`.
pub(crate) fn spread_workers(
    urls: &[String],
    stop: &Arc<AtomicBool>,
    each: Duration,
) -> Vec<Worker> {
    urls.iter()
        .map(|url| {
            let stop = stop.clone();
            let options = WorkerOptions {
                max_reconnect_delay: Duration::from_millis(200),
                ..WorkerOptions::new(url, &["spread"], 16)
            };
            let executor = Arc::new(move |task: Assignment| async move {
                if !each.is_zero() {
                    tokio::time::sleep(each).await;
                }
                Outcome::Success(task.payload)
            });
            tokio::spawn(run_worker(options, executor, async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_lose_nothing_when_one_is_killed_with_9() {
    let Some(database) = ScratchSchema::for_test("three_hubs_lose_nothing") else {
        return;
    };
    let url = database.url().to_string();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut hubs = Vec::new();
    for (n, (dir, port)) in dirs.iter().zip(&ports).enumerate() {
        hubs.push(start(&url, *port, &format!("hub{n}"), dir.path()).await);
    }
    let urls: Vec<String> = hubs.iter().map(|h| h.url.clone()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let workers = spread_workers(&urls, &stop, Duration::ZERO);

    let acked = Acked::default();
    let submitters: Vec<_> = urls
        .iter()
        .flat_map(|url| submitters(url, &acked, TOTAL, new_task))
        .collect();
    while acked.lock().unwrap().len() < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hubs[1].kill_9().await;
    assert!(
        acked.lock().unwrap().len() < TOTAL,
        "the kill came mid-stream"
    );
    // Under its name again: it takes its earlier run's tasks over as it starts.
    hubs[1] = start(&url, ports[1], "hub1", dirs[1].path()).await;
    for submitter in submitters {
        submitter.await.unwrap();
    }

    let client = HubClient::new(&urls[0]);
    until_idle(&client, Duration::from_secs(240)).await;
    each_succeeded_once(&client, &acked, TOTAL).await;
    let list = client.hubs().await.unwrap();
    assert_eq!(list.items.len(), 3, "the killed run's row went: {list:?}");
    assert_eq!(list.pooled, 0);
    // `hive hubs`: the same list on the command line, the hub that answered marked.
    let (code, out, err) = crate::cli::run(&["hubs"], &urls[0]).await;
    assert_eq!(code, 0, "{err}");
    for name in [
        "hub0 *",
        "hub1",
        "hub2",
        "store: postgres; pooled (held by no hub): 0",
    ] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    let (code, out, _) = crate::cli::run(&["hubs", "--json"], &urls[1]).await;
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 3, "{out}");
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    for hub in hubs {
        assert!(hub.terminate().await.success());
    }
}

/// A rolling upgrade's step: a hub stopped with SIGTERM mid-run (tasks running on its worker,
/// more queued) stops claiming, lets what runs finish, hands the rest to the other hub and exits
/// 0; every acknowledged task finishes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_stopped_with_sigterm_mid_run_hands_its_work_on_and_loses_nothing() {
    one_of_two_stops("a_hub_stopped_with_sigterm", Stop::Term).await;
}

/// A hub killed with -9 mid-run and not started again: once its lease ends the other hub takes
/// its tasks over (those its worker ran are retried, fenced by attempt); every acknowledged
/// task finishes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_for_good_has_its_tasks_taken_over_by_the_other() {
    one_of_two_stops("a_hub_killed_for_good", Stop::Kill).await;
}

enum Stop {
    Term,
    Kill,
}

/// Two hubs, a worker on each, submissions to both; the first hub stops a third of the way in.
async fn one_of_two_stops(test: &str, how: Stop) {
    const TOTAL: usize = 4_000;
    let Some(database) = ScratchSchema::for_test(test) else {
        return;
    };
    let url = database.url().to_string();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut hubs = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        hubs.push(start(&url, free_port(), &format!("hub{n}"), dir.path()).await);
    }
    let urls: Vec<String> = hubs.iter().map(|h| h.url.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Each task takes a moment, so that some run when the stop comes.
    let workers = spread_workers(&urls, &stop, Duration::from_millis(2));
    let acked = Acked::default();
    let submitters: Vec<_> = urls
        .iter()
        .flat_map(|url| submitters(url, &acked, TOTAL, new_task))
        .collect();
    while acked.lock().unwrap().len() < TOTAL / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut stopped = hubs.remove(0);
    match how {
        Stop::Term => assert!(
            stopped.terminate().await.success(),
            "the stopped hub exits 0"
        ),
        Stop::Kill => stopped.kill_9().await,
    }
    for submitter in submitters {
        submitter.await.unwrap();
    }
    let client = HubClient::new(&urls[1]);
    until_idle(&client, Duration::from_secs(240)).await;
    each_succeeded_once(&client, &acked, TOTAL).await;
    assert_eq!(client.hubs().await.unwrap().pooled, 0);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    for hub in hubs {
        assert!(hub.terminate().await.success());
    }
}
