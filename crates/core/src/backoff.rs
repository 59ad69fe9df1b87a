//! Retry delays: exponential in the attempt number, capped, with "equal jitter" (half the delay
//! fixed, half spread) so that tasks failing together do not retry together.
//!
//! The jitter is a hash of the task id and attempt rather than a random draw: the core has no
//! source of randomness, and a deterministic spread is as good at de-synchronising retries while
//! keeping every test reproducible.

use crate::ids::TaskId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the second attempt, before jitter.
    pub base_ms: u64,
    /// Upper bound of any delay, before jitter.
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1_000,
            max_ms: 60_000,
        }
    }
}

impl Backoff {
    /// Delay after attempt number `attempt` (1-based) failed. Always within
    /// `[d/2, d]` where `d = min(base * 2^(attempt-1), max)`.
    pub fn delay_ms(&self, task: TaskId, attempt: u32) -> u64 {
        let exponent = attempt.saturating_sub(1).min(40);
        let full = self
            .base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.max_ms.max(self.base_ms));
        let half = full / 2;
        half + spread(task, attempt) % (full - half + 1)
    }
}

/// A well-mixed 64-bit value from the task id and attempt (splitmix64 finaliser).
fn spread(task: TaskId, attempt: u32) -> u64 {
    let (hi, lo) = task.0.as_u64_pair();
    let mut z = hi ^ lo.rotate_left(17) ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn id(n: u128) -> TaskId {
        TaskId(Uuid::from_u128(n))
    }

    #[test]
    fn delay_grows_exponentially_within_jitter_bounds() {
        let b = Backoff {
            base_ms: 100,
            max_ms: 10_000,
        };
        for attempt in 1..=6 {
            let full = 100u64 << (attempt - 1);
            for n in 0..50 {
                let d = b.delay_ms(id(n), attempt);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d} not in [{}, {full}]",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn delay_is_capped() {
        let b = Backoff {
            base_ms: 100,
            max_ms: 1_000,
        };
        for n in 0..50 {
            assert!(b.delay_ms(id(n), 30) <= 1_000);
            assert!(b.delay_ms(id(n), u32::MAX) <= 1_000);
        }
    }

    #[test]
    fn jitter_spreads_tasks_that_fail_together() {
        let b = Backoff {
            base_ms: 1_000,
            max_ms: 60_000,
        };
        let delays: std::collections::HashSet<u64> =
            (0..100).map(|n| b.delay_ms(id(n), 3)).collect();
        assert!(delays.len() > 50, "only {} distinct delays", delays.len());
    }
}
