//! Micro-benchmarks (divan) of the hot paths: the scheduler with 1,000 agents and 1,000,000
//! queued tasks, the protocol codec, and the store's group commit. Run with
//! `cargo bench -p hive-perf`. Timings go to BENCHMARKS.md; CI gates on instruction counts.

use std::cell::RefCell;

use hive_core::{Capability, Change, LeastLoaded, Report, Scheduler, SchedulerConfig, Timestamp};
use hive_store::BatchWriter;

fn main() {
    divan::main();
}

/// One result that frees a slot, and the assignment of the next queued task into it, with
/// 1,000 agents busy and 1,000,000 tasks queued.
#[divan::bench(sample_count = 50, sample_size = 1000)]
fn scheduler_complete_and_assign_1k_agents_1m_queued(bencher: divan::Bencher) {
    let capability = Capability::parse("work", "capability").unwrap();
    let mut scheduler = Scheduler::new(SchedulerConfig::default(), LeastLoaded);
    for n in 0..1_000 {
        let (id, spec) = hive_perf::agent(n, &capability, 1);
        scheduler.register_agent(id, spec, Timestamp(0));
    }
    for n in 0..1_000_000 + 1_000 {
        scheduler
            .submit(hive_perf::task(n, &capability), Timestamp(n), &mut |_| None)
            .unwrap();
    }
    let running: Vec<_> = scheduler
        .take_changes()
        .into_iter()
        .filter_map(|c| match c {
            Change::AttemptStarted {
                spec,
                attempt,
                agent,
                ..
            } => Some((spec.id, attempt, agent)),
            _ => None,
        })
        .collect();
    let state = RefCell::new((scheduler, running, 0usize));
    bencher.bench_local(|| {
        let (scheduler, running, next) = &mut *state.borrow_mut();
        let i = *next % running.len();
        *next += 1;
        let (task, attempt, agent) = running[i];
        scheduler
            .report(
                agent,
                task,
                attempt,
                Report::Success {
                    output: "null".into(),
                },
                Timestamp(2_000_000),
            )
            .unwrap();
        for change in scheduler.take_changes() {
            if let Change::AttemptStarted {
                spec,
                attempt,
                agent,
                ..
            } = change
            {
                running[i] = (spec.id, attempt, agent);
            }
        }
    });
}

/// Submit, assign and complete, per task, with 100 agents of 10 slots.
#[divan::bench(args = [10_000])]
fn scheduler_round_trip(tasks: u64) -> usize {
    hive_perf::scheduler_round_trip(100, 10, tasks)
}

/// One assign frame of 16 tasks and its 16 results, encoded and decoded.
#[divan::bench]
fn codec_frame_of_16() -> usize {
    hive_perf::codec_round_trip(1)
}

/// 1,000 tasks inserted, started and completed in one SQLite transaction (synchronous=FULL).
#[divan::bench(sample_count = 20)]
fn group_commit_1000_tasks(bencher: divan::Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        hive_store::sqlite::SqliteStore::open(dir.path(), hive_store::sqlite::Durability::Full)
            .unwrap();
    let mut writer = store.writer().unwrap();
    let capability = Capability::parse("work", "capability").unwrap();
    let mut scheduler = Scheduler::new(SchedulerConfig::default(), LeastLoaded);
    let (agent, spec) = hive_perf::agent(0, &capability, 1_000_000);
    scheduler.register_agent(agent, spec, Timestamp(0));
    let mut next = 0u64;
    bencher.bench_local(|| {
        for _ in 0..1_000 {
            scheduler
                .submit(
                    hive_perf::task(next, &capability),
                    Timestamp(next),
                    &mut |_| None,
                )
                .unwrap();
            next += 1;
        }
        let mut changes = scheduler.take_changes();
        hive_perf::complete_all(&mut scheduler, changes.clone(), Timestamp(next));
        changes.extend(scheduler.take_changes());
        writer.apply(&[&changes]).unwrap();
    });
}
