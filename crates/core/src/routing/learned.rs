//! The learned policy: the agent with the lowest expected time to a *successful* result.
//!
//! For an agent with a free slot the expected time is `L + (1 - p) / p x (penalty + L)`: one
//! attempt of latency `L`, and when it fails (probability `1 - p`, repeated geometrically) the
//! retry's delay (`penalty`, the task's first backoff) and another attempt. `p` and `L` are drawn
//! from what is believed of the agent (Thompson sampling): `p` from its Beta posterior, `L` from
//! a log-normal around its latency estimate whose spread shrinks with the evidence behind it. An
//! agent never measured is optimistic about its latency (0) and uncertain about its success, so
//! it gets tried; an agent whose evidence faded gets tried again.
//!
//! Busy agents count too, through queueing on their slots: holding the task for the busy agents
//! expected to finish it sooner than the best free one costs the wait for one of their slots,
//! estimated as `(queued + 1) / rate`, the tasks queued ahead of and with this one over the rate
//! (slots / latency) at which those agents free slots. When that wait plus the best busy agent's
//! expected time is below the best free agent's, the task is held (queued); as the queue grows the
//! wait grows, and slower agents take work. So a free flaky or slow agent gets a task only when
//! the queue is long enough that waiting would cost more than its failures or its slowness. And
//! only while those busy agents keep up with the capability's arrivals (below
//! [`HOLD_UTILIZATION`] of their rate): past that, holding would only build a standing queue that
//! every task waits in, so in an overload every agent works, as under the other policies.
//!
//! Among free agents expected to do equally well (instances of one identity, agents never
//! measured) the least loaded is chosen, as [`LeastLoaded`](super::LeastLoaded) would.
//!
//! Exploration is bounded: a draw that picks another free agent than the posterior means would
//! (the greedy choice) spends one token, and tokens accrue at `exploration` per decision (at most
//! a burst of [`BURST`]). So at most that share of decisions, in the long run, go anywhere but to
//! the agent believed best. `exploration = 0` is greedy; `1` is plain Thompson sampling.

use super::{Candidate, Route, RoutingPolicy};
use crate::random::Rng;

/// Exploration tokens kept at most: how many exploring choices may come in a row.
pub const BURST: f64 = 10.0;

/// A task is held only while the arrivals are below this share of the rate at which the busy
/// agents it would wait for free slots.
pub const HOLD_UTILIZATION: f64 = 0.9;

/// Success probabilities are floored here, so an agent that always failed costs a lot, not
/// infinity (and two such agents still compare by latency).
const MIN_SUCCESS: f64 = 1e-3;

#[derive(Debug, Clone)]
pub struct Learned {
    rng: Rng,
    exploration: f64,
    tokens: f64,
    /// Per candidate of the current decision: its expected time by the posterior means, and its
    /// rate of freeing slots (per ms; 0 when its latency is unknown). Kept to spare allocations.
    scratch: Vec<(f64, f64)>,
}

impl Learned {
    /// `exploration`: the long-run share of choices that may differ from the greedy one, 0-1.
    pub fn new(seed: u64, exploration: f64) -> Self {
        Learned {
            rng: Rng::seeded(seed),
            exploration: exploration.clamp(0.0, 1.0),
            tokens: 0.0,
            scratch: Vec::new(),
        }
    }
}

/// Expected time to a successful result on a free agent (see the module's header).
pub fn expected_ms(latency_ms: f64, success: f64, penalty_ms: f64) -> f64 {
    let p = success.max(MIN_SUCCESS);
    latency_ms + (1.0 - p) / p * (penalty_ms + latency_ms)
}

impl RoutingPolicy for Learned {
    fn choose(&mut self, route: &Route<'_>, candidates: &[Candidate<'_>]) -> Option<usize> {
        let penalty = route.retry_penalty_ms as f64;
        self.scratch.clear();
        self.tokens = (self.tokens + self.exploration).min(BURST.max(1.0));
        // Without a token to spend the greedy choice is taken: the draws are skipped.
        let explore = self.tokens >= 1.0;
        let (mut greedy, mut greedy_cost) = (None, f64::INFINITY);
        let (mut drawn, mut drawn_cost) = (None, f64::INFINITY);
        for (i, candidate) in candidates.iter().enumerate() {
            let belief = route.belief(candidate);
            let latency = belief.latency_ms.unwrap_or(0.0);
            let mean = expected_ms(latency, belief.success_probability(), penalty);
            let rate = if latency > 0.0 {
                f64::from(candidate.slots) / latency
            } else {
                0.0
            };
            self.scratch.push((mean, rate));
            if !candidate.free() {
                continue;
            }
            // Equal expectations (instances of one identity, agents never measured) go to the
            // less loaded, so they share the work as least-loaded would.
            let less_loaded = |g: usize| {
                let other = &candidates[g];
                u64::from(candidate.running) * u64::from(other.slots)
                    < u64::from(other.running) * u64::from(candidate.slots)
            };
            if mean < greedy_cost || (mean == greedy_cost && greedy.is_some_and(less_loaded)) {
                (greedy, greedy_cost) = (Some(i), mean);
            }
            if !explore {
                continue;
            }
            let spread = 1.0 / (1.0 + belief.weight).sqrt();
            let latency_draw = latency * (spread * self.rng.normal()).exp();
            let success_draw = self.rng.beta(belief.alpha, belief.beta);
            let cost = expected_ms(latency_draw, success_draw, penalty);
            if cost < drawn_cost {
                (drawn, drawn_cost) = (Some(i), cost);
            }
        }
        let greedy = greedy?;
        if explore && drawn != Some(greedy) {
            self.tokens -= 1.0;
            return drawn;
        }
        // Holding: the busy agents expected to do better than the best free one, how fast they
        // free slots, and the best of them.
        let (mut rate, mut best_busy) = (0.0, f64::INFINITY);
        for (candidate, &(mean, agent_rate)) in candidates.iter().zip(&self.scratch) {
            if !candidate.free() && mean < greedy_cost && agent_rate > 0.0 {
                rate += agent_rate;
                best_busy = best_busy.min(mean);
            }
        }
        // Only while those agents keep up with the arrivals: else the queue would grow until
        // waiting cost more anyway, and meanwhile the free agent's work would be lost.
        let keeps_up = route.arrivals_per_ms < HOLD_UTILIZATION * rate;
        if keeps_up && (route.queued + 1) as f64 / rate + best_busy < greedy_cost {
            return None;
        }
        Some(greedy)
    }

    fn weighs_busy_agents(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "learned"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cand, learned, route};
    use super::*;
    use crate::estimate::Estimate;

    #[test]
    fn expected_time_counts_the_retries_a_failure_costs() {
        assert_eq!(expected_ms(5.0, 1.0, 1_000.0), 5.0);
        assert!((expected_ms(5.0, 0.8, 1_000.0) - (5.0 + 0.25 * 1_005.0)).abs() < 1e-9);
        assert!(expected_ms(1.0, 0.0, 1_000.0).is_finite());
    }

    #[test]
    fn the_fastest_reliable_agent_wins_and_the_flaky_one_is_avoided() {
        let fast = learned(1, 200, 0);
        let medium = learned(5, 200, 0);
        let flaky = learned(2, 200, 40);
        let c = [
            cand(1, 0, 1, 1.0, &medium),
            cand(2, 0, 1, 1.0, &flaky),
            cand(3, 0, 1, 1.0, &fast),
        ];
        let mut p = Learned::new(1, 0.1);
        let mut picks = [0; 3];
        for _ in 0..1_000 {
            picks[p.choose(&route(), &c).unwrap()] += 1;
        }
        assert!(picks[2] >= 900, "{picks:?}");
        assert!(
            picks[1] <= 10,
            "a 20% failure rate costs retries: {picks:?}"
        );
        // Without the fast one, the medium agent beats the flaky one though it is slower.
        let mut picks = [0; 2];
        for _ in 0..1_000 {
            picks[p.choose(&route(), &c[..2]).unwrap()] += 1;
        }
        assert!(picks[0] >= 950, "{picks:?}");
    }

    #[test]
    fn exploration_is_bounded_and_tries_a_new_agent() {
        let known = learned(5, 50, 0);
        let new = Estimate::default();
        let c = [cand(1, 0, 1, 1.0, &known), cand(2, 0, 1, 1.0, &new)];
        for (exploration, most) in [(0.0, 0), (0.05, 60)] {
            let mut p = Learned::new(9, exploration);
            let tried = (0..1_000)
                .filter(|_| p.choose(&route(), &c) == Some(1))
                .count();
            assert!(tried <= most, "{exploration}: {tried}");
            if exploration > 0.0 {
                assert!(tried > 0, "a never-measured agent gets tried");
            }
        }
    }

    #[test]
    fn a_task_is_held_for_a_busy_fast_agent_until_the_queue_makes_waiting_dearer() {
        let fast = learned(1, 200, 0);
        let slow = learned(25, 200, 0);
        let flaky = learned(5, 200, 40);
        // The fast agent's one slot is taken; the slow and the flaky agents are free.
        let c = [
            cand(1, 1, 1, 1.0, &fast),
            cand(2, 0, 1, 1.0, &slow),
            cand(3, 0, 1, 1.0, &flaky),
        ];
        let mut p = Learned::new(1, 0.0);
        let at = |queued| Route { queued, ..route() };
        assert_eq!(
            p.choose(&at(0), &c),
            None,
            "wait ~2 ms for the fast one, not 25"
        );
        assert_eq!(
            p.choose(&at(10), &c),
            None,
            "11 ms of queue is still below 25"
        );
        assert_eq!(
            p.choose(&at(30), &c),
            Some(1),
            "31 ms of queue: the slow one takes it"
        );
        // Only the flaky agent free: its failures cost a second of backoff a fifth of the time.
        let c = [cand(1, 1, 1, 1.0, &fast), cand(3, 0, 1, 1.0, &flaky)];
        assert_eq!(p.choose(&at(100), &c), None);
        assert_eq!(p.choose(&at(400), &c), Some(1));
        // Arrivals faster than the fast agent's one slot frees: no holding, the slow one works.
        let overloaded = Route {
            arrivals_per_ms: 0.95,
            ..at(0)
        };
        let c = [
            cand(1, 1, 1, 1.0, &fast),
            cand(2, 0, 1, 1.0, &slow),
            cand(3, 0, 1, 1.0, &flaky),
        ];
        assert_eq!(p.choose(&overloaded, &c), Some(1));
        // A busy agent never measured is no reason to hold.
        let new = Estimate::default();
        let c = [cand(1, 1, 1, 1.0, &new), cand(2, 0, 1, 1.0, &slow)];
        assert_eq!(p.choose(&at(0), &c), Some(1));
    }

    #[test]
    fn equal_expectations_go_to_the_less_loaded() {
        let same = learned(3, 50, 0);
        let c = [
            cand(1, 3, 4, 1.0, &same),
            cand(2, 1, 4, 1.0, &same),
            cand(3, 2, 4, 1.0, &same),
        ];
        assert_eq!(Learned::new(1, 0.0).choose(&route(), &c), Some(1));
    }
}
