//! Several hubs on one database, store side: claiming from the pool, leases, fencing, taking a
//! lost hub's tasks over. Each `PgStore` opened is a hub of its own.

use std::sync::Arc;
use std::time::Duration;

use hive_core::{Capability, Change, TaskId, TaskSpec, TaskStatus, Timestamp};
use uuid::Uuid;

use super::scratch::ScratchSchema;
use super::*;
use crate::hubs::{CancelElsewhere, HubLoad, Membership, Renewal};
use crate::{BatchWriter, StoreError, TaskReader};

fn hub(database: &ScratchSchema, name: &str) -> PgStore {
    let identity = HubIdentity {
        name: Some(name.into()),
        lease: Duration::from_secs(30),
    };
    PgStore::open_as(database.url(), PoolBounds { min: 1, max: 4 }, &identity).unwrap()
}

fn echo() -> Capability {
    Capability::parse("echo", "capability").unwrap()
}

/// Task `n`, without the suite's idempotency key, depending on `depends_on`.
fn spec(n: u128, priority: u8, depends_on: Vec<TaskId>) -> TaskSpec {
    TaskSpec {
        priority,
        depends_on,
        idempotency_key: None,
        created_at: Timestamp(1_000 + n as u64),
        ..(*crate::suite::spec(n)).clone()
    }
}

fn created(spec: &TaskSpec, status: TaskStatus) -> Change {
    Change::TaskCreated {
        spec: Arc::new(spec.clone()),
        status,
        error: None,
    }
}

/// A queued task created and released to the pool in one commit, as a hub with no room does.
fn pooled(n: u128, priority: u8) -> [Change; 2] {
    let spec = spec(n, priority, Vec::new());
    [
        created(&spec, TaskStatus::Queued),
        Change::TaskReleased {
            task: spec.id,
            capability: spec.capability.clone(),
            priority: spec.priority,
            created_at: spec.created_at,
            rank: hive_core::queue::queue_key(spec.created_at, spec.priority, 5_000, spec.id).0,
        },
    ]
}

fn ids(adopted: &crate::Adopted) -> Vec<u128> {
    let mut ids: Vec<u128> = adopted
        .tasks
        .iter()
        .map(|t| t.spec.id.0.as_u128())
        .collect();
    ids.sort();
    ids
}

#[test]
fn pooled_work_is_claimed_most_urgent_first_and_once() {
    let Some(database) = ScratchSchema::for_test("pooled_work_is_claimed") else {
        return;
    };
    let (a, b) = (hub(&database, "a"), hub(&database, "b"));
    let mut notices = b.listen();
    assert_eq!(notices.blocking_recv(), Some(Notice::Listening));
    let changes: Vec<Change> = [(1, 0), (2, 9), (3, 5)]
        .into_iter()
        .flat_map(|(n, p)| pooled(n, p))
        .collect();
    a.writer().apply(&[&changes]).unwrap();
    // The commit named the capability to every listening hub.
    assert_eq!(notices.blocking_recv(), Some(Notice::Pooled("echo".into())));
    // Nobody holds them: not the hub that pooled them either.
    assert!(a.reader().load_active().unwrap().is_empty());
    assert_eq!(b.membership().pooled().unwrap(), 3);

    let first = b.membership().claim(&[(echo(), 2)]).unwrap();
    assert_eq!(ids(&first), vec![2, 3], "priority 9 and 5 before 0");
    assert!(first.tasks.iter().all(|t| t.status == TaskStatus::Queued));
    let second = a.membership().claim(&[(echo(), 5)]).unwrap();
    assert_eq!(ids(&second), vec![1]);
    assert!(
        b.membership()
            .claim(&[(echo(), 5)])
            .unwrap()
            .tasks
            .is_empty()
    );
    // Each hub holds what it claimed, and runs it as if it had been submitted there.
    assert_eq!(b.reader().load_active().unwrap().len(), 2);
    assert_eq!(a.reader().load_active().unwrap().len(), 1);
}

#[test]
fn hubs_claiming_together_never_take_the_same_task() {
    let Some(database) = ScratchSchema::for_test("hubs_claiming_together") else {
        return;
    };
    let hubs: Vec<PgStore> = (0..3).map(|n| hub(&database, &format!("h{n}"))).collect();
    let changes: Vec<Change> = (1..=300).flat_map(|n| pooled(n, 5)).collect();
    hubs[0].writer().apply(&[&changes]).unwrap();
    let claimed: Vec<Vec<u128>> = std::thread::scope(|scope| {
        let workers: Vec<_> = hubs
            .iter()
            .map(|h| {
                scope.spawn(move || {
                    let membership = h.membership();
                    let mut mine = Vec::new();
                    loop {
                        let got = membership.claim(&[(echo(), 7)]).unwrap();
                        if got.tasks.is_empty() {
                            return mine;
                        }
                        mine.extend(ids(&got));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut all: Vec<u128> = claimed.concat();
    all.sort();
    assert_eq!(
        all,
        (1..=300).collect::<Vec<_>>(),
        "every task claimed exactly once"
    );
}

#[test]
fn a_hub_whose_lease_ended_is_fenced_out_and_its_tasks_adopted() {
    let Some(database) = ScratchSchema::for_test("a_hub_whose_lease_ended") else {
        return;
    };
    let (a, b) = (hub(&database, "a"), hub(&database, "b"));
    let parent = spec(1, 5, Vec::new());
    let child = spec(2, 5, vec![parent.id]);
    let mut writer = a.writer();
    writer
        .apply(&[&[
            created(&parent, TaskStatus::Queued),
            created(&child, TaskStatus::Waiting),
        ]])
        .unwrap();
    // Not yet: a's lease runs.
    assert!(b.membership().adopt_lost().unwrap().tasks.is_empty());
    assert!(matches!(
        b.membership().renew(&HubLoad::default()).unwrap(),
        Renewal::Renewed { others: 1 }
    ));

    a.membership().leave().unwrap();
    let adopted = b.membership().adopt_lost().unwrap();
    assert_eq!(ids(&adopted), vec![1, 2], "a whole graph moves together");
    assert_eq!(b.reader().load_active().unwrap().len(), 2);

    // Whatever a still tries to write is refused in the database.
    let late = writer.apply(&[&[Change::TaskReady {
        task: TaskId(Uuid::from_u128(2)),
        capability: echo(),
        at: Timestamp(5_000),
    }]]);
    assert!(matches!(late, Err(StoreError::LeaseLost)), "{late:?}");
    assert_eq!(
        b.reader().task_status(TaskId(Uuid::from_u128(2))).unwrap(),
        Some(TaskStatus::Waiting)
    );
    assert_eq!(
        a.membership().renew(&HubLoad::default()).unwrap(),
        Renewal::Lost
    );
    assert!(matches!(
        a.membership().claim(&[(echo(), 1)]),
        Err(StoreError::LeaseLost)
    ));
    // What it learned too: written apart from its tasks, but fenced as they are.
    let learned = Change::Learned(hive_core::LearnedEstimate {
        identity: "gpu-box".into(),
        capability: echo(),
        estimate: hive_core::Estimate::default(),
    });
    writer.apply(&[&[learned]]).unwrap();
    assert!(b.reader().load_learned().unwrap().is_empty());
}

#[test]
fn a_hub_started_again_under_its_name_takes_its_tasks_over_at_once() {
    let Some(database) = ScratchSchema::for_test("a_hub_started_again") else {
        return;
    };
    let first = hub(&database, "same");
    let mut writer = first.writer();
    writer
        .apply(&[&[crate::suite::created(1), crate::suite::created(2)]])
        .unwrap();
    // The first run is not stopped (killed, say): its lease still runs.
    let second = hub(&database, "same");
    assert_eq!(second.reader().load_active().unwrap().len(), 2);
    assert!(matches!(
        writer.apply(&[&[crate::suite::created(3)]]),
        Err(StoreError::LeaseLost)
    ));
    let hubs = second.membership().hubs().unwrap();
    assert_eq!(hubs.len(), 1, "{hubs:?}");
    assert_eq!(hubs[0].id, second.membership().id());
}

#[test]
fn the_list_of_hubs_shows_each_ones_load_and_lease() {
    let Some(database) = ScratchSchema::for_test("the_list_of_hubs") else {
        return;
    };
    let (a, b) = (hub(&database, "a"), hub(&database, "b"));
    let load = HubLoad {
        address: "127.0.0.1:7001".into(),
        agents: 2,
        slots: 16,
        tasks: 5,
        queued: 1,
    };
    a.membership().renew(&load).unwrap();
    b.membership().leave().unwrap();
    let hubs = a.membership().hubs().unwrap();
    let names: Vec<(&str, bool)> = hubs.iter().map(|h| (h.name.as_str(), h.held)).collect();
    assert_eq!(names, vec![("a", true), ("b", false)]);
    assert_eq!(hubs[0].load, load);
}

#[test]
fn a_cancel_reaches_a_task_wherever_it_is() {
    let Some(database) = ScratchSchema::for_test("a_cancel_reaches_a_task") else {
        return;
    };
    let (a, b) = (hub(&database, "a"), hub(&database, "b"));
    let mut notices = b.listen();
    assert_eq!(notices.blocking_recv(), Some(Notice::Listening));
    let mut changes: Vec<Change> = pooled(1, 5).into();
    changes.push(created(&spec(2, 5, Vec::new()), TaskStatus::Queued));
    a.writer().apply(&[&changes]).unwrap();
    assert_eq!(notices.blocking_recv(), Some(Notice::Pooled("echo".into())));
    let membership = b.membership();
    let id = |n: u128| TaskId(Uuid::from_u128(n));
    let at = Timestamp(9_000);

    assert_eq!(
        membership.cancel_elsewhere(id(1), at).unwrap(),
        CancelElsewhere::CancelledInPool
    );
    assert_eq!(membership.pooled().unwrap(), 0);
    assert_eq!(
        b.reader().task_status(id(1)).unwrap(),
        Some(TaskStatus::Cancelled)
    );
    assert_eq!(
        membership.cancel_elsewhere(id(1), at).unwrap(),
        CancelElsewhere::Ended(TaskStatus::Cancelled)
    );
    // Held by a: a is asked, on the channel every hub listens to.
    assert_eq!(
        membership.cancel_elsewhere(id(2), at).unwrap(),
        CancelElsewhere::Forwarded
    );
    assert_eq!(
        notices.blocking_recv(),
        Some(Notice::Cancel(id(2).to_string()))
    );
    assert_eq!(
        membership.cancel_elsewhere(id(3), at).unwrap(),
        CancelElsewhere::Unknown
    );
}

#[test]
fn a_parked_task_is_taken_over_once_its_parents_ended() {
    let Some(database) = ScratchSchema::for_test("a_parked_task_is_taken_over") else {
        return;
    };
    let (a, b) = (hub(&database, "a"), hub(&database, "b"));
    let parent = spec(1, 5, Vec::new());
    let child = spec(2, 5, vec![parent.id]);
    let mut writer = a.writer();
    writer
        .apply(&[&[
            created(&parent, TaskStatus::Queued),
            created(&child, TaskStatus::Waiting),
            Change::TaskParked {
                task: child.id,
                parents: vec![parent.id],
            },
        ]])
        .unwrap();
    // Held by no hub: not a's to load, nobody's to adopt while its parent runs.
    assert_eq!(a.reader().load_active().unwrap().len(), 1);
    assert!(b.membership().adopt_unparked().unwrap().tasks.is_empty());
    writer
        .apply(&[&[Change::TaskFinished {
            task: parent.id,
            capability: echo(),
            status: TaskStatus::Cancelled,
            error: None,
            result: None,
            at: Timestamp(5_000),
        }]])
        .unwrap();
    let adopted = b.membership().adopt_unparked().unwrap();
    assert_eq!(ids(&adopted), vec![2]);
    assert_eq!(adopted.tasks[0].status, TaskStatus::Waiting);
    assert_eq!(
        adopted.parents.get(&parent.id).map(|end| end.status()),
        Some(TaskStatus::Cancelled),
        "the parent's end goes with it, for its inputs"
    );
    assert!(a.membership().adopt_unparked().unwrap().tasks.is_empty());
    assert_eq!(b.reader().load_active().unwrap().len(), 1);
}

#[test]
fn renewals_do_not_wait_for_a_busy_pool() {
    let Some(database) = ScratchSchema::for_test("renewals_do_not_wait") else {
        return;
    };
    let identity = HubIdentity {
        name: Some("busy".into()),
        lease: Duration::from_secs(30),
    };
    let store = PgStore::open_as(database.url(), PoolBounds { min: 1, max: 1 }, &identity).unwrap();
    // Every pooled connection is taken (by a long request, say).
    let held = store
        .shared
        .block(|shared| async move { shared.connection().await })
        .unwrap();
    let renewed = store.membership().renew(&HubLoad::default()).unwrap();
    assert_eq!(renewed, Renewal::Renewed { others: 0 });
    drop(held);
}

#[test]
fn a_swarm_message_reaches_the_other_hubs_and_their_reports_reach_the_sender() {
    use crate::swarm::{SwarmMessage, SwarmRelay};
    let Some(database) = ScratchSchema::for_test("swarm_relay") else {
        return;
    };
    let (a, b) = (hub(&database, "a"), hub(&database, "b"));
    let (from_a, at_b) = (a.swarm_relay(), b.swarm_relay());
    let message = SwarmMessage {
        id: Uuid::now_v7(),
        group: "council".into(),
        payload: r#"{"q":"vote"}"#.into(),
        origin: a.membership().id(),
        timeout_ms: 1_000,
    };
    let expected = from_a.publish(&message).unwrap();
    assert_eq!(
        expected,
        [b.membership().id()],
        "the other live hub reports"
    );
    assert_eq!(at_b.message(message.id).unwrap(), Some(message.clone()));

    let agent = Uuid::now_v7();
    at_b.delivered(message.id, &[agent]).unwrap();
    at_b.replied(message.id, agent, r#"{"yes":true}"#).unwrap();
    let relayed = from_a.relayed(message.id).unwrap();
    assert_eq!(relayed.delivered, [(b.membership().id(), vec![agent])]);
    assert_eq!(relayed.replies, [(agent, r#"{"yes":true}"#.to_string())]);

    // Forgotten: gone with its reports, and a late report writes nothing.
    from_a.forget(message.id).unwrap();
    assert_eq!(at_b.message(message.id).unwrap(), None);
    at_b.replied(message.id, Uuid::now_v7(), "null").unwrap();
    assert_eq!(from_a.relayed(message.id).unwrap(), Default::default());
}

#[test]
fn a_long_pooled_task_ages_past_fresher_higher_priorities() {
    let Some(database) = ScratchSchema::for_test("pooled_work_ages") else {
        return;
    };
    let a = hub(&database, "a");
    // Priority 0 submitted a minute before a priority-9 task: with 5 s aging, 12 levels older.
    let old_low = TaskSpec {
        created_at: Timestamp(1_000),
        ..spec(1, 0, Vec::new())
    };
    let new_high = TaskSpec {
        created_at: Timestamp(61_000),
        ..spec(2, 9, Vec::new())
    };
    let mut changes = Vec::new();
    for spec in [&old_low, &new_high] {
        changes.push(created(spec, TaskStatus::Queued));
        changes.push(Change::TaskReleased {
            task: spec.id,
            capability: spec.capability.clone(),
            priority: spec.priority,
            created_at: spec.created_at,
            rank: hive_core::queue::queue_key(spec.created_at, spec.priority, 5_000, spec.id).0,
        });
    }
    a.writer().apply(&[&changes]).unwrap();
    let first = a.membership().claim(&[(echo(), 1)]).unwrap();
    assert_eq!(
        ids(&first),
        vec![1],
        "the aged task first, as in one hub's queue"
    );
}

#[test]
fn a_task_pooled_without_a_rank_by_an_older_hub_gets_the_default_agings() {
    let Some(database) = ScratchSchema::for_test("pool_rank_default") else {
        return;
    };
    let _hub = hub(&database, "a");
    let rank = super::scratch::query_on(
        database.url(),
        "INSERT INTO pool (task_id, capability, priority, created_at)
         VALUES (gen_random_uuid(), 'echo', 3, 100000) RETURNING rank",
    );
    assert_eq!(rank, (100_000 - 3 * 5_000).to_string());
}

/// Two hubs each found a key free and submitted a task with it: the second commit is refused
/// whole, with an error naming the key (the hub answers that request 409, the others 503).
#[test]
fn a_key_taken_by_another_hub_meanwhile_fails_the_commit_naming_it() {
    let Some(database) = ScratchSchema::for_test("a_key_taken_meanwhile") else {
        return;
    };
    let (a, b) = (hub(&database, "a"), hub(&database, "b"));
    let keyed = |n: u128| TaskSpec {
        idempotency_key: Some("order-7 (retry)".into()),
        ..spec(n, 0, Vec::new())
    };
    let mut writer = a.writer();
    writer
        .apply(&[&[created(&keyed(1), TaskStatus::Queued)]])
        .unwrap();
    let mut writer = b.writer();
    let other = created(&spec(3, 0, Vec::new()), TaskStatus::Queued);
    let taken = writer.apply(&[&[other], &[created(&keyed(2), TaskStatus::Queued)]]);
    assert!(
        matches!(&taken, Err(StoreError::IdempotencyKeyTaken(key)) if key == "order-7 (retry)"),
        "{taken:?}"
    );
    // Nothing of the transaction was written.
    let reader = b.reader();
    for n in [2, 3] {
        let id = TaskId(Uuid::from_u128(n));
        assert_eq!(reader.task_status(id).unwrap(), None, "task {n}");
    }
}
