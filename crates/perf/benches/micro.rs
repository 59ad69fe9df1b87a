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

/// A task's whole life in the store, 1,000 tasks per commit (three commits per 1,000, each with
/// an fsync): Hive's writer and schema (`hive_perf::store`).
#[divan::bench(sample_count = 10)]
fn store_life_of_10k_tasks_hive_writer() -> u64 {
    hive_perf::store::writer_round_trip(10_000)
}

/// The same lives in the least schema on the same engine: the store's raw limit.
#[divan::bench(sample_count = 10)]
fn store_life_of_10k_tasks_raw() -> u64 {
    hive_perf::store::raw_round_trip(10_000)
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

/// The upper bound of a binary frame encoding: the same 16 assignments and 16 results as
/// `codec_frame_of_16`, in postcard (ids as 16 bytes, payloads still JSON text inside).
#[divan::bench]
fn codec_frame_of_16_postcard() -> usize {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Assignment {
        task_id: [u8; 16],
        attempt: u32,
        capability: String,
        payload: String,
        priority: u8,
        timeout_ms: u64,
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    struct TaskResult {
        task_id: [u8; 16],
        attempt: u32,
        ok: bool,
        output: String,
    }
    let tasks: Vec<Assignment> = (0..16u64)
        .map(|i| Assignment {
            task_id: uuid::Uuid::from_u64_pair(0, i).into_bytes(),
            attempt: 1,
            capability: "summarize".into(),
            payload: format!(r#"{{"text":"document number {i} of frame 0","lang":"en"}}"#),
            priority: 5,
            timeout_ms: 30_000,
        })
        .collect();
    let frame = postcard::to_allocvec(&tasks).unwrap();
    let mut bytes = frame.len();
    let tasks: Vec<Assignment> = postcard::from_bytes(&frame).unwrap();
    for task in tasks {
        let result = TaskResult {
            task_id: task.task_id,
            attempt: task.attempt,
            ok: true,
            output: task.payload,
        };
        let frame = postcard::to_allocvec(&result).unwrap();
        bytes += frame.len();
        let _: TaskResult = postcard::from_bytes(&frame).unwrap();
    }
    bytes
}

/// What lz4 would add to a frame: compress and decompress one JSON assign frame of 16 tasks
/// (bytes are free on loopback, so on this bench compression can only cost).
#[divan::bench]
fn lz4_assign_frame_of_16(bencher: divan::Bencher) {
    use hive_proto::protocol::{Assignment, HubMessage};
    let tasks = (0..16u64)
        .map(|i| Assignment {
            task_id: hive_core::TaskId(uuid::Uuid::from_u64_pair(0, i)).to_string(),
            attempt: 1,
            capability: "summarize".into(),
            payload: hive_proto::RawValue::from_string(format!(
                r#"{{"text":"document number {i} of frame 0","lang":"en"}}"#
            ))
            .unwrap(),
            priority: 5,
            timeout_ms: 30_000,
            deadline_ms: Some(1_780_000_030_000),
            inputs: None,
            failed_inputs: Vec::new(),
        })
        .collect();
    let frame = serde_json::to_string(&HubMessage::Assign { tasks }).unwrap();
    bencher.bench(|| {
        let packed = lz4_flex::compress_prepend_size(frame.as_bytes());
        let unpacked = lz4_flex::decompress_size_prepended(&packed).unwrap();
        (packed.len(), unpacked.len())
    });
    let packed = lz4_flex::compress_prepend_size(frame.as_bytes());
    eprintln!(
        "lz4: assign frame of 16 {} -> {} bytes",
        frame.len(),
        packed.len()
    );
}

/// A `POST /tasks/batch` body of 100 tasks, as `hive bench`'s batched clients send it.
fn batch_body() -> Vec<u8> {
    let tasks: Vec<_> = (0..100)
        .map(|n| serde_json::json!({"capability": "bench", "payload": {"t": 1_700_000_000_000u64 + n}}))
        .collect();
    serde_json::to_vec(&serde_json::json!({ "tasks": tasks })).unwrap()
}

/// The request body parsed as the hub does on success: plain serde_json.
#[divan::bench]
fn api_batch_body_plain(bencher: divan::Bencher) {
    let body = batch_body();
    bencher.bench(|| {
        serde_json::from_slice::<hive_proto::api::NewTaskBatch>(divan::black_box(&body))
            .unwrap()
            .tasks
            .len()
    });
}

/// The same with the field path tracked, as every body was parsed before errors alone needed it.
#[divan::bench]
fn api_batch_body_path_tracked(bencher: divan::Bencher) {
    let body = batch_body();
    bencher.bench(|| {
        let mut de = serde_json::Deserializer::from_slice(divan::black_box(&body));
        serde_path_to_error::deserialize::<_, hive_proto::api::NewTaskBatch>(&mut de)
            .unwrap()
            .tasks
            .len()
    });
}
