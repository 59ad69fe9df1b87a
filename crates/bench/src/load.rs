//! The load side: no-op workers (tasks in this process speaking the real protocol over real
//! sockets) and the task bodies the generators submit.
//!
//! Each task's payload carries the microsecond it was (meant to be) sent, so a worker can record
//! submit-to-assignment latency the moment an assignment arrives.

use std::sync::Arc;

use hive_client::worker::{Outcome, WorkerError, WorkerExit, run_worker};
use hive_proto::RawValue;
use hive_proto::api::NewTask;
use hive_proto::codec::FrameFormat;
use hive_proto::protocol::Assignment;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::recorder::Recorder;
use crate::target::Target;

pub const CAPABILITY: &str = "bench";

#[derive(serde::Deserialize)]
struct Stamp {
    t: u64,
}

pub fn task(sent_us: u64) -> NewTask {
    NewTask {
        payload: Some(RawValue::from_string(format!(r#"{{"t":{sent_us}}}"#)).expect("valid JSON")),
        ..NewTask::new(CAPABILITY)
    }
}

pub struct Workers {
    stops: Vec<oneshot::Sender<()>>,
    handles: Vec<JoinHandle<Result<WorkerExit, WorkerError>>>,
}

impl Workers {
    /// `count` workers on `hub`, named `bench-{first}` on: names unique across the hubs of a
    /// run, as a swarm's would be. Workers of one name on several hubs share one learned
    /// estimate, which every hub writes.
    pub fn spawn(
        hub: &Target,
        first: usize,
        count: usize,
        slots: u32,
        format: FrameFormat,
        recorder: Arc<Recorder>,
    ) -> Workers {
        let null = RawValue::from_string("null".into()).expect("valid JSON");
        let mut stops = Vec::new();
        let mut handles = Vec::new();
        for i in first..first + count {
            let recorder = recorder.clone();
            let null = null.clone();
            let executor = Arc::new(move |task: Assignment| {
                if let Ok(stamp) = serde_json::from_str::<Stamp>(task.payload.get()) {
                    recorder.record(&recorder.assign_us, stamp.t);
                }
                recorder
                    .executed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let output = null.clone();
                async move { Outcome::Success(output) }
            });
            let mut options = hub.worker(&[CAPABILITY], slots);
            options.name = format!("bench-{i}");
            options.format = format;
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            handles.push(tokio::spawn(run_worker(options, executor, async move {
                let _ = stopped.await;
            })));
        }
        Workers { stops, handles }
    }

    pub async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}
