//! Read replicas against the streaming replica `.ci/postgres` starts: reads after a commit go
//! to a replica only once it replayed that commit, a replica that falls behind or goes away
//! leaves the rotation while reads keep answering, and comes back when healthy.
//!
//! One test: pausing the replica's replay is seen by everyone using it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hive_core::{Change, TaskStatus};

use super::relay::Relay;
use super::scratch::{ScratchSchema, execute_on, query_on, replica_for_test};
use super::*;
use crate::{BatchWriter, TaskFilter, TaskReader};

fn created(n: u128) -> Change {
    Change::TaskCreated {
        spec: crate::suite::spec(n),
        status: TaskStatus::Queued,
        error: None,
    }
}

/// Waits (a minute at most) until `found` gives something.
fn until<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The ids (as numbers) of the tasks the reader lists.
fn listed(reader: &dyn TaskReader) -> Vec<u128> {
    let mut ids: Vec<u128> = reader
        .list_tasks(&TaskFilter {
            limit: 100,
            ..TaskFilter::default()
        })
        .unwrap()
        .iter()
        .map(|t| t.spec.id.0.as_u128())
        .collect();
    ids.sort_unstable();
    ids
}

/// Resumes the replica's replay when the test ends, passed or not.
struct Paused(String);

impl Paused {
    fn replay(url: String) -> Paused {
        execute_on(&url, "SELECT pg_wal_replay_pause()");
        Paused(url)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        execute_on(&self.0, "SELECT pg_wal_replay_resume()");
    }
}

fn open(db: &ScratchSchema, replica: String, max_lag: Duration) -> PgStore {
    PgStore::open(db.url(), PoolBounds { min: 1, max: 4 })
        .unwrap()
        .with_replicas(&ReplicaConfig {
            urls: vec![replica],
            max_lag,
        })
        .unwrap()
}

#[test]
fn replicas_answer_reads_that_caught_up_and_step_aside_when_behind_or_gone() {
    let Some(db) = ScratchSchema::for_test("replicas") else {
        return;
    };
    let Some(replica) = replica_for_test("replicas") else {
        return;
    };
    let relay = Relay::start(&replica);
    let store = open(
        &db,
        db.url_at(&relay.address().to_string()),
        Duration::from_secs(60),
    );
    let reader = store.reader();
    let mut writer = store.writer();
    assert_eq!(reader.written(), 0, "nothing committed yet");

    writer.apply(&[&[created(1)]]).unwrap();
    let first = reader.written();
    assert!(first > 0, "a commit records the primary's position");
    let on_replica = until("the replica replays the first commit", || {
        reader.replica(first)
    });
    assert_eq!(listed(&*on_replica), [1]);
    let stats = &store.monitor().replicas()[0];
    assert!(stats.in_rotation && stats.reads >= 1, "{stats:?}");
    assert!(stats.label.starts_with("127.0.0.1:"), "{stats:?}");

    // Replay paused (it pauses at the next record it replays: commits are made until it has):
    // a read after the second commit is not given the replica, which would miss the task; one
    // after the first still is.
    let paused = Paused::replay(db.url_at(&replica));
    let mut filler = 100;
    until("the replica's replay pauses", || {
        filler += 1;
        writer.apply(&[&[created(filler)]]).unwrap();
        let state = query_on(
            &db.url_at(&replica),
            "SELECT pg_get_wal_replay_pause_state()",
        );
        (state == "paused").then_some(())
    });
    writer.apply(&[&[created(2)]]).unwrap();
    let second = reader.written();
    assert!(second > first);
    std::thread::sleep(2 * REPLICA_CHECK_EVERY);
    assert!(
        reader.replica(second).is_none(),
        "the replica has not replayed the second commit"
    );
    let behind = reader
        .replica(first)
        .expect("still in rotation within its bound");
    let seen = listed(&*behind);
    assert!(
        seen.contains(&1) && !seen.contains(&2),
        "the replica's view: {seen:?}"
    );

    // With a tight bound the same pause takes it out of the rotation.
    let strict = open(&db, db.url_at(&replica), Duration::from_millis(1));
    until("the lagging replica leaves the rotation", || {
        let stats = strict.monitor().replicas().remove(0);
        (!stats.in_rotation && stats.lag_seconds.is_some_and(|lag| lag > 0.001)).then_some(())
    });
    let problem = strict
        .monitor()
        .replicas()
        .remove(0)
        .problem
        .unwrap_or_default();
    assert!(problem.contains("behind the primary"), "{problem}");
    drop(paused);
    drop(strict);
    let on_replica = until("the replica replays the second commit", || {
        reader.replica(second)
    });
    assert!(listed(&*on_replica).contains(&2));

    // Gone: the read on it is answered by the primary, and it leaves the rotation at once.
    relay.cut();
    assert!(listed(&*on_replica).contains(&2), "answered by the primary");
    let stats = store.monitor().replicas().remove(0);
    assert!(!stats.in_rotation && stats.failures >= 1, "{stats:?}");
    assert!(reader.replica(0).is_none());
    relay.restore();
    let back = until("the replica returns after the cut", || {
        reader.replica(second)
    });
    assert!(listed(&*back).contains(&2));
    assert!(store.monitor().replicas()[0].reads >= 2);
}

#[test]
fn a_store_without_replicas_reads_on_the_primary() {
    let Some(db) = ScratchSchema::for_test("no_replicas") else {
        return;
    };
    let store = PgStore::open(db.url(), PoolBounds { min: 1, max: 2 })
        .unwrap()
        .with_replicas(&ReplicaConfig::default())
        .unwrap();
    let mut writer = store.writer();
    writer.apply(&[&[created(1)]]).unwrap();
    let reader: Arc<dyn TaskReader> = Arc::new(store.reader());
    assert_eq!(reader.written(), 0);
    assert!(reader.replica(0).is_none());
    assert!(store.monitor().replicas().is_empty());
}
