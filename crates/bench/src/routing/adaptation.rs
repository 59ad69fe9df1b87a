//! How long a policy takes to move traffic off an agent that slowed down, and back once it
//! recovered, read from the share of assignments per time bucket.
//!
//! The agent's share before the change is its share of all assignments from `before_from` to the
//! slow-down. It has *moved away* at the end of the first [`WINDOW`] after the slow-down in which
//! its share is at most a quarter of that, and *moved back* at the end of the first window after
//! the recovery in which its share is at least three quarters of it again. Times are from the
//! change, in ms, at the buckets' resolution ([`super::pool::BUCKET_MS`]).

use super::pool::BUCKET_MS;

/// Buckets per window (500 ms).
pub const WINDOW: usize = 5;

/// Share of assignments per agent in each bucket (all zeros where nothing was assigned).
pub fn shares(counts: &[Vec<u32>]) -> Vec<Vec<f64>> {
    counts
        .iter()
        .map(|bucket| {
            let total: u32 = bucket.iter().sum();
            bucket
                .iter()
                .map(|&n| {
                    if total == 0 {
                        0.0
                    } else {
                        f64::from(n) / f64::from(total)
                    }
                })
                .collect()
        })
        .collect()
}

/// The slowed agent and the buckets that matter.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    pub agent: usize,
    pub before_from: usize,
    pub slowed: usize,
    pub recovered: usize,
    pub end: usize,
}

/// (moved away, moved back), ms after the slow-down and after the recovery.
pub fn times(shares: &[Vec<f64>], change: &Change) -> (Option<f64>, Option<f64>) {
    let share_over = |from: usize, to: usize| {
        let buckets = shares.get(from..to.min(shares.len()))?;
        let total: f64 = buckets.iter().map(|b| b[change.agent]).sum();
        (!buckets.is_empty()).then(|| total / buckets.len() as f64)
    };
    // An agent that had no traffic before has none to move.
    let Some(before) = share_over(change.before_from, change.slowed).filter(|b| *b > 0.0) else {
        return (None, None);
    };
    let first_window = |from: usize, to: usize, done: &dyn Fn(f64) -> bool| {
        (from..to.saturating_sub(WINDOW - 1)).find_map(|start| {
            let share = share_over(start, start + WINDOW)?;
            done(share).then(|| ((start + WINDOW - from) as u64 * BUCKET_MS) as f64)
        })
    };
    let away = first_window(change.slowed, change.recovered, &|s| s <= before / 4.0);
    let back = first_window(change.recovered, change.end, &|s| s >= before * 0.75);
    (away, back)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_from_windows_of_the_slowed_agents_share() {
        // Agent 0 has half the traffic, drops to 5% three buckets after the slow-down at 10, and
        // is back at 50% eight buckets after the recovery at 20.
        let mut counts = Vec::new();
        for b in 0..40 {
            let share0 = match b {
                0..13 => 50,
                13..28 => 5,
                _ => 50,
            };
            counts.push(vec![share0, 100 - share0]);
        }
        let change = Change {
            agent: 0,
            before_from: 0,
            slowed: 10,
            recovered: 20,
            end: 40,
        };
        let (away, back) = times(&shares(&counts), &change);
        // The first window all at 5% starts at bucket 13: it ends 8 buckets after the change.
        assert_eq!(away, Some(800.0));
        // Windows mixing 5% and 50% reach 3/4 of 50% once four of five buckets are back.
        assert_eq!(back, Some(1_200.0));
        // Never moved: None.
        let flat: Vec<Vec<u32>> = (0..40).map(|_| vec![50, 50]).collect();
        assert_eq!(times(&shares(&flat), &change).0, None);
    }
}
