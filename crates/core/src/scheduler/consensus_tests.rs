//! Consensus tasks: replicas on distinct identities, votes and quorum, a lying agent, a crashing
//! one, too few agents, cancel and fencing.

use super::tests::{agent_id, none, task_id};
use super::*;
use crate::consensus::ConsensusSpec;
use crate::routing::LeastLoaded;
use crate::task::tests::spec;

fn sched() -> Scheduler<LeastLoaded> {
    Scheduler::new(SchedulerConfig::default(), LeastLoaded)
}

/// An agent named `name` with one slot of capability `a`.
fn named(name: &str) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        capabilities: vec![(Capability::parse("a", "c").unwrap(), 1.0)],
        slots: 1,
    }
}

fn consensus(n: u128, replicas: u32, quorum: u32, vote: Option<&str>) -> TaskSpec {
    let mut task = spec(n, "a");
    task.consensus = ConsensusSpec::from_fields(Some(replicas), Some(quorum), vote)
        .unwrap()
        .map(Box::new);
    task
}

fn output(text: &str) -> Report {
    Report::Success {
        output: text.into(),
    }
}

/// (attempt, agent) of every attempt started in `changes`.
fn started(changes: &[Change]) -> Vec<(u32, AgentId)> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::AttemptStarted { attempt, agent, .. } => Some((*attempt, *agent)),
            _ => None,
        })
        .collect()
}

/// The task's end: status, error and result.
fn finished(changes: &[Change]) -> Option<(TaskStatus, Option<String>, Option<String>)> {
    changes.iter().find_map(|c| match c {
        Change::TaskFinished {
            status,
            error,
            result,
            ..
        } => Some((
            *status,
            error.clone(),
            result.as_deref().map(str::to_string),
        )),
        _ => None,
    })
}

fn cancels(changes: &[Change]) -> Vec<(AgentId, u32)> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::SendCancel { agent, attempt, .. } => Some((*agent, *attempt)),
            _ => None,
        })
        .collect()
}

fn with_agents(names: &[&str]) -> Scheduler<LeastLoaded> {
    let mut s = sched();
    for (i, name) in names.iter().enumerate() {
        s.register_agent(agent_id(i as u128), named(name), Timestamp(0));
    }
    s.take_changes();
    s
}

#[test]
fn honest_agents_agree_and_the_replica_still_running_is_cancelled() {
    let mut s = with_agents(&["a", "b", "c", "d"]);
    s.submit(consensus(1, 3, 2, None), Timestamp(0), &mut none)
        .unwrap();
    let runs = started(&s.take_changes());
    assert_eq!(runs.len(), 3, "three replicas at once: {runs:?}");
    let attempts: Vec<u32> = runs.iter().map(|(n, _)| *n).collect();
    assert_eq!(attempts, vec![1, 2, 3], "numbered across the replicas");
    assert_eq!(s.active_status(task_id(1)), Some(TaskStatus::Running));
    s.check_invariants().unwrap();

    let (first, second, third) = (runs[0], runs[1], runs[2]);
    s.report(
        first.1,
        task_id(1),
        first.0,
        output(r#"{"x":1,"y":2}"#),
        Timestamp(5),
    )
    .unwrap();
    assert!(
        finished(&s.take_changes()).is_none(),
        "one vote is no quorum"
    );
    s.report(
        second.1,
        task_id(1),
        second.0,
        output(r#"{ "y": 2, "x": 1 }"#),
        Timestamp(6),
    )
    .unwrap();
    let changes = s.take_changes();
    assert_eq!(
        finished(&changes),
        Some((TaskStatus::Succeeded, None, Some(r#"{"x":1,"y":2}"#.into())))
    );
    assert_eq!(cancels(&changes), vec![(third.1, third.0)]);
    assert_eq!(s.active_status(task_id(1)), None);
    // A late result of the cancelled replica is stale.
    assert!(
        s.report(third.1, task_id(1), third.0, output("1"), Timestamp(7))
            .is_err()
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_lying_agent_is_outvoted_and_loses_reliability() {
    let mut s = with_agents(&["honest-1", "honest-2", "liar"]);
    let before = |s: &Scheduler<LeastLoaded>, n: u128| {
        s.snapshot(agent_id(n)).unwrap().routing[0]
            .1
            .success_probability
    };
    for round in 0..5u128 {
        s.submit(
            consensus(round + 1, 3, 2, Some("/answer")),
            Timestamp(round as u64 * 10),
            &mut none,
        )
        .unwrap();
        let mut runs = started(&s.take_changes());
        assert_eq!(runs.len(), 3);
        // The liar answers first: it votes before the quorum is reached.
        runs.sort_by_key(|(_, agent)| *agent != agent_id(2));
        for (attempt, agent) in runs {
            let answer = if agent == agent_id(2) { 41 } else { 42 };
            let text = format!(r#"{{"answer": {answer}, "why": "{agent}"}}"#);
            let at = Timestamp(round as u64 * 10 + 1);
            // The third result comes after the quorum: stale, its replica was cancelled.
            let _ = s.report(agent, task_id(round + 1), attempt, output(&text), at);
        }
        let changes = s.take_changes();
        let (status, _, result) = finished(&changes).unwrap();
        assert_eq!(
            (status, result.as_deref()),
            (TaskStatus::Succeeded, Some("42"))
        );
        s.check_invariants().unwrap();
    }
    let (honest, liar) = (before(&s, 0), before(&s, 2));
    assert!(
        liar < 0.5 && honest > 0.8,
        "the liar's success probability {liar} fell, the honest {honest} did not"
    );
}

#[test]
fn a_crashed_replica_is_replaced_by_another_identity() {
    let mut s = with_agents(&["a", "b", "c", "d"]);
    s.submit(consensus(1, 3, 3, None), Timestamp(0), &mut none)
        .unwrap();
    let runs = started(&s.take_changes());
    let idle = agent_id(3);
    assert!(!runs.iter().any(|(_, a)| *a == idle));
    // The first replica's agent crashes (its connection drops): its lease runs out.
    let lease = spec(1, "a").timeout_ms;
    s.disconnect_agent(runs[0].1);
    s.report(runs[1].1, task_id(1), runs[1].0, output("7"), Timestamp(10))
        .unwrap();
    s.report(runs[2].1, task_id(1), runs[2].0, output("7"), Timestamp(10))
        .unwrap();
    s.take_changes();
    s.advance(Timestamp(lease + 1));
    let changes = s.take_changes();
    assert_eq!(cancels(&changes), vec![(runs[0].1, runs[0].0)]);
    assert_eq!(
        started(&changes),
        vec![(4, idle)],
        "replaced on the identity that is free and has not voted"
    );
    s.check_invariants().unwrap();
    s.report(idle, task_id(1), 4, output("7"), Timestamp(lease + 2))
        .unwrap();
    let (status, _, result) = finished(&s.take_changes()).unwrap();
    assert_eq!(
        (status, result.as_deref()),
        (TaskStatus::Succeeded, Some("7"))
    );
}

#[test]
fn with_too_few_agents_the_task_waits_for_another_identity() {
    let mut s = sched();
    s.register_agent(agent_id(1), named("a"), Timestamp(0));
    // Another connection of the same name is the same identity: it cannot vote again.
    s.register_agent(agent_id(2), named("a"), Timestamp(0));
    s.submit(consensus(1, 3, 2, None), Timestamp(0), &mut none)
        .unwrap();
    let runs = started(&s.take_changes());
    assert_eq!(runs.len(), 1, "one identity, one replica: {runs:?}");
    assert_eq!(s.queue_depths()[0].1, 1, "waiting for more identities");
    s.check_invariants().unwrap();
    s.report(runs[0].1, task_id(1), 1, output("true"), Timestamp(1))
        .unwrap();
    assert!(started(&s.take_changes()).is_empty());
    assert_eq!(s.active_status(task_id(1)), Some(TaskStatus::Running));
    assert_eq!(s.queue_depths()[0].1, 1, "still waiting for an identity");
    s.check_invariants().unwrap();
    s.register_agent(agent_id(3), named("b"), Timestamp(2));
    let runs = started(&s.take_changes());
    assert_eq!(runs, vec![(2, agent_id(3))]);
    s.report(agent_id(3), task_id(1), 2, output("true"), Timestamp(3))
        .unwrap();
    let (status, _, _) = finished(&s.take_changes()).unwrap();
    assert_eq!(status, TaskStatus::Succeeded);
    assert!(s.queue_depths().is_empty());
    s.check_invariants().unwrap();
}

#[test]
fn a_task_fails_once_no_value_can_reach_the_quorum() {
    let mut s = with_agents(&["a", "b", "c"]);
    s.submit(consensus(1, 3, 3, None), Timestamp(0), &mut none)
        .unwrap();
    let runs = started(&s.take_changes());
    s.report(runs[0].1, task_id(1), runs[0].0, output("1"), Timestamp(1))
        .unwrap();
    s.report(runs[1].1, task_id(1), runs[1].0, output("2"), Timestamp(1))
        .unwrap();
    let changes = s.take_changes();
    let (status, error, _) = finished(&changes).unwrap();
    assert_eq!(status, TaskStatus::Failed);
    let error = error.unwrap();
    assert!(
        error.contains("no agreement") && error.contains("3 of 3"),
        "{error}"
    );
    assert_eq!(cancels(&changes), vec![(runs[2].1, runs[2].0)]);
    s.check_invariants().unwrap();
}

#[test]
fn a_result_with_nothing_to_vote_with_is_a_failed_replica() {
    let mut s = with_agents(&["a", "b"]);
    let mut task = consensus(1, 1, 1, Some("/answer"));
    task.max_attempts = 1;
    s.submit(task, Timestamp(0), &mut none).unwrap();
    let runs = started(&s.take_changes());
    s.report(
        runs[0].1,
        task_id(1),
        1,
        output(r#"{"other":1}"#),
        Timestamp(1),
    )
    .unwrap();
    let (status, error, _) = finished(&s.take_changes()).unwrap();
    assert_eq!(status, TaskStatus::Failed);
    assert!(error.unwrap().contains("no value at \"/answer\""));
    s.check_invariants().unwrap();
}

#[test]
fn cancelling_a_consensus_task_cancels_its_replicas() {
    let mut s = with_agents(&["a", "b"]);
    s.submit(consensus(1, 3, 2, None), Timestamp(0), &mut none)
        .unwrap();
    let runs = started(&s.take_changes());
    assert_eq!(runs.len(), 2);
    // A result from the wrong agent, or for an attempt that is not running, is refused.
    let stranger = if runs[0].1 == agent_id(0) {
        agent_id(1)
    } else {
        agent_id(0)
    };
    assert!(
        s.report(stranger, task_id(1), runs[0].0, output("1"), Timestamp(1))
            .is_err()
    );
    assert!(
        s.report(runs[0].1, task_id(1), 9, output("1"), Timestamp(1))
            .is_err()
    );
    s.cancel(task_id(1), Timestamp(2)).unwrap();
    let changes = s.take_changes();
    assert_eq!(finished(&changes).unwrap().0, TaskStatus::Cancelled);
    let mut cancelled = cancels(&changes);
    cancelled.sort();
    let mut expected: Vec<_> = runs.iter().map(|(n, a)| (*a, *n)).collect();
    expected.sort();
    assert_eq!(cancelled, expected);
    assert!(s.queue_depths().is_empty());
    s.check_invariants().unwrap();
}

#[test]
fn a_waiting_replica_and_a_ready_task_are_served_in_rank_order() {
    let mut s = with_agents(&["a"]);
    s.submit(consensus(1, 2, 2, None), Timestamp(0), &mut none)
        .unwrap();
    s.submit(spec(2, "a"), Timestamp(1), &mut none).unwrap();
    s.register_agent(agent_id(1), named("b"), Timestamp(2));
    // Agent b is free: the replica waiting since 0 ranks before task 2.
    let changes = s.take_changes();
    assert!(
        changes.iter().any(|c| matches!(c,
            Change::AttemptStarted { spec, agent, .. } if spec.id == task_id(1) && *agent == agent_id(1))),
        "{changes:?}"
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_restart_keeps_the_votes_and_the_replicas_running() {
    let mut s = sched();
    let replica = |attempt, identity: &str, output: Option<&str>| RecoveredReplica {
        attempt,
        identity: identity.into(),
        started_at: Timestamp(0),
        outcome: output.map(|_| AttemptOutcome::Succeeded),
        output: output.map(Into::into),
        error: None,
    };
    s.restore(
        vec![RecoveredTask {
            spec: consensus(1, 3, 2, None),
            status: TaskStatus::Running,
            attempt: 2,
            released: 0,
            lease_until: None,
            not_before: None,
            replicas: vec![replica(1, "a", Some("true")), replica(2, "b", None)],
        }],
        Timestamp(100),
        &mut none,
    );
    s.check_invariants().unwrap();
    assert_eq!(s.queue_depths()[0].1, 1, "one replica to place");
    // The worker that ran replica 2 comes back holding it; a new identity takes the third.
    let held = [HeldAttempt {
        task: task_id(1),
        attempt: 2,
    }];
    let rejoined = s.rejoin_agent(agent_id(2), named("b"), &held, false, Timestamp(101));
    assert_eq!(rejoined.kept, held.to_vec());
    // "a" answered already: it is not asked again.
    s.register_agent(agent_id(1), named("a"), Timestamp(101));
    assert!(started(&s.take_changes()).is_empty());
    s.register_agent(agent_id(3), named("c"), Timestamp(102));
    assert_eq!(started(&s.take_changes()), vec![(3, agent_id(3))]);
    s.check_invariants().unwrap();
    s.report(agent_id(2), task_id(1), 2, output("true"), Timestamp(103))
        .unwrap();
    let changes = s.take_changes();
    assert_eq!(finished(&changes).unwrap().0, TaskStatus::Succeeded);
    assert_eq!(cancels(&changes), vec![(agent_id(3), 3)]);
    s.check_invariants().unwrap();
}

#[test]
fn an_identity_whose_replica_failed_may_answer_again() {
    // Exactly three identities for three replicas: a failure must not leave the task waiting.
    let mut s = with_agents(&["a", "b", "c"]);
    s.submit(consensus(1, 3, 3, None), Timestamp(0), &mut none)
        .unwrap();
    let runs = started(&s.take_changes());
    let flaky = runs[0];
    let failure = Report::Failure {
        error: "model overloaded".into(),
        retryable: true,
    };
    s.report(flaky.1, task_id(1), flaky.0, failure, Timestamp(1))
        .unwrap();
    assert_eq!(started(&s.take_changes()), vec![(4, flaky.1)]);
    for (attempt, agent) in [runs[1], runs[2], (4, flaky.1)] {
        s.report(agent, task_id(1), attempt, output("0"), Timestamp(2))
            .unwrap();
    }
    let (status, _, result) = finished(&s.take_changes()).unwrap();
    assert_eq!(
        (status, result.as_deref()),
        (TaskStatus::Succeeded, Some("0"))
    );
    s.check_invariants().unwrap();
}

#[test]
fn the_result_is_the_first_agreeing_answer_as_it_came() {
    let mut s = with_agents(&["a", "b"]);
    s.submit(consensus(1, 2, 2, None), Timestamp(0), &mut none)
        .unwrap();
    let runs = started(&s.take_changes());
    s.report(
        runs[0].1,
        task_id(1),
        runs[0].0,
        output(r#"{ "b": 1, "a": 2 }"#),
        Timestamp(1),
    )
    .unwrap();
    s.report(
        runs[1].1,
        task_id(1),
        runs[1].0,
        output(r#"{"a":2,"b":1}"#),
        Timestamp(1),
    )
    .unwrap();
    let (_, _, result) = finished(&s.take_changes()).unwrap();
    assert_eq!(result.as_deref(), Some(r#"{ "b": 1, "a": 2 }"#));
}

#[test]
fn a_restart_with_the_quorum_already_reached_decides_at_once() {
    let mut s = sched();
    let voted = |attempt, identity: &str| RecoveredReplica {
        attempt,
        identity: identity.into(),
        started_at: Timestamp(0),
        outcome: Some(AttemptOutcome::Succeeded),
        output: Some("5".into()),
        error: None,
    };
    s.restore(
        vec![RecoveredTask {
            spec: consensus(1, 3, 2, None),
            status: TaskStatus::Running,
            attempt: 2,
            released: 0,
            lease_until: None,
            not_before: None,
            replicas: vec![voted(1, "a"), voted(2, "b")],
        }],
        Timestamp(10),
        &mut none,
    );
    let (status, _, result) = finished(&s.take_changes()).unwrap();
    assert_eq!(
        (status, result.as_deref()),
        (TaskStatus::Succeeded, Some("5"))
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_replica_is_not_rebound_to_a_worker_without_the_capability() {
    let mut s = with_agents(&["a", "b"]);
    s.submit(consensus(1, 2, 2, None), Timestamp(0), &mut none)
        .unwrap();
    let runs = started(&s.take_changes());
    s.disconnect_agent(runs[0].1);
    let name = if runs[0].1 == agent_id(0) { "a" } else { "b" };
    let other_capability = AgentSpec {
        name: name.into(),
        capabilities: vec![(Capability::parse("z", "c").unwrap(), 1.0)],
        slots: 1,
    };
    let held = [HeldAttempt {
        task: task_id(1),
        attempt: runs[0].0,
    }];
    let rejoined = s.rejoin_agent(agent_id(9), other_capability, &held, false, Timestamp(1));
    assert!(rejoined.kept.is_empty() && rejoined.refused == held.to_vec());
    s.check_invariants().unwrap();
}

/// Agents "a" and "b" run the two replicas; "d" is busy with a plain task. "a" fails.
fn failed_while_another_identity_is_busy() -> (Scheduler<LeastLoaded>, (u32, AgentId)) {
    let mut s = sched();
    s.register_agent(agent_id(3), named("d"), Timestamp(0));
    s.submit(spec(9, "a"), Timestamp(0), &mut none).unwrap();
    s.register_agent(agent_id(0), named("a"), Timestamp(0));
    s.register_agent(agent_id(1), named("b"), Timestamp(0));
    s.submit(consensus(1, 2, 2, None), Timestamp(0), &mut none)
        .unwrap();
    let runs = started(&s.take_changes());
    let on_a = *runs.iter().find(|(_, a)| *a == agent_id(0)).unwrap();
    let failure = Report::Failure {
        error: "flaky".into(),
        retryable: true,
    };
    s.report(agent_id(0), task_id(1), on_a.0, failure, Timestamp(1))
        .unwrap();
    (s, on_a)
}

#[test]
fn a_failed_replica_waits_for_another_identity_while_one_is_connected() {
    let (mut s, _) = failed_while_another_identity_is_busy();
    assert!(
        started(&s.take_changes()).is_empty(),
        "not back to \"a\" while \"d\" is there"
    );
    s.check_invariants().unwrap();
    s.report(agent_id(3), task_id(9), 1, output("done"), Timestamp(2))
        .unwrap();
    assert_eq!(started(&s.take_changes()), vec![(3, agent_id(3))]);
    s.check_invariants().unwrap();
}

#[test]
fn when_the_other_identities_leave_the_failed_one_is_asked_again() {
    let (mut s, _) = failed_while_another_identity_is_busy();
    s.take_changes();
    s.disconnect_agent(agent_id(3));
    assert_eq!(started(&s.take_changes()), vec![(3, agent_id(0))]);
    s.check_invariants().unwrap();
}

#[test]
fn when_the_other_identity_drains_the_failed_one_is_asked_again() {
    let (mut s, _) = failed_while_another_identity_is_busy();
    s.take_changes();
    s.drain(agent_id(3)).unwrap();
    assert_eq!(started(&s.take_changes()), vec![(3, agent_id(0))]);
    s.check_invariants().unwrap();
}
