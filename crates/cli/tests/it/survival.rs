//! What the kill -9 tests share: submitters that keep acknowledged tasks, waiting until nothing is
//! active, and the check that every acknowledged task succeeded exactly once with its own result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_client::HubClient;
use hive_client::http::ListQuery;
use hive_proto::api::{AttemptOutcome, NewTask, TaskStatus};
use tokio::task::JoinHandle;

/// Acknowledged tasks: id -> the number in its payload.
pub type Acked = Arc<Mutex<HashMap<String, usize>>>;

/// Four submitters until `total` tasks are acknowledged: one sends single tasks, three batches of
/// 100. A failed submit (the hub is down) was not acknowledged and is simply not counted.
pub fn submitters(
    url: &str,
    acked: &Acked,
    total: usize,
    new_task: fn(usize) -> NewTask,
) -> Vec<JoinHandle<()>> {
    (0..4usize)
        .map(|s| {
            let acked = acked.clone();
            let client = HubClient::new(url);
            tokio::spawn(async move {
                let mut next = s * 1_000_000;
                while acked.lock().unwrap().len() < total {
                    let numbers: Vec<usize> = (next..next + if s == 0 { 1 } else { 100 }).collect();
                    next += numbers.len();
                    let outcome = if s == 0 {
                        client
                            .submit(&new_task(numbers[0]))
                            .await
                            .map(|t| vec![t.id])
                    } else {
                        client
                            .submit_batch(numbers.iter().map(|n| new_task(*n)).collect())
                            .await
                    };
                    match outcome {
                        Ok(ids) => acked.lock().unwrap().extend(ids.into_iter().zip(numbers)),
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        })
        .collect()
}

/// Waits until no task is waiting, queued or running; panics after `limit` (a bound against
/// hanging, not a timing check).
pub async fn until_idle(client: &HubClient, limit: Duration) {
    let started = std::time::Instant::now();
    loop {
        let status = client.status().await.unwrap();
        let active = status.tasks["waiting"] + status.tasks["queued"] + status.tasks["running"];
        if active == 0 {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "tasks still active after {limit:?}: {:?}",
            status.tasks
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every acknowledged task exists, succeeded with exactly one successful attempt on record, and
/// its result is its own payload.
pub async fn each_succeeded_once(client: &HubClient, acked: &Acked, total: usize) {
    let mut stored = HashMap::new();
    let mut cursor = None;
    loop {
        let page = client
            .tasks(&ListQuery {
                limit: Some(1000),
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        for task in page.items {
            stored.insert(task.id.clone(), task);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= total);
    for (id, n) in acked.iter() {
        let task = stored
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged task {id} is lost"));
        assert_eq!(
            task.status,
            TaskStatus::Succeeded,
            "task {id}: {:?}",
            task.error
        );
        let successes = task
            .attempts
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
            .count();
        assert_eq!(successes, 1, "task {id} completed {successes} times");
        assert_eq!(
            task.result.as_ref().unwrap().get(),
            format!(r#"{{"n":{n}}}"#)
        );
    }
}
