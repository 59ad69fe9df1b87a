//! The store's behaviour, one suite for both backends: each function is a test that
//! `sqlite/tests.rs` runs on a SQLite file in a temporary directory and `postgres/tests.rs` on a
//! schema of its own in a real PostgreSQL ([`store_suite!`]).

use std::sync::Arc;

use hive_core::{
    AgentId, AgentSnapshot, AgentSpec, AgentState, AttemptOutcome, Backoff, Capability, Change,
    ConsensusSpec, NextStatus, OnParentFailure, TaskEnd, TaskId, TaskSpec, TaskStatus, Timestamp,
};
use uuid::Uuid;

use crate::{
    AlertLog, AlertRecord, BatchWriter, GroupCommit, ModelStore, StoreError, StoredAttempt,
    TaskFilter, TaskReader, TokenStore, WriteBatch,
};

/// A backend under test: a store opened on a database of its own.
pub trait Backend: Sized {
    fn writer(&self) -> impl BatchWriter;
    fn reader(&self) -> impl TaskReader;
    fn tokens(&self) -> impl TokenStore;
    fn alerts(&self) -> impl AlertLog;
    fn models(&self) -> impl ModelStore;
    /// Closes the store and opens the same database again.
    fn reopen(self) -> Self;
    /// The ids in the agents table, sorted: nothing in the store's API reads them back (the
    /// scheduler's agent list is the live view), so the suite looks at the rows themselves.
    fn agent_rows(&self) -> Vec<Uuid>;
}

/// A `#[test]` per function of the suite, each on a backend from `$open(test_name)` (an
/// `Option`: `None` skips, for a PostgreSQL that is not configured).
macro_rules! store_suite {
    ($open:path) => {
        store_suite!(@tests $open;
            a_task_and_its_attempts_round_trip,
            a_consensus_task_keeps_its_replicas_results_and_its_agreed_value,
            how_a_task_ended_is_read_for_its_dependents,
            a_failed_transaction_writes_nothing,
            a_long_group_that_fails_at_its_end_writes_nothing,
            listing_pages_newest_first_and_filters,
            reopening_keeps_data_and_does_not_migrate_twice,
            group_commit_answers_each_batch_after_its_commit,
            a_task_created_and_started_in_one_batch_is_stored_as_if_written_in_two_steps,
            each_optional_field_of_a_task_reads_back_as_written,
            a_task_whose_whole_life_is_one_commit_is_stored_as_if_written_step_by_step,
            every_status_is_listed_counted_and_reloaded_as_written,
            an_attempt_log_reads_the_same_at_every_step_of_a_task_life,
            tokens_keep_only_their_hash_and_survive_a_reopen,
            learned_estimates_are_kept_latest_first_and_read_back_after_reopening,
            the_alert_history_is_read_newest_first,
            a_saved_model_is_replaced_by_the_next_save_and_survives_a_reopen,
            attempts_given_back_unstarted_are_counted_on_reload,
            an_agent_forgotten_by_the_scheduler_leaves_the_store,
        );
    };
    (@tests $open:path; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                if let Some(backend) = $open(stringify!($name)) {
                    $crate::suite::$name(backend);
                }
            }
        )*
    };
}
pub(crate) use store_suite;

pub fn spec(n: u128) -> Arc<TaskSpec> {
    Arc::new(TaskSpec {
        id: TaskId(Uuid::from_u128(n)),
        capability: Capability::parse("echo", "capability").unwrap(),
        payload: r#"{"n":1}"#.into(),
        priority: 5,
        max_attempts: 3,
        timeout_ms: 1_000,
        backoff: Backoff::default(),
        idempotency_key: Some(format!("key-{n}")),
        depends_on: vec![TaskId(Uuid::from_u128(n + 100))],
        // Both kinds, so that a round trip covers the column.
        on_parent_failure: if n % 2 == 1 {
            OnParentFailure::Run
        } else {
            OnParentFailure::Fail
        },
        consensus: None,
        created_at: Timestamp(10),
        submitted_by: None,
        // Hints on odd tasks only, so that a round trip covers both a value and NULL.
        features: (n % 2 == 1)
            .then(|| {
                hive_core::Feature::from_pairs([
                    ("tokens".to_string(), 1_200.5),
                    ("a".to_string(), -3.0),
                ])
            })
            .flatten(),
    })
}

pub fn created(n: u128) -> Change {
    Change::TaskCreated {
        spec: spec(n),
        status: TaskStatus::Waiting,
        error: None,
    }
}

pub fn a_task_and_its_attempts_round_trip(b: impl Backend) {
    let mut writer = b.writer();
    let agent = AgentId(Uuid::from_u128(7));
    let id = spec(1).id;
    writer
        .apply(&[&[
            created(1),
            Change::TaskReady {
                task: id,
                capability: spec(1).capability.clone(),
                at: Timestamp(11),
            },
            Change::AttemptStarted {
                spec: spec(1),
                attempt: 1,
                agent,
                started_at: Timestamp(12),
                lease_until: Timestamp(1_012),
                queued_ms: 1,
                inputs: vec![],
                identity: None,
            },
        ]])
        .unwrap();
    let reader = b.reader();
    let running = reader.get_task(id).unwrap().unwrap();
    assert_eq!(running.status, TaskStatus::Running);
    assert_eq!(running.spec, *spec(1));
    assert_eq!(running.lease_until, Some(Timestamp(1_012)));
    writer
        .apply(&[&[Change::AttemptEnded {
            task: id,
            capability: spec(1).capability.clone(),
            attempt: 1,
            agent: Some(agent),
            created_at: Timestamp(10),
            started_at: Timestamp(12),
            ended_at: Timestamp(20),
            outcome: AttemptOutcome::Succeeded,
            output: Some("[42]".into()),
            error: None,
            next: NextStatus::Succeeded,
        }]])
        .unwrap();
    let done = reader.get_task(id).unwrap().unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.result.as_deref(), Some("[42]"));
    assert_eq!(done.attempt_log.len(), 1);
    assert_eq!(done.attempt_log[0].agent, Some(agent));
    assert_eq!(done.attempt_log[0].outcome, Some(AttemptOutcome::Succeeded));
    assert_eq!(
        reader.find_by_idempotency_key("key-1").unwrap(),
        Some((id, TaskStatus::Succeeded))
    );
    assert_eq!(reader.task_status(id).unwrap(), Some(TaskStatus::Succeeded));
    assert_eq!(reader.task_status(spec(2).id).unwrap(), None);
    assert_eq!(
        reader.task_end(id).unwrap(),
        Some(TaskEnd::Succeeded("[42]".into()))
    );
    assert_eq!(reader.task_end(spec(2).id).unwrap(), None);
}

pub fn a_consensus_task_keeps_its_replicas_results_and_its_agreed_value(b: impl Backend) {
    let mut writer = b.writer();
    let mut task = (*spec(3)).clone();
    task.depends_on.clear();
    task.consensus = ConsensusSpec::from_fields(Some(3), Some(2), Some("/a"))
        .unwrap()
        .map(Box::new);
    let task = Arc::new(task);
    let agent = |n: u128| AgentId(Uuid::from_u128(n));
    let started = |attempt: u32| Change::AttemptStarted {
        spec: task.clone(),
        attempt,
        agent: agent(u128::from(attempt)),
        started_at: Timestamp(20),
        lease_until: Timestamp(1_020),
        queued_ms: 0,
        inputs: vec![],
        // The first replica's name is kept on its attempt; the second is an older row's.
        identity: (attempt == 1).then(|| "voter-a".into()),
    };
    let voted = |attempt: u32, output: &str| Change::AttemptEnded {
        task: task.id,
        capability: task.capability.clone(),
        attempt,
        agent: Some(agent(u128::from(attempt))),
        created_at: Timestamp(10),
        started_at: Timestamp(20),
        ended_at: Timestamp(30),
        outcome: AttemptOutcome::Succeeded,
        output: Some(output.into()),
        error: None,
        next: NextStatus::Voting,
    };
    let created = Change::TaskCreated {
        spec: task.clone(),
        status: TaskStatus::Queued,
        error: None,
    };
    writer
        .apply(&[&[created, started(1), started(2), voted(1, r#"{"a":1}"#)]])
        .unwrap();
    let reader = b.reader();
    let active = reader.load_active().unwrap();
    assert_eq!(active[0].spec, *task);
    let replicas = &active[0].replicas;
    assert_eq!(replicas.len(), 2);
    assert_eq!(replicas[0].outcome, Some(AttemptOutcome::Succeeded));
    assert_eq!(replicas[0].output.as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(replicas[1].outcome, None, "still running");
    assert_eq!(&*replicas[0].identity, "voter-a");
    let unknown = AgentId(Uuid::from_u128(2)).to_string();
    assert_eq!(
        &*replicas[1].identity, unknown,
        "no name, no agent row: its id"
    );
    assert_eq!(reader.get_task(task.id).unwrap().unwrap().result, None);

    let agreed = Change::TaskFinished {
        task: task.id,
        capability: task.capability.clone(),
        status: TaskStatus::Succeeded,
        error: None,
        result: Some("1".into()),
        at: Timestamp(40),
    };
    writer.apply(&[&[voted(2, r#"{"a":1}"#), agreed]]).unwrap();
    let done = reader.get_task(task.id).unwrap().unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.result.as_deref(), Some("1"));
    assert_eq!(done.attempt_log[1].output.as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(
        reader.task_end(task.id).unwrap(),
        Some(TaskEnd::Succeeded("1".into()))
    );
    assert!(reader.load_active().unwrap().is_empty());
}

pub fn how_a_task_ended_is_read_for_its_dependents(b: impl Backend) {
    let mut writer = b.writer();
    let failed = Change::TaskCreated {
        spec: spec(2),
        status: TaskStatus::Failed,
        error: Some("dependency x failed".into()),
    };
    writer.apply(&[&[created(1), failed]]).unwrap();
    let reader = b.reader();
    assert_eq!(reader.task_end(spec(1).id).unwrap(), None, "still waiting");
    assert_eq!(
        reader.task_end(spec(2).id).unwrap(),
        Some(TaskEnd::Unsuccessful {
            status: TaskStatus::Failed,
            error: "dependency x failed".into()
        })
    );
    let stored = reader.get_task(spec(2).id).unwrap().unwrap();
    assert_eq!(stored.spec.on_parent_failure, OnParentFailure::Fail);
}

pub fn a_failed_transaction_writes_nothing(b: impl Backend) {
    let mut writer = b.writer();
    writer.apply(&[&[created(1)]]).unwrap();
    // The second insert of task 1 violates the primary key: task 2 must not be written either.
    assert!(writer.apply(&[&[created(2)], &[created(1)]]).is_err());
    assert!(b.reader().get_task(spec(2).id).unwrap().is_none());
}

pub fn listing_pages_newest_first_and_filters(b: impl Backend) {
    let mut writer = b.writer();
    let changes: Vec<Change> = (1..=5).map(created).collect();
    writer.apply(&[&changes]).unwrap();
    let reader = b.reader();
    let page = reader
        .list_tasks(&TaskFilter {
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<_> = page.iter().map(|t| t.spec.id).collect();
    assert_eq!(ids, vec![spec(5).id, spec(4).id]);
    let next = reader
        .list_tasks(&TaskFilter {
            limit: 10,
            before: Some(spec(4).id),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(next.len(), 3);
    // A cursor the store does not hold (a client may make one up): the tasks older than it.
    writer.apply(&[&[created(7)]]).unwrap();
    for (cursor, expected) in [
        (6, vec![5, 4, 3, 2, 1]),
        (100, vec![7, 5, 4, 3, 2, 1]),
        (0, vec![]),
    ] {
        let page = reader
            .list_tasks(&TaskFilter {
                limit: 10,
                before: Some(TaskId(Uuid::from_u128(cursor))),
                ..Default::default()
            })
            .unwrap();
        let ids: Vec<_> = page.iter().map(|t| t.spec.id).collect();
        let expected: Vec<_> = expected.into_iter().map(|n| spec(n).id).collect();
        assert_eq!(ids, expected, "cursor {cursor}");
    }
    let queued = reader
        .list_tasks(&TaskFilter {
            limit: 10,
            status: Some(TaskStatus::Queued),
            ..Default::default()
        })
        .unwrap();
    assert!(queued.is_empty());
    assert_eq!(
        reader.count_by_status().unwrap(),
        vec![(TaskStatus::Waiting, 6)]
    );
    assert_eq!(reader.load_active().unwrap().len(), 6);
}

pub fn reopening_keeps_data_and_does_not_migrate_twice(b: impl Backend) {
    b.writer().apply(&[&[created(1)]]).unwrap();
    let b = b.reopen();
    let active = b.reader().load_active().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].spec.depends_on, spec(1).depends_on);
}

pub fn group_commit_answers_each_batch_after_its_commit(b: impl Backend) {
    let commit = GroupCommit::spawn(b.writer(), 64, 10_000);
    let reader = Arc::new(b.reader());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.block_on(async {
        for n in 1..=50u128 {
            let tx = tx.clone();
            let reader = reader.clone();
            let batch = WriteBatch {
                changes: vec![created(n)],
                generation: 0,
                on_commit: Box::new(move |outcome, changes| {
                    // Committed means visible to a reader at the moment the callback runs.
                    let id = spec(n).id;
                    let seen = reader.get_task(id).unwrap().is_some();
                    tx.send((outcome.is_ok(), seen, changes.len())).unwrap();
                }),
            };
            commit.submit(batch).await.unwrap();
        }
    });
    drop(tx);
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), 50);
    assert!(results.iter().all(|r| *r == (true, true, 1)));
    let stats = commit.stats();
    commit.close();
    let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=50).contains(&commits));
}

pub fn a_task_created_and_started_in_one_batch_is_stored_as_if_written_in_two_steps(
    b: impl Backend,
) {
    let started = |n: u128| Change::AttemptStarted {
        spec: spec(n),
        attempt: 1,
        agent: AgentId(Uuid::from_u128(9)),
        started_at: Timestamp(15),
        lease_until: Timestamp(1_015),
        queued_ms: 0,
        inputs: vec![],
        identity: None,
    };
    let queued = |n: u128| Change::TaskCreated {
        spec: spec(n),
        status: TaskStatus::Queued,
        error: None,
    };
    let mut writer = b.writer();
    // Task 1: both changes in one batch (merged into one INSERT). Task 2: in two commits.
    writer.apply(&[&[queued(1), started(1)]]).unwrap();
    writer.apply(&[&[queued(2)]]).unwrap();
    writer.apply(&[&[started(2)]]).unwrap();
    let reader = b.reader();
    let one = reader.get_task(spec(1).id).unwrap().unwrap();
    let two = reader.get_task(spec(2).id).unwrap().unwrap();
    assert_eq!(one.status, TaskStatus::Running);
    assert_eq!(
        (
            one.attempts,
            one.lease_until,
            one.updated_at,
            one.attempt_log.clone()
        ),
        (
            two.attempts,
            two.lease_until,
            two.updated_at,
            two.attempt_log.clone()
        )
    );
    assert_eq!(one.attempt_log.len(), 1);
    assert_eq!(
        reader
            .load_active()
            .unwrap()
            .iter()
            .filter(|t| t.status == TaskStatus::Running)
            .count(),
        2
    );
}

/// A task that sets none of the optional fields is inserted by a shorter statement (SQLite:
/// `Sql::InsertPlainTask`); each field it leaves out, set alone, takes the full one
/// (`submitted_by` is in both), and so does a task created already failed (its error and end).
/// Every variant, created queued and created running, reads back as written.
pub fn each_optional_field_of_a_task_reads_back_as_written(b: impl Backend) {
    let plain = |n: u128| TaskSpec {
        idempotency_key: None,
        depends_on: vec![],
        on_parent_failure: OnParentFailure::Fail,
        consensus: None,
        submitted_by: None,
        features: None,
        ..(*spec(n)).clone()
    };
    type Variant = fn(&mut TaskSpec);
    let variants: [(&str, Variant); 7] = [
        ("none", |_| {}),
        ("submitted_by", |t| t.submitted_by = Some("ci".into())),
        ("idempotency_key", |t| {
            t.idempotency_key = Some(format!("optional-{}", t.id));
        }),
        ("depends_on", |t| {
            t.depends_on = vec![TaskId(Uuid::from_u128(999))]
        }),
        ("on_parent_failure", |t| {
            t.on_parent_failure = OnParentFailure::Run;
        }),
        ("features", |t| {
            t.features = hive_core::Feature::from_pairs([("tokens".to_string(), 3.0)]);
        }),
        ("consensus", |t| {
            t.consensus = ConsensusSpec::from_fields(Some(3), Some(2), Some("/a"))
                .unwrap()
                .map(Box::new);
        }),
    ];
    let agent = AgentId(Uuid::from_u128(77));
    let mut writer = b.writer();
    let mut written = Vec::new();
    for (i, (name, set)) in variants.iter().enumerate() {
        let [mut queued, mut running] = [plain(200 + 2 * i as u128), plain(201 + 2 * i as u128)];
        set(&mut queued);
        set(&mut running);
        let running = Arc::new(running);
        writer
            .apply(&[&[
                Change::TaskCreated {
                    spec: Arc::new(queued.clone()),
                    status: TaskStatus::Queued,
                    error: None,
                },
                Change::TaskCreated {
                    spec: running.clone(),
                    status: TaskStatus::Queued,
                    error: None,
                },
                Change::AttemptStarted {
                    spec: running.clone(),
                    attempt: 1,
                    agent,
                    started_at: Timestamp(15),
                    lease_until: Timestamp(1_015),
                    queued_ms: 0,
                    inputs: vec![],
                    identity: None,
                },
            ]])
            .unwrap();
        written.push((*name, queued, TaskStatus::Queued));
        written.push((*name, (*running).clone(), TaskStatus::Running));
    }
    // A plain task created already ended (a parent had failed): the full statement, with its
    // error and its end (which keeps it out of the unfinished tasks).
    let failed = plain(299);
    writer
        .apply(&[&[Change::TaskCreated {
            spec: Arc::new(failed.clone()),
            status: TaskStatus::Failed,
            error: Some("a parent failed".into()),
        }]])
        .unwrap();
    let reader = b.reader();
    let stored = reader.get_task(failed.id).unwrap().unwrap();
    assert_eq!(
        (&stored.spec, stored.status, stored.error.as_deref()),
        (&failed, TaskStatus::Failed, Some("a parent failed"))
    );
    assert!(
        !reader
            .load_active()
            .unwrap()
            .iter()
            .any(|t| t.spec.id == failed.id)
    );
    for (name, spec, status) in &written {
        let stored = reader.get_task(spec.id).unwrap().unwrap();
        assert_eq!((&stored.spec, stored.status), (spec, *status), "{name}");
        assert_eq!(
            (&stored.result, &stored.error, stored.not_before),
            (&None, &None, None),
            "{name}"
        );
        let updated_at = if *status == TaskStatus::Running {
            15
        } else {
            10
        };
        assert_eq!(stored.updated_at, Timestamp(updated_at), "{name}");
        if *status == TaskStatus::Running {
            assert_eq!(stored.attempts, 1, "{name}");
            assert_eq!(stored.lease_until, Some(Timestamp(1_015)), "{name}");
            assert_eq!(stored.attempt_log.len(), 1, "{name}");
            assert_eq!(stored.attempt_log[0].agent, Some(agent), "{name}");
            assert_eq!(stored.attempt_log[0].started_at, Timestamp(15), "{name}");
        } else {
            assert_eq!((stored.attempts, stored.lease_until), (0, None), "{name}");
            assert!(stored.attempt_log.is_empty(), "{name}");
        }
    }
    let active = reader.load_active().unwrap();
    for (name, spec, status) in &written {
        let loaded = active.iter().find(|t| t.spec.id == spec.id);
        assert_eq!(
            loaded.map(|t| (&t.spec, t.status)),
            Some((spec, *status)),
            "{name}"
        );
    }
}

pub fn tokens_keep_only_their_hash_and_survive_a_reopen(b: impl Backend) {
    use crate::{StoredToken, TokenStore};
    let token = StoredToken {
        id: "abc".into(),
        name: "ci".into(),
        role: "agent".into(),
        capabilities: Some(vec!["pay".into()]),
        groups: None,
        secret_hash: vec![1, 2, 3],
        created_at: Timestamp(5),
        revoked_at: None,
        expires_at: Some(Timestamp(3_600_005)),
    };
    {
        let tokens = b.tokens();
        tokens.insert(&token).unwrap();
        let again = StoredToken {
            id: "other".into(),
            ..token.clone()
        };
        assert!(matches!(
            tokens.insert(&again),
            Err(StoreError::Duplicate(_))
        ));
        assert!(tokens.revoke("ci", Timestamp(9)).unwrap());
        assert!(!tokens.revoke("ci", Timestamp(10)).unwrap());
    }
    let b = b.reopen();
    let tokens = b.tokens();
    let kept = tokens.get("abc").unwrap().unwrap();
    assert_eq!(kept.revoked_at, Some(Timestamp(9)));
    assert_eq!(
        StoredToken {
            revoked_at: None,
            ..kept
        },
        token
    );
    assert_eq!(tokens.list().unwrap().len(), 1);
    // A token that never expires reads back as such.
    let lasting = StoredToken {
        id: "lasting".into(),
        name: "forever".into(),
        expires_at: None,
        ..token
    };
    tokens.insert(&lasting).unwrap();
    assert_eq!(tokens.get("lasting").unwrap().unwrap(), lasting);
}

pub fn a_saved_model_is_replaced_by_the_next_save_and_survives_a_reopen(b: impl Backend) {
    {
        let models = b.models();
        assert_eq!(models.load_model("routing").unwrap(), None);
        models
            .save_model("routing", &[1, 2, 3], Timestamp(5))
            .unwrap();
        models.save_model("other", &[9], Timestamp(5)).unwrap();
        models.save_model("routing", &[4, 5], Timestamp(6)).unwrap();
    }
    let b = b.reopen();
    let models = b.models();
    assert_eq!(models.load_model("routing").unwrap(), Some(vec![4, 5]));
    assert_eq!(models.load_model("other").unwrap(), Some(vec![9]));
}

pub fn learned_estimates_are_kept_latest_first_and_read_back_after_reopening(b: impl Backend) {
    use hive_core::{Estimate, LearnedEstimate};
    let learned = |latency_ms: f64, samples: u64| {
        Change::Learned(LearnedEstimate {
            identity: "gpu-box".into(),
            capability: Capability::parse("echo", "capability").unwrap(),
            estimate: Estimate {
                successes: 9.5,
                failures: 0.5,
                latency_ms,
                deviation_ms: 1.25,
                samples,
                updated_at: Timestamp(1_000),
                assigned: 3.0,
                assigned_at: Timestamp(900),
            },
        })
    };
    b.writer()
        .apply(&[&[learned(40.0, 9)], &[learned(12.5, 10)]])
        .unwrap();
    let b = b.reopen();
    let back = b.reader().load_learned().unwrap();
    let Change::Learned(want) = learned(12.5, 10) else {
        unreachable!()
    };
    assert_eq!(
        back,
        vec![want],
        "one row per identity and capability, the latest"
    );
}

pub fn the_alert_history_is_read_newest_first(b: impl Backend) {
    let record = |n: u64, state: &str| AlertRecord {
        rule: "queue_depth".into(),
        state: state.into(),
        severity: "warning".into(),
        value: (n == 1).then_some(120.5),
        threshold: 100.0,
        message: format!("change {n}"),
        at: Timestamp(n),
    };
    let alerts = b.alerts();
    alerts.record(&record(1, "firing")).unwrap();
    alerts.record(&record(2, "resolved")).unwrap();
    assert_eq!(
        alerts.recent(10).unwrap(),
        vec![record(2, "resolved"), record(1, "firing")]
    );
    assert_eq!(alerts.recent(1).unwrap(), vec![record(2, "resolved")]);
}

pub fn a_task_whose_whole_life_is_one_commit_is_stored_as_if_written_step_by_step(b: impl Backend) {
    let life = |n: u128| -> Vec<Change> {
        let task = spec(n);
        let agent = AgentId(Uuid::from_u128(9));
        let started = |attempt: u32| Change::AttemptStarted {
            spec: task.clone(),
            attempt,
            agent,
            started_at: Timestamp(15 + u64::from(attempt)),
            lease_until: Timestamp(1_015),
            queued_ms: 0,
            inputs: vec![],
            identity: None,
        };
        let ended = |attempt: u32, outcome, next, output: Option<&str>| Change::AttemptEnded {
            task: task.id,
            capability: task.capability.clone(),
            attempt,
            agent: Some(agent),
            created_at: Timestamp(10),
            started_at: Timestamp(15),
            ended_at: Timestamp(20 + u64::from(attempt)),
            outcome,
            output: output.map(Into::into),
            error: (outcome == AttemptOutcome::Failed).then(|| "boom".to_string()),
            next,
        };
        vec![
            Change::TaskCreated {
                spec: task.clone(),
                status: TaskStatus::Queued,
                error: None,
            },
            started(1),
            ended(
                1,
                AttemptOutcome::Failed,
                NextStatus::Retry {
                    not_before: Timestamp(25),
                },
                None,
            ),
            Change::TaskReady {
                task: task.id,
                capability: task.capability.clone(),
                at: Timestamp(25),
            },
            started(2),
            ended(
                2,
                AttemptOutcome::Succeeded,
                NextStatus::Succeeded,
                Some("[7]"),
            ),
        ]
    };
    let mut writer = b.writer();
    // Task 1: its whole life in one commit. Task 2: one commit per change.
    writer.apply(&[&life(1)]).unwrap();
    for change in life(2) {
        writer.apply(&[&[change]]).unwrap();
    }
    let reader = b.reader();
    let one = reader.get_task(spec(1).id).unwrap().unwrap();
    let two = reader.get_task(spec(2).id).unwrap().unwrap();
    assert_eq!(one.status, TaskStatus::Succeeded);
    assert_eq!(one.result.as_deref(), Some("[7]"));
    assert_eq!(one.attempt_log.len(), 2);
    assert_eq!(one.attempt_log[0].error.as_deref(), Some("boom"));
    assert_eq!(
        (
            one.attempts,
            one.error,
            one.lease_until,
            one.not_before,
            one.updated_at
        ),
        (
            two.attempts,
            two.error,
            two.lease_until,
            two.not_before,
            two.updated_at
        )
    );
    assert_eq!(one.attempt_log, two.attempt_log);
}

/// Each status reached by each way a task can reach it (a task's end is indexed apart from its
/// status in SQLite: migrations/0011_finished.sql), listed, counted and reloaded, also after a
/// reopen.
pub fn every_status_is_listed_counted_and_reloaded_as_written(b: impl Backend) {
    let agent = AgentId(Uuid::from_u128(9));
    let queued = |n: u128| Change::TaskCreated {
        spec: spec(n),
        status: TaskStatus::Queued,
        error: None,
    };
    let started = |n: u128, attempt: u32| Change::AttemptStarted {
        spec: spec(n),
        attempt,
        agent,
        started_at: Timestamp(15),
        lease_until: Timestamp(1_015),
        queued_ms: 0,
        inputs: vec![],
        identity: None,
    };
    let ended = |n: u128, outcome, next| Change::AttemptEnded {
        task: spec(n).id,
        capability: spec(n).capability.clone(),
        attempt: 1,
        agent: Some(agent),
        created_at: Timestamp(10),
        started_at: Timestamp(15),
        ended_at: Timestamp(20),
        outcome,
        output: None,
        error: None,
        next,
    };
    let mut writer = b.writer();
    writer
        .apply(&[&[
            created(1),
            queued(2),
            queued(3),
            queued(4),
            queued(5),
            queued(6),
            Change::TaskCreated {
                spec: spec(7),
                status: TaskStatus::Failed,
                error: Some("a dependency failed".into()),
            },
            queued(8),
        ]])
        .unwrap();
    writer
        .apply(&[&[started(3, 1), started(4, 1), started(5, 1), started(8, 1)]])
        .unwrap();
    writer
        .apply(&[&[
            ended(4, AttemptOutcome::Succeeded, NextStatus::Succeeded),
            ended(5, AttemptOutcome::Failed, NextStatus::Failed),
            Change::TaskFinished {
                task: spec(6).id,
                capability: spec(6).capability.clone(),
                status: TaskStatus::Cancelled,
                error: Some("cancelled".into()),
                result: None,
                at: Timestamp(20),
            },
            ended(
                8,
                AttemptOutcome::Failed,
                NextStatus::Retry {
                    not_before: Timestamp(30),
                },
            ),
        ]])
        .unwrap();
    let expected = [
        (TaskStatus::Waiting, vec![1]),
        (TaskStatus::Queued, vec![8, 2]),
        (TaskStatus::Running, vec![3]),
        (TaskStatus::Succeeded, vec![4]),
        (TaskStatus::Failed, vec![7, 5]),
        (TaskStatus::Cancelled, vec![6]),
    ];
    let check = |reader: &dyn TaskReader| {
        for (status, tasks) in &expected {
            let listed: Vec<TaskId> = reader
                .list_tasks(&TaskFilter {
                    limit: 10,
                    status: Some(*status),
                    ..Default::default()
                })
                .unwrap()
                .iter()
                .map(|t| t.spec.id)
                .collect();
            let ids: Vec<TaskId> = tasks.iter().map(|&n| spec(n).id).collect();
            assert_eq!(listed, ids, "tasks listed as {status:?}");
        }
        let mut counts = reader.count_by_status().unwrap();
        counts.sort_by_key(|(status, _)| status.as_str());
        let mut want: Vec<(TaskStatus, u64)> = expected
            .iter()
            .map(|(status, tasks)| (*status, tasks.len() as u64))
            .collect();
        want.sort_by_key(|(status, _)| status.as_str());
        assert_eq!(counts, want);
        let mut active: Vec<(TaskId, TaskStatus)> = reader
            .load_active()
            .unwrap()
            .iter()
            .map(|t| (t.spec.id, t.status))
            .collect();
        active.sort_by_key(|(id, _)| *id);
        let mut want: Vec<(TaskId, TaskStatus)> = [
            (1, TaskStatus::Waiting),
            (2, TaskStatus::Queued),
            (3, TaskStatus::Running),
            (8, TaskStatus::Queued),
        ]
        .iter()
        .map(|&(n, status)| (spec(n).id, status))
        .collect();
        want.sort_by_key(|(id, _)| *id);
        assert_eq!(active, want);
    };
    check(&b.reader());
    let b = b.reopen();
    check(&b.reader());
}

/// The attempt log at each step of a plain task's life: started, moved to another agent,
/// its lease expired (ended by a restarted hub that knows neither the agent nor the start:
/// the stored ones stay), retried, succeeded. Both stores keep a plain task's latest attempt in
/// the task's row until it ends otherwise than by succeeding (SQLite since its version 12,
/// PostgreSQL since 16: migrations/0012_attempt_in_task.sql, postgres/0016_attempt_in_task.sql).
pub fn an_attempt_log_reads_the_same_at_every_step_of_a_task_life(b: impl Backend) {
    let (first, second) = (AgentId(Uuid::from_u128(7)), AgentId(Uuid::from_u128(8)));
    let id = spec(1).id;
    let started = |attempt: u32, agent, at: u64| Change::AttemptStarted {
        spec: spec(1),
        attempt,
        agent,
        started_at: Timestamp(at),
        lease_until: Timestamp(at + 1_000),
        queued_ms: 0,
        inputs: vec![],
        identity: None,
    };
    let ended =
        |attempt: u32, agent, started_at: u64, ended_at: u64, outcome, next| Change::AttemptEnded {
            task: id,
            capability: spec(1).capability.clone(),
            attempt,
            agent,
            created_at: Timestamp(10),
            started_at: Timestamp(started_at),
            ended_at: Timestamp(ended_at),
            outcome,
            output: (outcome == AttemptOutcome::Succeeded).then(|| "[1]".into()),
            error: (outcome != AttemptOutcome::Succeeded).then(|| "lease expired".to_string()),
            next,
        };
    let attempt =
        |attempt: u32, agent, started_at: u64, end: Option<AttemptOutcome>| StoredAttempt {
            attempt,
            agent: Some(agent),
            started_at: Timestamp(started_at),
            ended_at: end.map(|_| Timestamp(started_at + 8)),
            outcome: end,
            error: end
                .filter(|o| *o != AttemptOutcome::Succeeded)
                .map(|_| "lease expired".to_string()),
            output: None,
        };
    let log = |reader: &dyn TaskReader| {
        let one = reader.get_task(id).unwrap().unwrap().attempt_log;
        let listed = reader
            .list_tasks(&TaskFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(listed[0].attempt_log, one, "listed as read alone");
        one
    };
    let mut writer = b.writer();
    let queued = Change::TaskCreated {
        spec: spec(1),
        status: TaskStatus::Queued,
        error: None,
    };
    writer.apply(&[&[queued, started(1, first, 12)]]).unwrap();
    let reader = b.reader();
    assert_eq!(log(&reader), [attempt(1, first, 12, None)]);
    let moved = Change::AttemptReattached {
        task: id,
        attempt: 1,
        agent: second,
    };
    writer.apply(&[&[moved]]).unwrap();
    assert_eq!(log(&reader), [attempt(1, second, 12, None)]);
    // Ended by a hub that reloaded the task: it knows neither the agent nor the start.
    let reloaded = ended(
        1,
        None,
        19,
        20,
        AttemptOutcome::LeaseExpired,
        NextStatus::Retry {
            not_before: Timestamp(25),
        },
    );
    writer.apply(&[&[reloaded]]).unwrap();
    let first_end = attempt(1, second, 12, Some(AttemptOutcome::LeaseExpired));
    assert_eq!(log(&reader), std::slice::from_ref(&first_end));
    let ready = Change::TaskReady {
        task: id,
        capability: spec(1).capability.clone(),
        at: Timestamp(25),
    };
    writer.apply(&[&[ready, started(2, first, 30)]]).unwrap();
    assert_eq!(
        log(&reader),
        [first_end.clone(), attempt(2, first, 30, None)]
    );
    let succeeded = ended(
        2,
        Some(first),
        30,
        38,
        AttemptOutcome::Succeeded,
        NextStatus::Succeeded,
    );
    writer.apply(&[&[succeeded]]).unwrap();
    let done = [
        first_end,
        attempt(2, first, 30, Some(AttemptOutcome::Succeeded)),
    ];
    assert_eq!(log(&reader), done);
    let b = b.reopen();
    assert_eq!(log(&b.reader()), done);
}

/// Forty updates of one row are forty statements on PostgreSQL (each touch of the row a segment
/// of its own), sent in one pipeline: the last change failing must undo all of them.
pub fn a_long_group_that_fails_at_its_end_writes_nothing(b: impl Backend) {
    let mut writer = b.writer();
    writer.apply(&[&[created(1)]]).unwrap();
    let ready = |at: u64| Change::TaskReady {
        task: spec(1).id,
        capability: spec(1).capability.clone(),
        at: Timestamp(at),
    };
    let mut group: Vec<Change> = (100..140).map(ready).collect();
    group.push(created(2));
    // Task 1 again: its primary key is taken.
    group.push(created(1));
    assert!(writer.apply(&[&group]).is_err());
    let reader = b.reader();
    let one = reader.get_task(spec(1).id).unwrap().unwrap();
    assert_eq!(
        (one.status, one.updated_at),
        (TaskStatus::Waiting, Timestamp(10))
    );
    assert!(reader.get_task(spec(2).id).unwrap().is_none());
    // The writer goes on after the failure.
    writer.apply(&[&[ready(200)]]).unwrap();
    let one = reader.get_task(spec(1).id).unwrap().unwrap();
    assert_eq!(
        (one.status, one.updated_at),
        (TaskStatus::Queued, Timestamp(200))
    );
}

/// A restart must know which attempts a stopping agent gave back unstarted: they do not count
/// toward `max_attempts`. Written step by step and as one commit (which PostgreSQL's writer folds
/// into one row per attempt).
pub fn attempts_given_back_unstarted_are_counted_on_reload(b: impl Backend) {
    let agent = AgentId(Uuid::from_u128(7));
    let ready = |n: u128| Change::TaskReady {
        task: spec(n).id,
        capability: spec(n).capability.clone(),
        at: Timestamp(11),
    };
    let start = |n: u128, attempt: u32| Change::AttemptStarted {
        spec: spec(n),
        attempt,
        agent,
        started_at: Timestamp(12),
        lease_until: Timestamp(1_012),
        queued_ms: 1,
        inputs: vec![],
        identity: None,
    };
    let end = |n: u128, attempt: u32, outcome| Change::AttemptEnded {
        task: spec(n).id,
        capability: spec(n).capability.clone(),
        attempt,
        agent: Some(agent),
        created_at: Timestamp(10),
        started_at: Timestamp(12),
        ended_at: Timestamp(20),
        outcome,
        output: None,
        error: Some("x".into()),
        next: NextStatus::Retry {
            not_before: Timestamp(20),
        },
    };
    let mut writer = b.writer();
    let step_by_step = [
        created(1),
        ready(1),
        start(1, 1),
        end(1, 1, AttemptOutcome::Released),
        start(1, 2),
        end(1, 2, AttemptOutcome::Failed),
        start(1, 3),
    ];
    for change in step_by_step {
        writer.apply(&[&[change]]).unwrap();
    }
    writer
        .apply(&[&[
            created(2),
            ready(2),
            created(3),
            ready(3),
            start(3, 1),
            end(3, 1, AttemptOutcome::Released),
        ]])
        .unwrap();
    drop(writer);
    let b = b.reopen();
    let reader = b.reader();
    let mut active: Vec<(u128, TaskStatus, u32, u32)> = reader
        .load_active()
        .unwrap()
        .into_iter()
        .map(|t| (t.spec.id.0.as_u128(), t.status, t.attempt, t.released))
        .collect();
    active.sort_by_key(|t| t.0);
    assert_eq!(
        active,
        vec![
            (1, TaskStatus::Running, 3, 1),
            (2, TaskStatus::Queued, 0, 0),
            (3, TaskStatus::Queued, 1, 1),
        ]
    );
    let log = reader.get_task(spec(1).id).unwrap().unwrap().attempt_log;
    let outcomes: Vec<_> = log.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Some(AttemptOutcome::Released),
            Some(AttemptOutcome::Failed),
            None
        ]
    );
}

/// Offline agents past the scheduler's bound are forgotten (`Change::AgentForgotten`); their
/// rows must go too, or the table grows with every worker that ever connected.
pub fn an_agent_forgotten_by_the_scheduler_leaves_the_store(b: impl Backend) {
    let agent = |n: u128, state| {
        Change::AgentChanged(AgentSnapshot {
            id: AgentId(Uuid::from_u128(n)),
            spec: AgentSpec {
                name: format!("worker-{n}"),
                capabilities: vec![(Capability::parse("echo", "capability").unwrap(), 1.0)],
                slots: 2,
            }
            .into(),
            state,
            running: 0,
            connected_at: Timestamp(1),
            last_heartbeat: Timestamp(2),
            stats: vec![],
            routing: vec![],
        })
    };
    let mut writer = b.writer();
    writer
        .apply(&[&[
            agent(1, AgentState::Idle),
            agent(2, AgentState::Idle),
            agent(3, AgentState::Idle),
        ]])
        .unwrap();
    writer
        .apply(&[&[
            agent(1, AgentState::Offline),
            agent(2, AgentState::Offline),
            Change::AgentForgotten {
                agent: AgentId(Uuid::from_u128(1)),
            },
        ]])
        .unwrap();
    // Forgotten in the same commit as its own first write: nothing is left of it either.
    writer
        .apply(&[&[
            agent(4, AgentState::Offline),
            Change::AgentForgotten {
                agent: AgentId(Uuid::from_u128(4)),
            },
        ]])
        .unwrap();
    drop(writer);
    let b = b.reopen();
    assert_eq!(b.agent_rows(), vec![Uuid::from_u128(2), Uuid::from_u128(3)]);
}
