//! Unit tests of the scheduler's rules, driven by explicit timestamps (no sleeping).

use uuid::Uuid;

use super::*;
use crate::backoff::Backoff;
use crate::routing::LeastLoaded;
use crate::task::tests::spec;

fn sched() -> Scheduler<LeastLoaded> {
    Scheduler::new(
        SchedulerConfig {
            aging_ms: 1_000,
            heartbeat_timeout_ms: 5_000,
            ..SchedulerConfig::default()
        },
        LeastLoaded,
    )
}

pub(super) fn agent_id(n: u128) -> AgentId {
    AgentId(Uuid::from_u128(1_000_000 + n))
}

pub(super) fn task_id(n: u128) -> TaskId {
    TaskId(Uuid::from_u128(n))
}

pub(super) fn agent_spec(caps: &[(&str, f64)], slots: u32) -> AgentSpec {
    AgentSpec {
        name: "w".into(),
        capabilities: caps
            .iter()
            .map(|(c, l)| (Capability::parse(c, "c").unwrap(), *l))
            .collect(),
        slots,
    }
}

pub(super) fn none(_: TaskId) -> Option<TaskEnd> {
    None
}

pub(super) fn ended_failed(_: TaskId) -> Option<TaskEnd> {
    Some(TaskEnd::Unsuccessful {
        status: TaskStatus::Failed,
        error: "boom".into(),
    })
}

/// (task, attempt, agent) of every attempt started in `changes`.
pub(super) fn started(changes: &[Change]) -> Vec<(TaskId, u32, AgentId)> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::AttemptStarted {
                spec,
                attempt,
                agent,
                ..
            } => Some((spec.id, *attempt, *agent)),
            _ => None,
        })
        .collect()
}

fn terminal(changes: &[Change]) -> Vec<(TaskId, TaskStatus)> {
    changes.iter().filter_map(Change::terminal).collect()
}

pub(super) fn ok() -> Report {
    Report::Success {
        output: "{}".into(),
    }
}

pub(super) fn fail(retryable: bool) -> Report {
    Report::Failure {
        error: "boom".into(),
        retryable,
    }
}

#[test]
fn a_task_waits_for_an_agent_and_is_offered_when_one_joins() {
    let mut s = sched();
    assert_eq!(
        s.submit(spec(1, "a"), Timestamp(0), &mut none),
        Ok(TaskStatus::Queued)
    );
    assert!(started(&s.take_changes()).is_empty());
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(1));
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(1), 1, agent_id(1))]
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_task_goes_at_once_to_the_least_loaded_capable_agent() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 2), Timestamp(0));
    s.register_agent(agent_id(2), agent_spec(&[("a", 0.5)], 2), Timestamp(0));
    s.register_agent(agent_id(3), agent_spec(&[("b", 1.0)], 9), Timestamp(0));
    s.take_changes();
    for n in 1..=4 {
        s.submit(spec(n, "a"), Timestamp(1), &mut none).unwrap();
    }
    let agents: Vec<_> = started(&s.take_changes())
        .into_iter()
        .map(|(_, _, a)| a)
        .collect();
    // Equal load goes to the higher level first, then they alternate as load evens out.
    assert_eq!(
        agents,
        vec![agent_id(1), agent_id(2), agent_id(1), agent_id(2)]
    );
    s.submit(spec(5, "a"), Timestamp(2), &mut none).unwrap();
    assert!(
        started(&s.take_changes()).is_empty(),
        "all slots full: task 5 queues"
    );
    assert_eq!(s.queue_depths()[0].1, 1);
    s.check_invariants().unwrap();
}

#[test]
fn a_freed_slot_takes_the_most_urgent_task() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    let mut low = spec(2, "a");
    low.priority = 1;
    let mut high = spec(3, "a");
    high.priority = 9;
    s.submit(low, Timestamp(10), &mut none).unwrap();
    s.submit(high, Timestamp(20), &mut none).unwrap();
    s.take_changes();
    s.report(agent_id(1), task_id(1), 1, ok(), Timestamp(30))
        .unwrap();
    assert_eq!(started(&s.take_changes())[0].0, task_id(3));
}

#[test]
fn aging_keeps_low_priority_from_starving() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    let mut low = spec(2, "a");
    low.priority = 0;
    s.submit(low, Timestamp(0), &mut none).unwrap();
    // 10 aging steps later a priority-9 task arrives; the old priority-0 task still goes first.
    let mut high = spec(3, "a");
    high.priority = 9;
    s.submit(high, Timestamp(10_000), &mut none).unwrap();
    s.take_changes();
    s.report(agent_id(1), task_id(1), 1, ok(), Timestamp(10_001))
        .unwrap();
    assert_eq!(started(&s.take_changes())[0].0, task_id(2));
}

#[test]
fn an_expired_lease_retries_with_backoff_and_fences_the_old_attempt() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    s.register_agent(agent_id(2), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap(); // timeout 1000 ms
    let first = started(&s.take_changes());
    assert_eq!(s.next_wakeup(), Some(Timestamp(1_000)));
    s.advance(Timestamp(999));
    assert!(terminal(&s.take_changes()).is_empty());
    s.advance(Timestamp(1_000));
    let changes = s.take_changes();
    let Some(Change::AttemptEnded {
        outcome,
        next: NextStatus::Retry { not_before },
        ..
    }) = changes.first()
    else {
        panic!("expected a retry, got {changes:?}");
    };
    assert_eq!(*outcome, AttemptOutcome::LeaseExpired);
    let delay = not_before.ms_since(Timestamp(1_000));
    assert!(
        (50..=100).contains(&delay),
        "first backoff {delay} ms not in [50, 100]"
    );
    s.advance(*not_before);
    let second = started(&s.take_changes());
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].1, 2);
    // The first attempt's late result is rejected, as is the right attempt from the wrong agent.
    let err = s.report(first[0].2, task_id(1), 1, ok(), Timestamp(1_200));
    assert!(matches!(
        err,
        Err(ReportError::StaleAttempt { current: 2, .. })
    ));
    let other = if second[0].2 == agent_id(1) {
        agent_id(2)
    } else {
        agent_id(1)
    };
    assert!(
        s.report(other, task_id(1), 2, ok(), Timestamp(1_200))
            .is_err()
    );
    s.report(second[0].2, task_id(1), 2, ok(), Timestamp(1_300))
        .unwrap();
    assert_eq!(
        terminal(&s.take_changes()),
        vec![(task_id(1), TaskStatus::Succeeded)]
    );
    assert!(matches!(
        s.report(second[0].2, task_id(1), 2, ok(), Timestamp(1_301)),
        Err(ReportError::UnknownTask(_))
    ));
    s.check_invariants().unwrap();
}

#[test]
fn a_task_that_always_fails_stops_after_max_attempts() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    let mut t = spec(1, "a");
    t.backoff = Backoff {
        base_ms: 0,
        max_ms: 0,
    };
    s.submit(t, Timestamp(0), &mut none).unwrap();
    let mut attempts = 0;
    let mut now = Timestamp(0);
    loop {
        let changes = s.take_changes();
        if let Some((_, status)) = terminal(&changes).first() {
            assert_eq!(*status, TaskStatus::Failed);
            break;
        }
        now = now.plus_ms(1);
        s.advance(now);
        for (task, attempt, agent) in started(&changes) {
            attempts += 1;
            s.report(agent, task, attempt, fail(true), now).unwrap();
        }
    }
    assert_eq!(attempts, 3);
}

#[test]
fn a_throttled_failure_waits_its_retry_after_or_its_backoff_if_longer() {
    // (retry_after_ms, the least and most delay): the backoff of a first attempt is 50-100 ms.
    for (retry_after_ms, least, most) in [(5_000, 5_000, 5_000), (10, 50, 100)] {
        let mut s = sched();
        s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
        s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
        s.take_changes();
        let throttled = Report::Throttled {
            error: "429 Too Many Requests".into(),
            retry_after_ms,
        };
        s.report(agent_id(1), task_id(1), 1, throttled, Timestamp(20))
            .unwrap();
        let changes = s.take_changes();
        let Some(Change::AttemptEnded {
            outcome: AttemptOutcome::Failed,
            next: NextStatus::Retry { not_before },
            ..
        }) = changes.first()
        else {
            panic!("expected a retry, got {changes:?}");
        };
        let delay = not_before.ms_since(Timestamp(20));
        assert!(
            (least..=most).contains(&delay),
            "retry after {retry_after_ms} ms: delay {delay} ms not in [{least}, {most}]"
        );
        s.check_invariants().unwrap();
    }
}

#[test]
fn a_non_retryable_failure_fails_at_once() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    s.take_changes();
    s.report(agent_id(1), task_id(1), 1, fail(false), Timestamp(5))
        .unwrap();
    assert_eq!(
        terminal(&s.take_changes()),
        vec![(task_id(1), TaskStatus::Failed)]
    );
    assert_eq!(s.snapshot(agent_id(1)).unwrap().stats[0].1.failed, 1);
}

#[test]
fn dependencies_run_in_order_and_a_failure_fails_the_chain() {
    let mut s = sched();
    let mut b = spec(2, "a");
    b.depends_on = vec![task_id(1)];
    let mut c = spec(3, "a");
    c.depends_on = vec![task_id(2)];
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    assert_eq!(
        s.submit(b, Timestamp(0), &mut none),
        Ok(TaskStatus::Waiting)
    );
    assert_eq!(
        s.submit(c, Timestamp(0), &mut none),
        Ok(TaskStatus::Waiting)
    );
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 4), Timestamp(0));
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(1), 1, agent_id(1))]
    );
    s.report(agent_id(1), task_id(1), 1, ok(), Timestamp(1))
        .unwrap();
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(2), 1, agent_id(1))]
    );
    s.report(agent_id(1), task_id(2), 1, fail(false), Timestamp(2))
        .unwrap();
    assert_eq!(
        terminal(&s.take_changes()),
        vec![
            (task_id(2), TaskStatus::Failed),
            (task_id(3), TaskStatus::Failed)
        ]
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_dependency_is_resolved_from_outside_when_it_already_finished() {
    let mut s = sched();
    let mut b = spec(2, "a");
    b.depends_on = vec![task_id(1)];
    let mut done = |_| Some(TaskEnd::Succeeded("1".into()));
    assert_eq!(
        s.submit(b.clone(), Timestamp(0), &mut done),
        Ok(TaskStatus::Queued)
    );
    b.id = task_id(3);
    assert_eq!(
        s.submit(b.clone(), Timestamp(0), &mut ended_failed),
        Ok(TaskStatus::Failed)
    );
    b.id = task_id(4);
    assert_eq!(
        s.submit(b, Timestamp(0), &mut none),
        Err(SubmitError::UnknownDependency(task_id(1)))
    );
}

#[test]
fn cancelling_stops_queued_and_running_tasks() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    s.submit(spec(2, "a"), Timestamp(0), &mut none).unwrap();
    s.take_changes();
    s.cancel(task_id(2), Timestamp(1)).unwrap();
    assert_eq!(
        terminal(&s.take_changes()),
        vec![(task_id(2), TaskStatus::Cancelled)]
    );
    s.cancel(task_id(1), Timestamp(2)).unwrap();
    let changes = s.take_changes();
    assert!(changes.contains(&Change::SendCancel {
        agent: agent_id(1),
        task: task_id(1),
        attempt: 1
    }));
    assert_eq!(
        terminal(&changes),
        vec![(task_id(1), TaskStatus::Cancelled)]
    );
    assert_eq!(
        s.cancel(task_id(1), Timestamp(3)),
        Err(CancelError::NotActive(task_id(1)))
    );
    assert!(
        s.report(agent_id(1), task_id(1), 1, ok(), Timestamp(4))
            .is_err()
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_silent_agent_goes_offline_and_its_leases_run_out() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    let mut t = spec(1, "a");
    t.timeout_ms = 20_000;
    s.submit(t, Timestamp(0), &mut none).unwrap();
    s.take_changes();
    assert!(s.heartbeat(agent_id(1), Timestamp(4_000)));
    s.advance(Timestamp(5_000));
    assert_eq!(s.snapshot(agent_id(1)).unwrap().state, AgentState::Busy);
    s.advance(Timestamp(9_000));
    let changes = s.take_changes();
    assert!(changes.contains(&Change::CloseAgent { agent: agent_id(1) }));
    assert_eq!(s.snapshot(agent_id(1)).unwrap().state, AgentState::Offline);
    assert!(!s.heartbeat(agent_id(1), Timestamp(9_001)));
    // Its task runs on elsewhere only once the lease is over.
    s.register_agent(agent_id(2), agent_spec(&[("a", 1.0)], 1), Timestamp(9_500));
    assert!(started(&s.take_changes()).is_empty());
    for t in [14_000, 18_500] {
        s.advance(Timestamp(t));
        assert!(s.heartbeat(agent_id(2), Timestamp(t)));
    }
    s.advance(Timestamp(20_000));
    let retry = s.take_changes();
    let Some(Change::AttemptEnded {
        next: NextStatus::Retry { not_before },
        ..
    }) = retry.first()
    else {
        panic!("{retry:?}");
    };
    s.advance(*not_before);
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(1), 2, agent_id(2))]
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_draining_agent_takes_no_new_work() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 2), Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    assert_eq!(s.drain(agent_id(1)).unwrap().state, AgentState::Draining);
    s.submit(spec(2, "a"), Timestamp(1), &mut none).unwrap();
    let changes = s.take_changes();
    assert_eq!(started(&changes).len(), 1);
    assert!(changes.contains(&Change::SendDrain { agent: agent_id(1) }));
    assert_eq!(
        s.drain(agent_id(9)),
        Err(DrainError::UnknownAgent(agent_id(9)))
    );
    s.check_invariants().unwrap();
    // Undone: told so, and the queued task starts at once.
    assert_eq!(
        s.undrain(agent_id(1), Timestamp(2)).unwrap().state,
        AgentState::Busy
    );
    let changes = s.take_changes();
    assert!(changes.contains(&Change::SendResume { agent: agent_id(1) }));
    assert_eq!(started(&changes), vec![(task_id(2), 1, agent_id(1))]);
    s.check_invariants().unwrap();
}

#[test]
fn recovery_requeues_expired_leases_and_keeps_live_ones() {
    let mut s = sched();
    let recovered = |n, status, lease: Option<u64>| RecoveredTask {
        spec: spec(n, "a"),
        status,
        attempt: u32::from(status == TaskStatus::Running),
        released: 0,
        lease_until: lease.map(Timestamp),
        not_before: None,
        replicas: vec![],
    };
    let mut waiting = recovered(4, TaskStatus::Waiting, None);
    waiting.spec.depends_on = vec![task_id(9)];
    s.restore(
        vec![
            recovered(1, TaskStatus::Running, Some(500)),
            recovered(2, TaskStatus::Running, Some(5_000)),
            recovered(3, TaskStatus::Queued, None),
            waiting,
        ],
        Timestamp(1_000),
        &mut ended_failed,
    );
    s.advance(Timestamp(1_000));
    let changes = s.take_changes();
    assert_eq!(terminal(&changes), vec![(task_id(4), TaskStatus::Failed)]);
    assert!(changes.iter().any(|c| matches!(c,
        Change::AttemptEnded { task, outcome: AttemptOutcome::LeaseExpired, .. } if *task == task_id(1))));
    assert_eq!(s.active_status(task_id(2)), Some(TaskStatus::Running));
    assert_eq!(s.active_status(task_id(3)), Some(TaskStatus::Queued));
    s.check_invariants().unwrap();
}

#[test]
fn offline_agents_are_remembered_only_up_to_a_bound() {
    let mut s = sched();
    let total = MAX_OFFLINE_AGENTS as u128 + 10;
    for n in 0..total {
        s.register_agent(agent_id(n), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
        s.disconnect_agent(agent_id(n));
    }
    s.register_agent(agent_id(total), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    let agents = s.agents();
    assert_eq!(agents.len(), MAX_OFFLINE_AGENTS + 1);
    assert!(
        s.snapshot(agent_id(0)).is_none(),
        "the oldest offline agent is forgotten"
    );
    assert_eq!(s.snapshot(agent_id(total)).unwrap().state, AgentState::Idle);
    let forgotten: Vec<_> = s
        .take_changes()
        .into_iter()
        .filter_map(|c| match c {
            Change::AgentForgotten { agent } => Some(agent),
            _ => None,
        })
        .collect();
    assert_eq!(
        forgotten,
        (0..10).map(agent_id).collect::<Vec<_>>(),
        "the store lets go too"
    );
}

/// Each task holding its own copy of its capability's name cost a queued task 48 bytes: the
/// tasks of a capability share one, submitted or restored.
#[test]
fn the_tasks_of_a_capability_share_one_copy_of_its_name() {
    let name = |s: &Scheduler<LeastLoaded>, n: u128| s.tasks[&task_id(n)].spec.capability.clone();
    let mut s = sched();
    for n in 1..=3 {
        s.submit(spec(n, "a"), Timestamp(0), &mut ended_failed)
            .unwrap();
    }
    assert!(name(&s, 1).is_same_copy(&name(&s, 2)));
    assert!(name(&s, 1).is_same_copy(&name(&s, 3)));
    let mut restored = sched();
    let recovered = |n| RecoveredTask {
        spec: spec(n, "a"),
        status: TaskStatus::Queued,
        attempt: 0,
        released: 0,
        lease_until: None,
        not_before: None,
        replicas: vec![],
    };
    restored.restore(
        vec![recovered(1), recovered(2)],
        Timestamp(0),
        &mut ended_failed,
    );
    assert!(name(&restored, 1).is_same_copy(&name(&restored, 2)));
    restored.check_invariants().unwrap();
}

#[test]
fn an_active_task_stays_small() {
    // A million queued tasks are a million of these (plus their specs): their size is the hub's
    // memory per queued task. The phase enum keeps only the fields of the current phase.
    assert!(
        std::mem::size_of::<Phase>() <= 40,
        "Phase is {} bytes",
        std::mem::size_of::<Phase>()
    );
    assert!(
        std::mem::size_of::<ActiveTask>() <= 56,
        "ActiveTask is {} bytes",
        std::mem::size_of::<ActiveTask>()
    );
    // Its spec, behind an `Arc` (16 bytes more) in a chunk of the allocator's (16-byte steps):
    // four fields added since the 400-byte target was first met (submitted_by, on_parent_failure,
    // consensus, features) took it from a 160-byte chunk to 208 (BENCHMARKS.md, "Memory per
    // queued task"). A field more should be a choice, not a surprise.
    assert!(
        std::mem::size_of::<crate::TaskSpec>() <= 176,
        "TaskSpec is {} bytes",
        std::mem::size_of::<crate::TaskSpec>()
    );
}

#[test]
fn attempts_carry_their_queue_wait_and_run_time_for_the_measurements() {
    let mut s = sched();
    // Priority 5 with aging: the wait is measured from when the task became ready, whatever
    // its rank in the queue.
    s.submit(spec(1, "a"), Timestamp(100), &mut none).unwrap();
    s.take_changes();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(350));
    let changes = s.take_changes();
    let queued = changes.iter().find_map(|c| match c {
        Change::AttemptStarted { queued_ms, .. } => Some(*queued_ms),
        _ => None,
    });
    assert_eq!(queued, Some(250));
    s.report(agent_id(1), task_id(1), 1, ok(), Timestamp(400))
        .unwrap();
    let changes = s.take_changes();
    let Some(Change::AttemptEnded {
        created_at,
        started_at,
        ended_at,
        ..
    }) = changes.first()
    else {
        panic!("{changes:?}")
    };
    assert_eq!((created_at.0, started_at.0, ended_at.0), (0, 350, 400));
    // An agent already free: no wait.
    s.submit(spec(2, "a"), Timestamp(500), &mut none).unwrap();
    assert!(
        s.take_changes()
            .iter()
            .any(|c| matches!(c, Change::AttemptStarted { queued_ms: 0, .. }))
    );
}

#[test]
fn memory_counts_active_tasks_and_their_payloads_and_lets_go_of_finished_ones() {
    let mut s = sched();
    let empty = s.memory();
    assert_eq!(empty.active_tasks, 0);
    let mut big = spec(1, "a");
    big.payload = "x".repeat(10_000).into();
    s.submit(big, Timestamp(0), &mut none).unwrap();
    s.submit(spec(2, "a"), Timestamp(0), &mut none).unwrap();
    let two = s.memory();
    assert_eq!(two.active_tasks, 2);
    assert!(two.bytes >= empty.bytes + 10_000, "{two:?}");
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 2), Timestamp(1));
    s.report(agent_id(1), task_id(1), 1, ok(), Timestamp(2))
        .unwrap();
    let one = s.memory();
    assert_eq!(one.active_tasks, 1);
    assert!(
        one.bytes < two.bytes - 10_000 + 100,
        "the payload is gone: {one:?}"
    );
}

/// Task `n` as a restart finds it: running its first attempt, on an agent no longer known.
fn running(n: u128) -> RecoveredTask {
    RecoveredTask {
        spec: spec(n, "a"),
        status: TaskStatus::Running,
        attempt: 1,
        released: 0,
        lease_until: Some(Timestamp(5_000)),
        not_before: None,
        replicas: vec![],
    }
}

fn held(task: u128, attempt: u32) -> HeldAttempt {
    HeldAttempt {
        task: task_id(task),
        attempt,
    }
}

fn cancels(changes: &[Change]) -> Vec<(AgentId, TaskId, u32)> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::SendCancel {
                agent,
                task,
                attempt,
            } => Some((*agent, *task, *attempt)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_recovered_attempt_is_bound_to_the_agent_that_reconnects_holding_it() {
    let mut s = sched();
    s.restore(vec![running(1), running(2)], Timestamp(100), &mut none);
    s.take_changes();
    let rejoined = s.rejoin_agent(
        agent_id(1),
        agent_spec(&[("a", 1.0)], 4),
        // Task 2's attempt 2 never existed; task 3 is unknown.
        &[held(1, 1), held(2, 2), held(3, 1)],
        false,
        Timestamp(200),
    );
    assert_eq!(rejoined.kept, vec![held(1, 1)]);
    assert_eq!(rejoined.refused, vec![held(2, 2), held(3, 1)]);
    let changes = s.take_changes();
    assert!(changes.contains(&Change::AttemptReattached {
        task: task_id(1),
        attempt: 1,
        agent: agent_id(1),
    }));
    assert_eq!(
        cancels(&changes),
        vec![(agent_id(1), task_id(2), 2), (agent_id(1), task_id(3), 1)]
    );
    // Task 2 keeps its unknown agent: only its lease ends it.
    assert!(started(&changes).is_empty());
    s.check_invariants().unwrap();
    assert_eq!(s.snapshot(agent_id(1)).unwrap().running, 1);
    s.report(agent_id(1), task_id(1), 1, ok(), Timestamp(300))
        .unwrap();
    assert_eq!(
        terminal(&s.take_changes()),
        vec![(task_id(1), TaskStatus::Succeeded)]
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_reconnecting_worker_takes_back_its_attempts_but_never_a_live_agents() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    let mut other = agent_spec(&[("a", 1.0)], 1);
    other.name = "other".into();
    s.register_agent(agent_id(2), other, Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    s.submit(spec(2, "a"), Timestamp(0), &mut none).unwrap();
    let first = started(&s.take_changes());
    let on_one = first.iter().find(|s| s.2 == agent_id(1)).unwrap().0;
    let on_two = first.iter().find(|s| s.2 == agent_id(2)).unwrap().0;

    s.disconnect_agent(agent_id(1));
    let claims = [
        HeldAttempt {
            task: on_one,
            attempt: 1,
        },
        HeldAttempt {
            task: on_two,
            attempt: 1,
        },
    ];
    let rejoined = s.rejoin_agent(
        agent_id(3),
        agent_spec(&[("a", 1.0)], 2),
        &claims,
        false,
        Timestamp(10),
    );
    assert_eq!(rejoined.kept, vec![claims[0]]);
    assert_eq!(rejoined.refused, vec![claims[1]], "agent 2 is live");
    s.take_changes();
    s.check_invariants().unwrap();
    // Fencing follows the attempt: the old connection's result no longer counts.
    assert!(
        s.report(agent_id(1), on_one, 1, ok(), Timestamp(20))
            .is_err()
    );
    s.report(agent_id(3), on_one, 1, ok(), Timestamp(20))
        .unwrap();
    s.report(agent_id(2), on_two, 1, ok(), Timestamp(20))
        .unwrap();
    assert_eq!(terminal(&s.take_changes()).len(), 2);
    s.check_invariants().unwrap();
}

#[test]
fn a_rejoining_agent_keeps_no_more_attempts_than_its_slots() {
    let mut s = sched();
    s.restore(vec![running(1), running(2)], Timestamp(0), &mut none);
    let elsewhere = s.rejoin_agent(
        agent_id(2),
        agent_spec(&[("b", 1.0)], 4),
        &[held(1, 1)],
        false,
        Timestamp(1),
    );
    assert_eq!(
        elsewhere.refused,
        vec![held(1, 1)],
        "not a capability it has"
    );
    let rejoined = s.rejoin_agent(
        agent_id(1),
        agent_spec(&[("a", 1.0)], 1),
        &[held(1, 1), held(2, 1)],
        false,
        Timestamp(1),
    );
    assert_eq!(rejoined.kept, vec![held(1, 1)]);
    assert_eq!(rejoined.refused, vec![held(2, 1)]);
    s.check_invariants().unwrap();
}

#[test]
fn an_expired_lease_tells_its_agent_to_stop() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap(); // timeout 1000 ms
    s.take_changes();
    s.advance(Timestamp(1_000));
    assert_eq!(
        cancels(&s.take_changes()),
        vec![(agent_id(1), task_id(1), 1)]
    );
}

#[test]
fn taking_an_attempt_from_a_live_connection_of_the_same_name_tells_that_one_to_stop() {
    let mut s = sched();
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(0));
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    s.take_changes();
    // The same worker back on a new connection before the hub saw the old one drop.
    let rejoined = s.rejoin_agent(
        agent_id(2),
        agent_spec(&[("a", 1.0)], 1),
        &[held(1, 1)],
        false,
        Timestamp(5),
    );
    assert_eq!(rejoined.kept, vec![held(1, 1)]);
    assert_eq!(
        cancels(&s.take_changes()),
        vec![(agent_id(1), task_id(1), 1)],
        "never twice at once"
    );
    s.check_invariants().unwrap();
}

#[test]
fn an_agent_rejoining_as_draining_is_offered_nothing() {
    let mut s = sched();
    s.submit(spec(1, "a"), Timestamp(0), &mut none).unwrap();
    s.take_changes();
    s.rejoin_agent(
        agent_id(1),
        agent_spec(&[("a", 1.0)], 2),
        &[],
        true,
        Timestamp(1),
    );
    assert!(started(&s.take_changes()).is_empty());
    assert_eq!(s.snapshot(agent_id(1)).unwrap().state, AgentState::Draining);
    s.check_invariants().unwrap();
}

#[test]
fn a_capability_name_is_forgotten_once_nothing_waits_for_it_and_no_agent_serves_it() {
    let mut s = sched();
    // A client makes up names: each task queues under a new one and is cancelled.
    for n in 1..=100 {
        s.submit(spec(n, &format!("made-up-{n}")), Timestamp(1), &mut none)
            .unwrap();
        s.cancel(task_id(n), Timestamp(2)).unwrap();
    }
    s.check_invariants().unwrap();
    assert_eq!((s.queues.len(), s.agents_by_capability.len()), (0, 0));

    // A served name stays while its agent is connected, though its queue is empty, and goes
    // with the agent; a name with tasks queued stays until they leave.
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(3));
    s.submit(spec(101, "a"), Timestamp(3), &mut none).unwrap();
    s.submit(spec(102, "b"), Timestamp(3), &mut none).unwrap();
    assert!(s.queues.contains_key(&Capability::parse("b", "c").unwrap()));
    s.check_invariants().unwrap();
    s.disconnect_agent(agent_id(1));
    s.check_invariants().unwrap();
    let kept: Vec<String> = s.queues.keys().map(|c| c.to_string()).collect();
    assert_eq!(
        kept,
        vec!["b".to_string()],
        "a has nothing queued and no agent"
    );
    assert!(s.agents_by_capability.is_empty());
    s.cancel(task_id(102), Timestamp(4)).unwrap();
    s.check_invariants().unwrap();
    assert!(s.queues.is_empty());
}

#[test]
fn a_holding_policy_forgets_a_name_with_its_arrival_rate_and_a_lease_brings_its_queue_back() {
    let mut s = Scheduler::new(
        SchedulerConfig::default(),
        crate::routing::Learned::new(1, 0.0),
    );
    s.submit(spec(1, "made-up"), Timestamp(1), &mut none)
        .unwrap();
    assert_eq!(s.arrivals.len(), 1, "the policy counts arrivals per name");
    s.cancel(task_id(1), Timestamp(2)).unwrap();
    s.check_invariants().unwrap();
    assert!(s.queues.is_empty() && s.arrivals.is_empty());

    // A task running on an agent that disconnects keeps its lease; the name is forgotten
    // meanwhile, and the lease's end queues the task under it again.
    s.register_agent(agent_id(1), agent_spec(&[("a", 1.0)], 1), Timestamp(3));
    s.submit(spec(2, "a"), Timestamp(3), &mut none).unwrap();
    assert_eq!(started(&s.take_changes()).len(), 1);
    s.disconnect_agent(agent_id(1));
    s.check_invariants().unwrap();
    assert!(s.queues.is_empty() && s.agents_by_capability.is_empty() && s.arrivals.is_empty());
    s.advance(Timestamp(3 + spec(2, "a").timeout_ms + 60_000));
    s.check_invariants().unwrap();
    assert_eq!(
        s.queue_depths().len(),
        1,
        "the task waits under its name again"
    );
}
