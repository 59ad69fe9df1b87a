//! Fixed, deterministic workloads of Hive's hot paths, shared by the divan micro-benchmarks
//! (`benches/micro.rs`, timing) and the instruction-count check (`hive-perf check`, counting).
//!
//! - [`scheduler_round_trip`]: agents register, tasks are submitted, every assignment is
//!   completed at once, until all tasks succeeded: submit -> offer -> assign -> result; with the
//!   least-loaded policy, or with the learned one ([`learned_round_trip`]).
//! - [`codec_round_trip`]: the worker protocol's frames, encoded and decoded as on the wire.
//!
//! - [`store`]: a task's life in Hive's SQLite writer, and in the least schema on the same
//!   engine (the store's raw limit).
//!
//! And the whole path, a real hub under callgrind driven over loopback: [`end_to_end`]; the link
//! order of the hub's start-up code, from a profile of one: [`order`].

pub mod callgrind;
pub mod end_to_end;
pub mod order;
pub mod size_classes;
pub mod stages;
pub mod store;

use hive_core::{
    AgentId, AgentSpec, Backoff, Capability, Change, Learned, LeastLoaded, Report, RoutingPolicy,
    Scheduler, SchedulerConfig, TaskEnd, TaskId, TaskSpec, Timestamp,
};
use hive_proto::RawValue;
use hive_proto::protocol::{Assignment, HubMessage, TaskResult, WorkerMessage};
use uuid::Uuid;

pub fn task(n: u64, capability: &Capability) -> TaskSpec {
    TaskSpec {
        id: TaskId(Uuid::from_u64_pair(1, n)),
        capability: capability.clone(),
        payload: r#"{"text":"a short payload"}"#.into(),
        priority: (n % 10) as u8,
        max_attempts: 3,
        timeout_ms: 30_000,
        backoff: Backoff::default(),
        idempotency_key: None,
        depends_on: Vec::new(),
        created_at: Timestamp(n),
        on_parent_failure: hive_core::OnParentFailure::Fail,
        consensus: None,
        submitted_by: None,
        features: None,
    }
}

pub fn agent(n: u64, capability: &Capability, slots: u32) -> (AgentId, AgentSpec) {
    let spec = AgentSpec {
        name: format!("agent-{n}"),
        capabilities: vec![(capability.clone(), 0.5)],
        slots,
    };
    (AgentId(Uuid::from_u64_pair(2, n)), spec)
}

fn no_dependencies(_: TaskId) -> Option<TaskEnd> {
    None
}

/// Completes every attempt in `changes`; returns how many tasks ended.
pub fn complete_all<P: RoutingPolicy>(
    scheduler: &mut Scheduler<P>,
    changes: Vec<Change>,
    now: Timestamp,
) -> usize {
    let mut ended = 0;
    for change in changes {
        ended += usize::from(change.terminal().is_some());
        if let Change::AttemptStarted {
            spec,
            attempt,
            agent,
            ..
        } = change
        {
            let report = Report::Success {
                output: "null".into(),
            };
            scheduler
                .report(agent, spec.id, attempt, report, now)
                .expect("current attempt");
        }
    }
    ended
}

/// `tasks` tasks through `agents` agents of `slots` slots; returns how many succeeded.
pub fn scheduler_round_trip(agents: u64, slots: u32, tasks: u64) -> usize {
    round_trip(LeastLoaded, agents, slots, tasks)
}

/// [`scheduler_round_trip`] with the learned policy (a fixed seed): estimates updated by every
/// result, expected times weighed, busy agents included, tasks held.
pub fn learned_round_trip(agents: u64, slots: u32, tasks: u64) -> usize {
    round_trip(Learned::new(7, 0.05), agents, slots, tasks)
}

fn round_trip<P: RoutingPolicy>(policy: P, agents: u64, slots: u32, tasks: u64) -> usize {
    let capability = Capability::parse("work", "capability").expect("valid");
    let mut scheduler = Scheduler::new(SchedulerConfig::default(), policy);
    for n in 0..agents {
        let (id, spec) = agent(n, &capability, slots);
        scheduler.register_agent(id, spec, Timestamp(0));
    }
    for n in 0..tasks {
        scheduler
            .submit(task(n, &capability), Timestamp(n), &mut no_dependencies)
            .expect("accepted");
    }
    let mut ended = 0;
    let mut now = Timestamp(tasks);
    loop {
        let changes = scheduler.take_changes();
        if changes.is_empty() {
            return ended;
        }
        now = now.plus_ms(1);
        ended += complete_all(&mut scheduler, changes, now);
    }
}

/// `frames` assign frames of 16 tasks encoded and decoded, and 16 results per frame the other
/// way; returns the bytes that crossed.
pub fn codec_round_trip(frames: u64) -> usize {
    let mut bytes = 0;
    for f in 0..frames {
        let tasks = (0..16)
            .map(|i| Assignment {
                task_id: TaskId(Uuid::from_u64_pair(f, i)).to_string(),
                attempt: 1,
                capability: "summarize".into(),
                payload: RawValue::from_string(format!(
                    r#"{{"text":"document number {i} of frame {f}","lang":"en"}}"#
                ))
                .expect("JSON"),
                priority: 5,
                timeout_ms: 30_000,
                // As a hub sends it.
                deadline_ms: Some(1_780_000_030_000 + i),
                inputs: None,
                failed_inputs: Vec::new(),
            })
            .collect();
        let text = serde_json::to_string(&HubMessage::Assign { tasks }).expect("serialisable");
        bytes += text.len();
        let HubMessage::Assign { tasks } = serde_json::from_str(&text).expect("parses") else {
            unreachable!("an assign frame")
        };
        for task in tasks {
            let result = WorkerMessage::Result(TaskResult {
                task_id: task.task_id,
                attempt: task.attempt,
                ok: true,
                output: Some(task.payload),
                error: None,
                retry: false,
            });
            let text = serde_json::to_string(&result).expect("serialisable");
            bytes += text.len();
            let _: WorkerMessage = serde_json::from_str(&text).expect("parses");
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_workloads_do_their_work() {
        assert_eq!(super::scheduler_round_trip(4, 2, 100), 100);
        assert_eq!(super::learned_round_trip(4, 2, 100), 100);
        assert!(super::codec_round_trip(2) > 2 * 16 * 100);
    }
}
