//! The learned policy: the agent with the lowest expected time to a *successful* result.
//!
//! For each candidate the expected time is `L + (1 - p) / p x (penalty + L)`: one attempt of
//! latency `L`, and when it fails (probability `1 - p`, repeated geometrically) the retry's delay
//! (`penalty`, the task's first backoff) and another attempt. A candidate has a free slot, so it
//! adds no queueing of its own. `p` and `L` are drawn from what is believed of the agent
//! (Thompson sampling): `p` from its Beta posterior, `L` from a log-normal around its latency
//! estimate whose spread shrinks with the evidence behind it. An agent never measured is
//! optimistic about its latency (0) and uncertain about its success, so it gets tried; an agent
//! whose evidence faded gets tried again.
//!
//! Exploration is bounded: a draw that picks another agent than the posterior means would (the
//! greedy choice) spends one token, and tokens accrue at `exploration` per decision (at most a
//! burst of [`BURST`]). So at most that share of assignments, in the long run, go anywhere but to
//! the agent believed best. `exploration = 0` is greedy; `1` is plain Thompson sampling.

use super::{Candidate, Route, RoutingPolicy};
use crate::random::Rng;

/// Exploration tokens kept at most: how many exploring choices may come in a row.
pub const BURST: f64 = 10.0;

/// Success probabilities are floored here, so an agent that always failed costs a lot, not
/// infinity (and two such agents still compare by latency).
const MIN_SUCCESS: f64 = 1e-3;

#[derive(Debug, Clone)]
pub struct Learned {
    rng: Rng,
    exploration: f64,
    tokens: f64,
}

impl Learned {
    /// `exploration`: the long-run share of choices that may differ from the greedy one, 0-1.
    pub fn new(seed: u64, exploration: f64) -> Self {
        Learned {
            rng: Rng::seeded(seed),
            exploration: exploration.clamp(0.0, 1.0),
            tokens: 0.0,
        }
    }
}

/// Expected time to a successful result (see the module's header).
pub fn expected_ms(latency_ms: f64, success: f64, penalty_ms: f64) -> f64 {
    let p = success.max(MIN_SUCCESS);
    latency_ms + (1.0 - p) / p * (penalty_ms + latency_ms)
}

impl RoutingPolicy for Learned {
    fn choose(&mut self, route: &Route<'_>, candidates: &[Candidate<'_>]) -> usize {
        if candidates.len() < 2 {
            return 0;
        }
        let penalty = route.retry_penalty_ms as f64;
        let (mut greedy, mut greedy_cost) = (0, f64::INFINITY);
        let (mut drawn, mut drawn_cost) = (0, f64::INFINITY);
        for (i, candidate) in candidates.iter().enumerate() {
            let belief = route.belief(candidate);
            let latency = belief.latency_ms.unwrap_or(0.0);
            let mean = expected_ms(latency, belief.success_probability(), penalty);
            if mean < greedy_cost {
                (greedy, greedy_cost) = (i, mean);
            }
            let spread = 1.0 / (1.0 + belief.weight).sqrt();
            let latency_draw = latency * (spread * self.rng.normal()).exp();
            let success_draw = self.rng.beta(belief.alpha, belief.beta);
            let cost = expected_ms(latency_draw, success_draw, penalty);
            if cost < drawn_cost {
                (drawn, drawn_cost) = (i, cost);
            }
        }
        self.tokens = (self.tokens + self.exploration).min(BURST.max(1.0));
        if drawn != greedy && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return drawn;
        }
        greedy
    }

    fn name(&self) -> &'static str {
        "learned"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cand, learned, route};
    use super::*;
    use crate::agent::CapabilityStats;
    use crate::estimate::Estimate;

    #[test]
    fn expected_time_counts_the_retries_a_failure_costs() {
        assert_eq!(expected_ms(5.0, 1.0, 1_000.0), 5.0);
        assert!((expected_ms(5.0, 0.8, 1_000.0) - (5.0 + 0.25 * 1_005.0)).abs() < 1e-9);
        assert!(expected_ms(1.0, 0.0, 1_000.0).is_finite());
    }

    #[test]
    fn the_fastest_reliable_agent_wins_and_the_flaky_one_is_avoided() {
        let s = CapabilityStats::default();
        let fast = learned(1, 200, 0);
        let medium = learned(5, 200, 0);
        let flaky = learned(2, 200, 40);
        let c = [
            cand(1, 0, 1, 1.0, &s, &medium),
            cand(2, 0, 1, 1.0, &s, &flaky),
            cand(3, 0, 1, 1.0, &s, &fast),
        ];
        let mut p = Learned::new(1, 0.1);
        let mut picks = [0; 3];
        for _ in 0..1_000 {
            picks[p.choose(&route(), &c)] += 1;
        }
        assert!(picks[2] >= 900, "{picks:?}");
        assert!(
            picks[1] <= 10,
            "a 20% failure rate costs retries: {picks:?}"
        );
        // Without the fast one, the medium agent beats the flaky one though it is slower.
        let mut picks = [0; 2];
        for _ in 0..1_000 {
            picks[p.choose(&route(), &c[..2])] += 1;
        }
        assert!(picks[0] >= 950, "{picks:?}");
    }

    #[test]
    fn exploration_is_bounded_and_tries_a_new_agent() {
        let s = CapabilityStats::default();
        let known = learned(5, 50, 0);
        let new = Estimate::default();
        let c = [cand(1, 0, 1, 1.0, &s, &known), cand(2, 0, 1, 1.0, &s, &new)];
        for (exploration, most) in [(0.0, 0), (0.05, 60)] {
            let mut p = Learned::new(9, exploration);
            let tried = (0..1_000).filter(|_| p.choose(&route(), &c) == 1).count();
            assert!(tried <= most, "{exploration}: {tried}");
            if exploration > 0.0 {
                assert!(tried > 0, "a never-measured agent gets tried");
            }
        }
    }
}
