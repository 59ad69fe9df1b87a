//! Property test: over random sequences of events, no task is lost, none is assigned twice at
//! once (a consensus task: no two replicas on one identity, at most `replicas` at once), none
//! ends twice, and the scheduler's internal invariants hold after every step; with the
//! least-loaded policy and with the learned one, which may hold tasks for busy agents. Tasks
//! may depend on the previous one, run after a failed parent, or ask for consensus.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::backoff::Backoff;
use crate::consensus::ConsensusSpec;
use crate::routing::{Learned, LeastLoaded};
use crate::task::OnParentFailure;
use crate::task::tests::spec;

#[derive(Debug, Clone)]
enum Event {
    Submit {
        capability: u8,
        priority: u8,
        depends_on_previous: bool,
        run_on_parent_failure: bool,
        /// 0 or 1: a plain task; more: a consensus task with a majority quorum.
        replicas: u8,
    },
    Connect {
        capabilities: u8,
        slots: u32,
    },
    Disconnect(usize),
    /// The n-th agent's connection drops and its worker reconnects at once as a new agent,
    /// naming the attempts it holds plus one stale claim.
    Reconnect(usize),
    Heartbeat(usize),
    /// A result for the n-th open attempt, possibly with a wrong attempt number.
    Report {
        pick: usize,
        ok: bool,
        retryable: bool,
        skew: i8,
        /// Which of two outputs a success reports, so that replicas may disagree.
        second_answer: bool,
        /// Instead of a result: the attempt is given back unstarted.
        release: bool,
    },
    Cancel(usize),
    Drain(usize),
    Advance(u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0u8..3, 0u8..10, any::<bool>(), any::<bool>(), 0u8..4).prop_map(|(capability, priority, depends_on_previous, run_on_parent_failure, replicas)| Event::Submit { capability, priority, depends_on_previous, run_on_parent_failure, replicas }),
        1 => (1u8..8, 1u32..4).prop_map(|(capabilities, slots)| Event::Connect { capabilities, slots }),
        1 => any::<usize>().prop_map(Event::Disconnect),
        1 => any::<usize>().prop_map(Event::Reconnect),
        1 => any::<usize>().prop_map(Event::Heartbeat),
        5 => (any::<usize>(), any::<bool>(), any::<bool>(), -1i8..=1, any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(pick, ok, retryable, skew, second_answer, release)| Event::Report { pick, ok, retryable, skew, second_answer, release }),
        1 => any::<usize>().prop_map(Event::Cancel),
        1 => any::<usize>().prop_map(Event::Drain),
        3 => (0u64..3_000).prop_map(Event::Advance),
    ]
}

const CAPS: [&str; 3] = ["a", "b", "c"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn no_task_is_lost_or_assigned_twice_at_once(events in prop::collection::vec(event(), 1..200)) {
        run(events, LeastLoaded)?;
    }

    #[test]
    fn no_task_is_lost_or_assigned_twice_at_once_when_held(
        events in prop::collection::vec(event(), 1..200),
        seed in any::<u64>(),
    ) {
        run(events, Learned::new(seed, 0.05))?;
    }
}

fn run(events: Vec<Event>, policy: impl RoutingPolicy) -> Result<(), TestCaseError> {
    let mut s = Scheduler::new(
        SchedulerConfig {
            aging_ms: 100,
            heartbeat_timeout_ms: 2_000,
            ..SchedulerConfig::default()
        },
        policy,
    );
    let mut now = Timestamp(0);
    let mut submitted: Vec<TaskId> = Vec::new();
    let mut ended: HashMap<TaskId, TaskEnd> = HashMap::new();
    // Open attempts: (task, attempt) -> agent.
    let mut open: BTreeMap<(TaskId, u32), AgentId> = BTreeMap::new();
    let mut replicas: HashMap<TaskId, usize> = HashMap::new();
    let mut agents: Vec<AgentId> = Vec::new();
    let mut names: HashMap<AgentId, String> = HashMap::new();
    let mut next = 1u128;

    for event in events {
        match event {
            Event::Submit {
                capability,
                priority,
                depends_on_previous,
                run_on_parent_failure,
                replicas: asked,
            } => {
                let mut t = spec(next, CAPS[capability as usize]);
                if run_on_parent_failure {
                    t.on_parent_failure = OnParentFailure::Run;
                }
                if asked > 1 {
                    let consensus = ConsensusSpec::from_fields(Some(u32::from(asked)), None, None);
                    t.consensus = consensus.unwrap().map(Box::new);
                    replicas.insert(t.id, usize::from(asked));
                }
                next += 1;
                t.priority = priority;
                t.backoff = Backoff {
                    base_ms: 10,
                    max_ms: 100,
                };
                t.created_at = now;
                if depends_on_previous {
                    t.depends_on = submitted.last().copied().into_iter().collect();
                }
                let id = t.id;
                let mut resolve = |dep| ended.get(&dep).cloned();
                s.submit(t, now, &mut resolve).unwrap();
                submitted.push(id);
            }
            Event::Connect {
                capabilities,
                slots,
            } => {
                let caps = (0..3)
                    .filter(|i| capabilities & (1 << i) != 0)
                    .map(|i| (Capability::parse(CAPS[i], "c").unwrap(), 0.5))
                    .collect();
                let id = AgentId(Uuid::from_u128(1 << 64 | next));
                next += 1;
                // Three identities, so what is learned differs between agents.
                let name = format!("p{}", next % 3);
                names.insert(id, name.clone());
                s.register_agent(
                    id,
                    AgentSpec {
                        name,
                        capabilities: caps,
                        slots,
                    },
                    now,
                );
                agents.push(id);
            }
            Event::Disconnect(i) if !agents.is_empty() => {
                s.disconnect_agent(agents[i % agents.len()])
            }
            Event::Reconnect(i) if !agents.is_empty() => {
                let old = agents[i % agents.len()];
                s.disconnect_agent(old);
                let mut claims: Vec<HeldAttempt> = open
                    .iter()
                    .filter(|(_, agent)| **agent == old)
                    .map(|((task, attempt), _)| HeldAttempt {
                        task: *task,
                        attempt: *attempt,
                    })
                    .collect();
                claims.sort_by_key(|c| c.task);
                if let Some(first) = claims.first().copied() {
                    // One past the newest attempt of the task, so that it is stale.
                    let newest = open.range((first.task, 0)..=(first.task, u32::MAX)).last();
                    claims.push(HeldAttempt {
                        task: first.task,
                        attempt: newest.map_or(first.attempt, |((_, a), _)| *a) + 1,
                    });
                }
                let id = AgentId(Uuid::from_u128(1 << 64 | next));
                next += 1;
                let caps = CAPS
                    .iter()
                    .map(|c| (Capability::parse(c, "c").unwrap(), 0.5))
                    .collect();
                // The name of the agent it replaces: a reconnection is the same identity.
                let name = names[&old].clone();
                names.insert(id, name.clone());
                let rejoined = s.rejoin_agent(
                    id,
                    AgentSpec {
                        name,
                        capabilities: caps,
                        slots: 3,
                    },
                    &claims,
                    false,
                    now,
                );
                prop_assert_eq!(rejoined.kept.len() + rejoined.refused.len(), claims.len());
                if let Some(stale) = claims.last().filter(|_| claims.len() > 1) {
                    prop_assert!(
                        rejoined.refused.contains(stale),
                        "a stale attempt was re-bound"
                    );
                }
                agents.push(id);
            }
            Event::Heartbeat(i) if !agents.is_empty() => {
                s.heartbeat(agents[i % agents.len()], now);
            }
            Event::Drain(i) if !agents.is_empty() => {
                let _ = s.drain(agents[i % agents.len()]);
            }
            Event::Report {
                pick,
                ok,
                retryable,
                skew,
                second_answer,
                release,
            } if !open.is_empty() => {
                let keys: Vec<_> = open.keys().copied().collect();
                let (task, attempt) = keys[pick % keys.len()];
                let agent = open[&(task, attempt)];
                let attempt = attempt.saturating_add_signed(i32::from(skew));
                let report = if release {
                    Report::Released
                } else if ok {
                    let output = if second_answer { "2" } else { "1" };
                    Report::Success {
                        output: output.into(),
                    }
                } else {
                    Report::Failure {
                        error: "x".into(),
                        retryable,
                    }
                };
                let accepted = s.report(agent, task, attempt, report, now).is_ok();
                prop_assert_eq!(
                    accepted,
                    skew == 0,
                    "fencing accepted a wrong attempt or refused the right one"
                );
            }
            Event::Cancel(i) if !submitted.is_empty() => {
                let _ = s.cancel(submitted[i % submitted.len()], now);
            }
            Event::Advance(ms) => {
                now = now.plus_ms(ms);
                s.advance(now);
            }
            _ => {}
        }
        for change in s.take_changes() {
            match &change {
                Change::AttemptStarted {
                    spec,
                    attempt,
                    agent,
                    ..
                } => {
                    let running: Vec<AgentId> = open
                        .range((spec.id, 0)..=(spec.id, u32::MAX))
                        .map(|(_, a)| *a)
                        .collect();
                    let at_once = replicas.get(&spec.id).copied().unwrap_or(1);
                    prop_assert!(running.len() < at_once, "task assigned twice at once");
                    prop_assert!(
                        running.iter().all(|a| names[a] != names[agent]),
                        "two replicas on one identity"
                    );
                    prop_assert!(open.insert((spec.id, *attempt), *agent).is_none());
                }
                Change::AttemptReattached {
                    task,
                    attempt,
                    agent,
                } => {
                    let held = open.get_mut(&(*task, *attempt));
                    prop_assert!(held.is_some(), "re-bound an attempt not open");
                    if let Some(held) = held {
                        *held = *agent;
                    }
                }
                Change::AttemptEnded { task, attempt, .. } => {
                    prop_assert!(open.remove(&(*task, *attempt)).is_some());
                }
                _ => {}
            }
            if let Some((task, end)) = change.ended() {
                prop_assert!(ended.insert(task, end).is_none(), "task ended twice");
                prop_assert!(
                    !open.keys().any(|(t, _)| *t == task),
                    "a task ended with attempts open"
                );
            }
        }
        prop_assert_eq!(s.check_invariants(), Ok(()));
    }
    // Nothing lost: every task is still active or ended exactly once.
    for id in &submitted {
        prop_assert!(
            ended.contains_key(id) != s.active_status(*id).is_some(),
            "task {} lost",
            id
        );
    }
    Ok(())
}
