//! Throughput and latency over time: every half second, the tasks executed since the last point
//! and the p99 of the assignment latencies recorded since then.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::recorder::Recorder;

const STEP: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    pub seconds: f64,
    pub phase: String,
    pub tasks_per_sec: f64,
    /// p99 of submit-to-assignment latency in this interval, while latencies are recorded.
    pub assign_p99_ms: Option<f64>,
}

pub struct Timeline {
    phase: Arc<Mutex<String>>,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Vec<Point>>,
}

impl Timeline {
    pub fn start(recorder: Arc<Recorder>) -> Timeline {
        let phase = Arc::new(Mutex::new(String::from("start")));
        let (stop, mut stopped) = oneshot::channel();
        let current = phase.clone();
        let handle = tokio::spawn(async move {
            let started = Instant::now();
            let mut points = Vec::new();
            let mut executed = 0u64;
            let mut previous = crate::recorder::histogram();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(STEP) => {}
                    _ = &mut stopped => return points,
                }
                let now = recorder.executed.load(std::sync::atomic::Ordering::Relaxed);
                let latest = recorder
                    .assign_us
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let mut delta = latest.clone();
                let _ = delta.subtract(&previous);
                previous = latest;
                points.push(Point {
                    seconds: started.elapsed().as_secs_f64(),
                    phase: current.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                    tasks_per_sec: (now - executed) as f64 / STEP.as_secs_f64(),
                    assign_p99_ms: (!delta.is_empty())
                        .then(|| delta.value_at_quantile(0.99) as f64 / 1000.0),
                });
                executed = now;
            }
        });
        Timeline {
            phase,
            stop,
            handle,
        }
    }

    pub fn phase(&self, name: &str) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = name.to_string();
    }

    pub async fn stop(self) -> Vec<Point> {
        let _ = self.stop.send(());
        self.handle.await.unwrap_or_default()
    }
}
