//! A latency distribution recorded from any thread. Two views of the same samples:
//!
//! - the current interval, an HDR histogram (2 significant digits: 1% resolution) that each
//!   [`Latency::roll`] turns into percentiles and empties: what the live snapshot shows;
//! - cumulative counts in fixed buckets, a count and a sum, never reset: what Prometheus scrapes
//!   (its histograms are cumulative, and rates come from differences between scrapes).
//!
//! A std Mutex, not a lock-free structure: a record is a few nanoseconds of work under a lock
//! that only the snapshot contends for, once per interval.

use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Upper bounds of the cumulative buckets, in seconds (`+Inf` is implied).
pub const BUCKETS_S: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Longest latency kept exactly: an hour. Longer ones are recorded as an hour.
const MAX_US: u64 = 3_600_000_000;

/// p50/p95/p99/max of a histogram of microseconds, in milliseconds, and how many samples it had.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub count: u64,
}

impl Percentiles {
    /// All zeros for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
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

/// The cumulative view: `counts[i]` samples at or under `BUCKETS_S[i]`, then all of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Cumulative {
    pub counts: [u64; BUCKETS_S.len()],
    pub count: u64,
    pub sum_s: f64,
}

struct Inner {
    interval: Histogram<u64>,
    /// Samples per bucket (not yet cumulative), the last slot for over the largest bound.
    buckets: [u64; BUCKETS_S.len() + 1],
    count: u64,
    sum_us: u64,
}

pub struct Latency {
    inner: Mutex<Inner>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            inner: Mutex::new(Inner {
                interval: Histogram::new_with_bounds(1, MAX_US, 2).expect("valid bounds"),
                buckets: [0; BUCKETS_S.len() + 1],
                count: 0,
                sum_us: 0,
            }),
        }
    }
}

impl Latency {
    pub fn record_us(&self, us: u64) {
        let us = us.clamp(1, MAX_US);
        let bucket = BUCKETS_S
            .iter()
            .position(|&bound| us as f64 <= bound * 1e6)
            .unwrap_or(BUCKETS_S.len());
        let mut inner = self.lock();
        inner.interval.saturating_record(us);
        inner.buckets[bucket] += 1;
        inner.count += 1;
        inner.sum_us += us;
    }

    /// Ends the current interval: its percentiles, and an empty interval in its place.
    pub fn roll(&self) -> Percentiles {
        let mut inner = self.lock();
        let p = Percentiles::of(&inner.interval);
        inner.interval.reset();
        p
    }

    pub fn cumulative(&self) -> Cumulative {
        let inner = self.lock();
        let mut counts = [0; BUCKETS_S.len()];
        let mut running = 0;
        for (i, n) in inner.buckets[..BUCKETS_S.len()].iter().enumerate() {
            running += n;
            counts[i] = running;
        }
        Cumulative {
            counts,
            count: inner.count,
            sum_s: inner.sum_us as f64 / 1e6,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_reports_its_percentiles_and_starts_over() {
        let l = Latency::default();
        for ms in 1..=100 {
            l.record_us(ms * 1000);
        }
        let p = l.roll();
        assert_eq!(p.count, 100);
        // 2 significant digits: within 1%.
        assert!((p.p50 - 50.0).abs() <= 0.5, "{p:?}");
        assert!((p.p99 - 99.0).abs() <= 1.0, "{p:?}");
        assert!((p.max - 100.0).abs() <= 1.0, "{p:?}");
        assert_eq!(
            l.roll(),
            Percentiles::default(),
            "the next interval is empty"
        );
    }

    #[test]
    fn buckets_are_cumulative_and_survive_rolls() {
        let l = Latency::default();
        l.record_us(50); // <= 0.1 ms
        l.record_us(700); // <= 1 ms
        l.record_us(7_000_000); // <= 10 s
        l.record_us(u64::MAX); // an hour: over the largest bound
        l.roll();
        let c = l.cumulative();
        assert_eq!(c.count, 4);
        assert_eq!(c.counts[0], 1);
        assert_eq!(c.counts[3], 2, "0.001 s");
        assert_eq!(c.counts[15], 3, "10 s");
        assert_eq!(c.counts[BUCKETS_S.len() - 1], 3, "the hour is only in +Inf");
        assert!((c.sum_s - (0.00005 + 0.0007 + 7.0 + 3600.0)).abs() < 1e-6);
    }
}
