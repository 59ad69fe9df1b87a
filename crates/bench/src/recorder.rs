//! Shared measurement state: a clock origin, latency histograms (HDR, microseconds) and counters
//! the workers and load generators update.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
pub use hive_metrics::Percentiles;

/// Latencies up to an hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

pub struct Recorder {
    origin: Instant,
    /// Record latencies only while set (the latency workload), not during throughput runs.
    pub recording: AtomicBool,
    pub assign_us: Mutex<Histogram<u64>>,
    pub result_us: Mutex<Histogram<u64>>,
    /// How late the open-loop generator sent each request against its schedule.
    pub schedule_lag_us: Mutex<Histogram<u64>>,
    pub executed: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            origin: Instant::now(),
            recording: AtomicBool::new(false),
            assign_us: Mutex::new(histogram()),
            result_us: Mutex::new(histogram()),
            schedule_lag_us: Mutex::new(histogram()),
            executed: AtomicU64::new(0),
        }
    }
}

impl Recorder {
    /// Microseconds since the recorder was made; what task payloads carry as their send time.
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    pub fn at(&self, us: u64) -> Instant {
        self.origin + Duration::from_micros(us)
    }

    pub fn record(&self, histogram: &Mutex<Histogram<u64>>, since_us: u64) {
        self.record_value(histogram, self.now_us().saturating_sub(since_us));
    }

    pub fn record_value(&self, histogram: &Mutex<Histogram<u64>>, us: u64) {
        if self.recording.load(Ordering::Relaxed) {
            let _ = histogram
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(us.max(1));
        }
    }
}
