//! Results flowing through task graphs: a task's assignment carries how its parents ended.

use super::tests::{agent_id, agent_spec, ended_failed, fail, none, task_id};
use super::*;
use crate::routing::LeastLoaded;
use crate::task::OnParentFailure;
use crate::task::tests::spec;

fn sched() -> Scheduler<LeastLoaded> {
    Scheduler::new(SchedulerConfig::default(), LeastLoaded)
}

fn output(text: &str) -> Report {
    Report::Success {
        output: text.into(),
    }
}

/// The inputs of every attempt started in `changes`, by task.
fn inputs_started(changes: &[Change]) -> Vec<(TaskId, Vec<(TaskId, TaskEnd)>)> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::AttemptStarted { spec, inputs, .. } => Some((spec.id, inputs.clone())),
            _ => None,
        })
        .collect()
}

fn child_of(n: u128, parents: &[u128], on_parent_failure: OnParentFailure) -> TaskSpec {
    let mut child = spec(n, "a");
    child.depends_on = parents.iter().map(|p| task_id(*p)).collect();
    child.on_parent_failure = on_parent_failure;
    child
}

/// A task as the store kept it, never started.
fn recovered(spec: TaskSpec, status: TaskStatus) -> RecoveredTask {
    RecoveredTask {
        spec,
        status,
        attempt: 0,
        released: 0,
        lease_until: None,
        not_before: None,
        replicas: vec![],
    }
}

fn succeeded(text: &str) -> TaskEnd {
    TaskEnd::Succeeded(text.into())
}

#[test]
fn a_reducer_gets_every_parents_output_and_keeps_them_across_retries() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 4), Timestamp(0));
    for n in 1..=3 {
        s.submit(spec(n, "a"), Timestamp(0), &mut none).unwrap();
    }
    let reducer = child_of(9, &[1, 2, 3], OnParentFailure::Fail);
    s.submit(reducer, Timestamp(0), &mut none).unwrap();
    s.take_changes();
    for n in [2, 1, 3] {
        s.report(
            agent_id(1),
            task_id(n),
            1,
            output(&format!("{n}0")),
            Timestamp(1),
        )
        .unwrap();
    }
    let expected = vec![
        (task_id(2), succeeded("20")),
        (task_id(1), succeeded("10")),
        (task_id(3), succeeded("30")),
    ];
    assert_eq!(
        inputs_started(&s.take_changes()),
        vec![(task_id(9), expected.clone())]
    );
    s.check_invariants().unwrap();
    // A retry carries the same inputs.
    s.report(agent_id(1), task_id(9), 1, fail(true), Timestamp(2))
        .unwrap();
    s.advance(Timestamp(60_000));
    assert_eq!(
        inputs_started(&s.take_changes()),
        vec![(task_id(9), expected)]
    );
    s.report(agent_id(1), task_id(9), 2, output("60"), Timestamp(60_001))
        .unwrap();
    s.check_invariants().unwrap();
    assert_eq!(s.memory().active_tasks, 0);
}

#[test]
fn a_task_without_parents_has_no_inputs() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    assert_eq!(
        inputs_started(&s.take_changes()),
        vec![(task_id(1), vec![])]
    );
}

#[test]
fn on_parent_failure_run_runs_the_child_with_the_failed_parents_errors() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 4), Timestamp(0));
    for n in 1..=3 {
        s.submit(spec(n, "a"), Timestamp(0), &mut none).unwrap();
    }
    s.submit(
        child_of(8, &[1, 2, 3], OnParentFailure::Fail),
        Timestamp(0),
        &mut none,
    )
    .unwrap();
    s.submit(
        child_of(9, &[1, 2, 3], OnParentFailure::Run),
        Timestamp(0),
        &mut none,
    )
    .unwrap();
    s.take_changes();
    s.report(agent_id(1), task_id(1), 1, output("10"), Timestamp(1))
        .unwrap();
    s.report(agent_id(1), task_id(2), 1, fail(false), Timestamp(1))
        .unwrap();
    let changes = s.take_changes();
    assert!(
        changes.iter().any(|c| matches!(c,
            Change::TaskFinished { task, error: Some(e), .. }
                if *task == task_id(8) && e.contains(&task_id(2).to_string()))),
        "the default child fails naming the parent: {changes:?}"
    );
    assert_eq!(s.active_status(task_id(9)), Some(TaskStatus::Waiting));
    s.cancel(task_id(3), Timestamp(2)).unwrap();
    let failed = |status, error: &str| TaskEnd::Unsuccessful {
        status,
        error: error.into(),
    };
    assert_eq!(
        inputs_started(&s.take_changes()),
        vec![(
            task_id(9),
            vec![
                (task_id(1), succeeded("10")),
                (task_id(2), failed(TaskStatus::Failed, "boom")),
                (task_id(3), failed(TaskStatus::Cancelled, "cancelled")),
            ]
        )]
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_child_of_a_finished_parent_gets_its_input_at_submit() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 2), Timestamp(0));
    s.take_changes();
    let mut done = |_| Some(succeeded("\"x\""));
    s.submit(
        child_of(2, &[1, 1], OnParentFailure::Fail),
        Timestamp(0),
        &mut done,
    )
    .unwrap();
    assert_eq!(
        inputs_started(&s.take_changes()),
        vec![(task_id(2), vec![(task_id(1), succeeded("\"x\""))])],
        "a parent named twice is one input"
    );
    let status = s.submit(
        child_of(3, &[1], OnParentFailure::Run),
        Timestamp(0),
        &mut ended_failed,
    );
    assert_eq!(status, Ok(TaskStatus::Queued));
    let started = inputs_started(&s.take_changes());
    assert_eq!(started[0].1[0].1.status(), TaskStatus::Failed);
    s.check_invariants().unwrap();
}

#[test]
fn a_restart_gives_recovered_tasks_their_inputs_back() {
    let mut s = sched();
    let mut asked = Vec::new();
    let mut resolve = |dep: TaskId| {
        asked.push(dep);
        (dep == task_id(1)).then(|| succeeded("10"))
    };
    s.restore(
        vec![
            recovered(child_of(5, &[1], OnParentFailure::Fail), TaskStatus::Queued),
            recovered(child_of(6, &[1], OnParentFailure::Fail), TaskStatus::Queued),
            recovered(
                child_of(7, &[1, 4], OnParentFailure::Fail),
                TaskStatus::Waiting,
            ),
            recovered(spec(4, "a"), TaskStatus::Queued),
        ],
        Timestamp(0),
        &mut resolve,
    );
    assert_eq!(asked, vec![task_id(1)], "each parent is read once");
    s.check_invariants().unwrap();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 4), Timestamp(0));
    let mut started = inputs_started(&s.take_changes());
    started.sort_by_key(|(task, _)| *task);
    let from_one = vec![(task_id(1), succeeded("10"))];
    assert_eq!(
        started,
        vec![
            (task_id(4), vec![]),
            (task_id(5), from_one.clone()),
            (task_id(6), from_one)
        ]
    );
    s.report(agent_id(1), task_id(4), 1, output("40"), Timestamp(1))
        .unwrap();
    assert_eq!(
        inputs_started(&s.take_changes()),
        vec![(
            task_id(7),
            vec![(task_id(1), succeeded("10")), (task_id(4), succeeded("40"))]
        )]
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_task_whose_inputs_are_over_the_limit_fails_instead_of_running() {
    let mut s = Scheduler::new(
        SchedulerConfig {
            max_inputs_bytes: 100,
            ..SchedulerConfig::default()
        },
        LeastLoaded,
    );
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 4), Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    s.submit(spec(2, "a"), Timestamp(0), &mut none).unwrap();
    s.submit(
        child_of(3, &[1, 2], OnParentFailure::Fail),
        Timestamp(0),
        &mut none,
    )
    .unwrap();
    s.submit(
        child_of(4, &[3], OnParentFailure::Run),
        Timestamp(0),
        &mut none,
    )
    .unwrap();
    s.take_changes();
    let fifty_two = format!("\"{}\"", "x".repeat(50));
    s.report(agent_id(1), task_id(1), 1, output(&fifty_two), Timestamp(1))
        .unwrap();
    s.report(agent_id(1), task_id(2), 1, output(&fifty_two), Timestamp(1))
        .unwrap();
    let changes = s.take_changes();
    let error = changes.iter().find_map(|c| match c {
        Change::TaskFinished { task, error, .. } if *task == task_id(3) => error.clone(),
        _ => None,
    });
    assert_eq!(
        error.as_deref(),
        Some(
            "its parents' results total 104 bytes, over the limit of 100 bytes \
             (tasks.max_inputs_bytes)"
        )
    );
    // Its own child, which runs on failed parents, gets that error (under the limit) as input.
    assert_eq!(inputs_started(&changes).len(), 1);
    assert_eq!(inputs_started(&changes)[0].0, task_id(4));
    // At submit, with the parents already ended, the task is created failed.
    let mut big = |_| Some(succeeded(&"1".repeat(101)));
    let status = s.submit(
        child_of(5, &[1], OnParentFailure::Fail),
        Timestamp(2),
        &mut big,
    );
    assert_eq!(status, Ok(TaskStatus::Failed));
    s.check_invariants().unwrap();
}

#[test]
fn a_restart_fails_a_run_child_with_a_missing_parent_without_tripping_over_it() {
    let mut s = sched();
    // Task 2 waits for 8, which the store lost; task 3 runs after failures and waits for 2 and
    // for 9, lost too. Task 2 fails first, and must not find 3 waiting on nothing.
    s.restore(
        vec![
            recovered(
                child_of(2, &[8], OnParentFailure::Fail),
                TaskStatus::Waiting,
            ),
            recovered(
                child_of(3, &[2, 9], OnParentFailure::Run),
                TaskStatus::Waiting,
            ),
        ],
        Timestamp(0),
        &mut none,
    );
    let changes = s.take_changes();
    let failed: Vec<_> = changes.iter().filter_map(Change::terminal).collect();
    assert_eq!(failed.len(), 2, "{changes:?}");
    s.check_invariants().unwrap();
}

#[test]
fn a_waiting_task_fails_as_soon_as_its_inputs_pass_the_limit() {
    let mut s = Scheduler::new(
        SchedulerConfig {
            max_inputs_bytes: 100,
            ..SchedulerConfig::default()
        },
        LeastLoaded,
    );
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 4), Timestamp(0));
    for n in 1..=2 {
        s.submit(spec(n, "a"), Timestamp(0), &mut none).unwrap();
    }
    s.submit(
        child_of(3, &[1, 2], OnParentFailure::Fail),
        Timestamp(0),
        &mut none,
    )
    .unwrap();
    s.take_changes();
    let big = format!("\"{}\"", "x".repeat(200));
    s.report(agent_id(1), task_id(1), 1, output(&big), Timestamp(1))
        .unwrap();
    assert_eq!(
        s.active_status(task_id(3)),
        None,
        "failed before task 2 ended"
    );
    s.check_invariants().unwrap();
    s.report(agent_id(1), task_id(2), 1, output("1"), Timestamp(2))
        .unwrap();
    s.check_invariants().unwrap();
}
