//! What the scheduler learns from outcomes, and the learned policy placing tasks by it.

use super::tests::{agent_id, agent_spec, fail, none, ok, started, task_id};
use super::*;
use crate::routing::{Learned, LeastLoaded};
use crate::task::tests::spec;

fn learned_estimates(changes: &[Change]) -> Vec<&LearnedEstimate> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Learned(l) => Some(l),
            _ => None,
        })
        .collect()
}

/// What a store would give back for `name` on capability `a`: 100 attempts of `latency_ms`, the
/// first `failures` of them failed.
fn learned(name: &str, latency_ms: u64, failures: u32) -> LearnedEstimate {
    let mut estimate = crate::estimate::Estimate::default();
    for i in 0..100 {
        let outcome = if i < failures {
            crate::task::AttemptOutcome::Failed
        } else {
            crate::task::AttemptOutcome::Succeeded
        };
        estimate.observe(outcome, latency_ms, Timestamp(0), &Default::default());
    }
    LearnedEstimate {
        identity: name.into(),
        capability: Capability::parse("a", "c").unwrap(),
        estimate,
    }
}

fn named(name: &str, slots: u32) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        ..agent_spec(&[("a", 1.0)], slots)
    }
}

#[test]
fn outcomes_are_learned_per_name_once_per_turn_and_survive_a_reconnect() {
    let mut s = Scheduler::new(SchedulerConfig::default(), LeastLoaded);
    s.register_agent(agent_id(1), named("gpu", 4), Timestamp(0));
    for n in 1..=3 {
        s.submit(spec(n, "a"), Timestamp(0), &mut none).unwrap();
    }
    s.take_changes();
    s.report(agent_id(1), task_id(1), 1, ok(), Timestamp(10))
        .unwrap();
    s.report(agent_id(1), task_id(2), 1, ok(), Timestamp(20))
        .unwrap();
    s.report(agent_id(1), task_id(3), 1, fail(false), Timestamp(30))
        .unwrap();
    let changes = s.take_changes();
    let learned = learned_estimates(&changes);
    assert_eq!(learned.len(), 1, "three outcomes, one estimate written");
    assert_eq!(&*learned[0].identity, "gpu");
    assert_eq!(learned[0].estimate.samples, 3);
    assert!(learned[0].estimate.failures > 0.9 && learned[0].estimate.successes > 1.9);
    assert!(learned_estimates(&s.take_changes()).is_empty());

    // The worker reconnects as a new agent under the same name: what was learned is its own.
    s.disconnect_agent(agent_id(1));
    s.register_agent(agent_id(2), named("gpu", 4), Timestamp(40));
    s.advance(Timestamp(40));
    let view = s.snapshot(agent_id(2)).unwrap().routing;
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].1.samples, 3);
    assert!((view[0].1.success_probability - 3.0 / 4.0).abs() < 0.01);
    assert_eq!(view[0].1.share, 1.0, "every recent assignment went to gpu");
}

#[test]
fn restored_estimates_steer_the_learned_policy_after_a_restart() {
    // What a first hub learned: "slow" takes 40 ms, "fast" 2 ms.
    let mut first = Scheduler::new(SchedulerConfig::default(), LeastLoaded);
    first.register_agent(agent_id(1), named("slow", 8), Timestamp(0));
    first.register_agent(agent_id(2), named("fast", 8), Timestamp(0));
    for n in 1..=8 {
        first.submit(spec(n, "a"), Timestamp(0), &mut none).unwrap();
    }
    for (task, _, agent) in started(&first.take_changes()) {
        let ms = if agent == agent_id(1) { 40 } else { 2 };
        first.report(agent, task, 1, ok(), Timestamp(ms)).unwrap();
    }
    let kept: Vec<LearnedEstimate> = learned_estimates(&first.take_changes())
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(kept.len(), 2);

    // A new hub with the learned policy, given the store's estimates: "fast" gets the work.
    let mut second = Scheduler::new(SchedulerConfig::default(), Learned::new(1, 0.0));
    second.restore_learned(kept);
    second.register_agent(agent_id(3), named("slow", 8), Timestamp(100));
    second.register_agent(agent_id(4), named("fast", 8), Timestamp(100));
    for n in 11..=14 {
        second
            .submit(spec(n, "a"), Timestamp(100), &mut none)
            .unwrap();
    }
    let agents: Vec<_> = started(&second.take_changes())
        .into_iter()
        .map(|(_, _, a)| a)
        .collect();
    assert_eq!(agents, vec![agent_id(4); 4]);
    // Without what was learned, least-loaded would have alternated between them.
    second.check_invariants().unwrap();
}

#[test]
fn the_learned_policy_holds_tasks_for_a_busy_fast_agent_rather_than_a_free_flaky_one() {
    let mut s = Scheduler::new(SchedulerConfig::default(), Learned::new(5, 0.0));
    s.restore_learned(vec![learned("fast", 2, 0), learned("flaky", 2, 30)]);
    s.register_agent(agent_id(1), named("fast", 2), Timestamp(10));
    s.register_agent(agent_id(2), named("flaky", 1), Timestamp(10));
    for n in 1..=4 {
        s.submit(spec(n, "a"), Timestamp(10), &mut none).unwrap();
    }
    let first = started(&s.take_changes());
    let fast_two = vec![(task_id(1), 1, agent_id(1)), (task_id(2), 1, agent_id(1))];
    assert_eq!(
        first, fast_two,
        "two held for the fast agent's slots, the flaky one idle"
    );
    s.check_invariants().unwrap();
    s.report(agent_id(1), task_id(1), 1, ok(), Timestamp(12))
        .unwrap();
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(3), 1, agent_id(1))]
    );
    // The fast agent leaves: nothing is held for it any more, so the flaky one takes the rest.
    s.disconnect_agent(agent_id(1));
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(4), 1, agent_id(2))]
    );
    s.check_invariants().unwrap();
}

#[test]
fn a_task_held_for_a_busy_agent_stuck_on_a_long_attempt_runs_elsewhere_after_the_hold_limit() {
    let mut s = Scheduler::new(SchedulerConfig::default(), Learned::new(5, 0.0));
    s.restore_learned(vec![learned("fast", 2, 0), learned("slow", 30, 0)]);
    s.register_agent(agent_id(1), named("fast", 1), Timestamp(10));
    s.register_agent(agent_id(2), named("slow", 1), Timestamp(10));
    // The fast agent takes task 1 and never answers; task 2 is held for it.
    s.submit(spec(1, "a"), Timestamp(10), &mut none).unwrap();
    s.submit(spec(2, "a"), Timestamp(10), &mut none).unwrap();
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(1), 1, agent_id(1))]
    );
    let limit = s.next_wakeup().expect("a re-offer is due");
    assert!(
        limit <= Timestamp(10 + 31),
        "{limit:?}: at most the slow agent's time"
    );
    s.advance(limit);
    assert_eq!(
        started(&s.take_changes()),
        vec![(task_id(2), 1, agent_id(2))]
    );
    s.check_invariants().unwrap();
}
