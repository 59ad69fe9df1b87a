//! A pool of threads for CPU-bound work inside the hub (the built-in executors; later the neural
//! model), apart from the async runtime that serves the API.
//!
//! One queue per thread; a job goes to the thread with the fewest jobs queued or running. The
//! threads run under Linux's `SCHED_IDLE` policy, so that however saturated the pool is, a
//! runtime thread that wakes up with work preempts a pool thread at once: the API keeps its
//! latency and the pool takes what is left (measured by `hive bench --workloads cpu`; nice 19
//! alone was measured too, and let the API's p99 double).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

pub struct CpuPool {
    threads: Vec<PoolThread>,
}

struct PoolThread {
    jobs: mpsc::Sender<Job>,
    /// Jobs queued or running on this thread.
    load: Arc<AtomicUsize>,
}

impl CpuPool {
    /// `size` threads (at least one). The threads end once the pool is dropped and their queue is
    /// empty.
    pub fn new(size: usize) -> std::io::Result<CpuPool> {
        let mut threads = Vec::with_capacity(size.max(1));
        for n in 0..size.max(1) {
            let (jobs, queue) = mpsc::channel::<Job>();
            let load = Arc::new(AtomicUsize::new(0));
            let counter = load.clone();
            std::thread::Builder::new()
                .name(format!("hive-cpu-{n}"))
                .spawn(move || {
                    lower_priority();
                    while let Ok(job) = queue.recv() {
                        job();
                        counter.fetch_sub(1, Ordering::AcqRel);
                    }
                })?;
            threads.push(PoolThread { jobs, load });
        }
        Ok(CpuPool { threads })
    }

    pub fn size(&self) -> usize {
        self.threads.len()
    }

    /// Runs `job` on the least-loaded thread; returns its index.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> usize {
        let (index, thread) = self
            .threads
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| t.load.load(Ordering::Acquire))
            .expect("a pool has at least one thread");
        thread.load.fetch_add(1, Ordering::AcqRel);
        if thread.jobs.send(Box::new(job)).is_err() {
            // The thread is gone (it panicked in a job); the job is dropped with its channel.
            thread.load.fetch_sub(1, Ordering::AcqRel);
        }
        index
    }

    /// Jobs queued or running, per thread.
    pub fn loads(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|t| t.load.load(Ordering::Acquire))
            .collect()
    }
}

/// The weakest claim on a CPU that Linux knows. Failing is harmless: the pool then competes with
/// the API on equal terms, which the bench would show.
fn lower_priority() {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    let min = thread_priority::ThreadPriority::Min;
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), min, idle) {
        tracing::warn!(error = ?e, "cannot lower the CPU pool's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn jobs_go_to_the_least_loaded_thread_and_all_run() {
        let pool = CpuPool::new(3).unwrap();
        // Three blocked jobs: one per thread, because each spawn sees the others busy.
        let gate = Arc::new(Barrier::new(4));
        let mut placed = Vec::new();
        for _ in 0..3 {
            let gate = gate.clone();
            placed.push(pool.spawn(move || {
                gate.wait();
            }));
        }
        placed.sort();
        assert_eq!(placed, vec![0, 1, 2]);
        assert_eq!(pool.loads(), vec![1, 1, 1]);
        gate.wait();
        let (done, finished) = mpsc::channel();
        for n in 0..30 {
            let done = done.clone();
            pool.spawn(move || done.send(n).unwrap());
        }
        let mut seen: Vec<i32> = (0..30).map(|_| finished.recv().unwrap()).collect();
        seen.sort();
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn pool_threads_run_at_the_lowest_priority() {
        let pool = CpuPool::new(1).unwrap();
        let (tx, rx) = mpsc::channel();
        pool.spawn(move || {
            tx.send(thread_priority::unix::thread_schedule_policy().unwrap())
                .unwrap();
        });
        assert_eq!(
            rx.recv().unwrap(),
            thread_priority::unix::ThreadSchedulePolicy::Normal(
                thread_priority::unix::NormalThreadSchedulePolicy::Idle
            )
        );
    }
}
