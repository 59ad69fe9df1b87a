//! Shared measurement state: a clock origin, latency histograms (HDR, microseconds) and counters
//! the workers and load generators update.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

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

/// p50/p95/p99/max of a histogram of microseconds, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub count: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            count: h.len(),
        }
    }
}
