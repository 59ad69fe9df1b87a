//! `hive worker` on SIGTERM: no new work, running commands get the grace period, then their whole
//! process group is killed and the task is handed back as a failed attempt, not left to its lease.

use std::process::Stdio;
use std::time::Duration;

use hive_proto::api::{AttemptOutcome, NewTask, TaskStatus};

use crate::util::*;

/// Whether a process runs (a zombie waiting to be reaped does not count).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z')
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_commands_whole_process_group_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(dir.path(), free_port()).await;
    let pids = dir.path().join("pids");
    // `sleep` runs as a child of the `sh -c`: killing only the shell would leave it running.
    let exec = format!("sleep 30 & echo $! >> {}; wait; cat", pids.display());
    let mut worker = hive()
        .args([
            "worker",
            "--capability",
            "nap",
            "--grace",
            "300ms",
            "--exec",
            &exec,
        ])
        .env("HIVE_HUB", &hub.url)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = hive_client::HubClient::new(&hub.url);
    let task = client
        .submit(&NewTask {
            max_attempts: Some(1),
            timeout_ms: Some(600_000),
            ..NewTask::new("nap")
        })
        .await
        .unwrap();
    let mut sleeper = None;
    for _ in 0..200 {
        sleeper = std::fs::read_to_string(&pids)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        if sleeper.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sleeper = sleeper.expect("the command started");
    assert!(running(sleeper));

    let pid = worker.id().unwrap().to_string();
    let sent = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("the worker exits")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    // A SIGKILL is delivered asynchronously: the process may still be on its way out.
    for _ in 0..200 {
        if !running(sleeper) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !running(sleeper),
        "the command's child outlived the worker: {:?}",
        std::fs::read_to_string(format!("/proc/{sleeper}/stat")),
    );

    // Reported by the worker, not left to a ten-minute lease.
    let done = client
        .wait(&task.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Failed);
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Failed));
    let error = done.error.unwrap_or_default();
    assert!(error.contains("shut down"), "{error}");
    hub.terminate().await;
}
