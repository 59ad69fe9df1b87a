//! An attempt given back unstarted by a stopping agent (`Report::Released`): the task runs
//! elsewhere at once and keeps its whole `max_attempts`, across a restart too; only a draining
//! agent may do it.

use super::tests::{agent_id, agent_spec, fail, none, ok, started, task_id};
use super::*;
use crate::routing::LeastLoaded;
use crate::task::tests::spec;

fn sched() -> Scheduler<LeastLoaded> {
    Scheduler::new(SchedulerConfig::default(), LeastLoaded)
}

/// A task that may run once, started on agent 1.
fn one_attempt_running_on_agent_1(s: &mut Scheduler<LeastLoaded>) {
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    let mut t = spec(1, "a");
    t.max_attempts = 1;
    s.submit(t, Timestamp(0), &mut none).unwrap();
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(1), 1, agent_id(1))]
    );
}

fn ended(changes: &[Change]) -> Vec<(u32, AttemptOutcome, NextStatus)> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::AttemptEnded {
                attempt,
                outcome,
                next,
                ..
            } => Some((*attempt, *outcome, *next)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_released_attempt_runs_elsewhere_at_once_and_does_not_count() {
    let mut s = sched();
    one_attempt_running_on_agent_1(&mut s);
    s.drain(agent_id(1)).unwrap();
    s.report(agent_id(1), task_id(1), 1, Report::Released, Timestamp(5))
        .unwrap();
    let changes = s.take_changes();
    assert_eq!(
        ended(&changes),
        vec![(
            1,
            AttemptOutcome::Released,
            NextStatus::Retry {
                not_before: Timestamp(5)
            }
        )]
    );
    assert_eq!(s.active_status(task_id(1)), Some(TaskStatus::Queued));
    s.check_invariants().unwrap();

    // Its one attempt is still there to spend: another agent starts it as attempt 2 (numbers
    // are never reused, so a late frame of attempt 1 stays fenced off) and it may still fail.
    s.register_agent(agent_id(2), agent_spec(&[("a", 1.0)], 1), Timestamp(6));
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(1), 2, agent_id(2))]
    );
    assert!(
        s.report(agent_id(1), task_id(1), 1, ok(), Timestamp(7))
            .is_err()
    );
    s.report(agent_id(2), task_id(1), 2, fail(true), Timestamp(8))
        .unwrap();
    let changes = s.take_changes();
    assert_eq!(
        ended(&changes),
        vec![(2, AttemptOutcome::Failed, NextStatus::Failed)]
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_release_from_an_agent_that_is_not_draining_is_a_failed_attempt() {
    let mut s = sched();
    one_attempt_running_on_agent_1(&mut s);
    s.report(agent_id(1), task_id(1), 1, Report::Released, Timestamp(5))
        .unwrap();
    let changes = s.take_changes();
    assert_eq!(
        ended(&changes),
        vec![(1, AttemptOutcome::Failed, NextStatus::Failed)]
    );
    let error = changes.iter().find_map(|c| match c {
        Change::AttemptEnded { error, .. } => error.clone(),
        _ => None,
    });
    assert_eq!(error.as_deref(), Some(RELEASED_NOT_DRAINING));
}

#[test]
fn a_stale_release_is_fenced_off() {
    let mut s = sched();
    one_attempt_running_on_agent_1(&mut s);
    s.drain(agent_id(1)).unwrap();
    assert!(matches!(
        s.report(agent_id(1), task_id(1), 7, Report::Released, Timestamp(5)),
        Err(ReportError::StaleAttempt { .. })
    ));
    assert!(matches!(
        s.report(agent_id(2), task_id(1), 1, Report::Released, Timestamp(5)),
        Err(ReportError::StaleAttempt { .. })
    ));
    assert_eq!(s.active_status(task_id(1)), Some(TaskStatus::Running));
}

#[test]
fn a_restart_keeps_the_attempts_released_out_of_the_count() {
    // Two attempts started, one of them released: of max_attempts 3, two are left (without the
    // release, the third attempt would be the last).
    let mut s = sched();
    let mut t = spec(1, "a");
    t.max_attempts = 3;
    t.backoff = crate::backoff::Backoff {
        base_ms: 0,
        max_ms: 0,
    };
    s.restore(
        vec![RecoveredTask {
            spec: t,
            status: TaskStatus::Queued,
            attempt: 2,
            released: 1,
            lease_until: None,
            not_before: None,
            replicas: vec![],
        }],
        Timestamp(0),
        &mut none,
    );
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(1), 3, agent_id(1))]
    );
    s.report(agent_id(1), task_id(1), 3, fail(true), Timestamp(1))
        .unwrap();
    assert_eq!(
        ended(&s.take_changes()),
        vec![(
            3,
            AttemptOutcome::Failed,
            NextStatus::Retry {
                not_before: Timestamp(1)
            }
        )]
    );
}
