//! The learned policy: the agent with the lowest expected time to a *successful* result.
//!
//! For an agent with a free slot the expected time is `L + (1 - p) / p x (penalty + L)`: one
//! attempt of latency `L`, and when it fails (probability `1 - p`, repeated geometrically) the
//! retry's delay (`penalty`, the task's first backoff) and another attempt. The greedy choice
//! uses what is believed ([`Belief`](crate::estimate::Belief)); an agent never measured is
//! believed fast (latency 0) and reliable, so it is tried at once. Exploring draws `p` from a
//! Beta posterior whose evidence fades with time and `L` from a log-normal around the latency
//! estimate whose spread shrinks with the evidence: an agent whose evidence faded gets tried
//! again.
//!
//! Busy agents count too, through queueing on their slots: holding the task for the busy agents
//! expected to finish it sooner than the best free one costs the wait for one of their slots,
//! estimated as `(queued + 1) / rate`, the tasks queued ahead of and with this one over the rate
//! (slots / latency) at which those agents free slots. When that wait plus the best busy agent's
//! expected time is below the best free agent's, the task is held (queued); as the queue grows the
//! wait grows, and slower agents take work. So a free flaky or slow agent gets a task only when
//! the queue is long enough that waiting would cost more than its failures or its slowness (and
//! at most while the queue is shorter than those agents' slots: a task is held only for one of
//! their next free slots), and
//! never longer than the free agent's expected time (then it runs there: the busy agent may be
//! stuck on a long attempt; a timer sees to it, [`RoutingPolicy::hold_limit_ms`]). And
//! only while those busy agents keep up with the capability's arrivals (below
//! [`HOLD_UTILIZATION`] of their rate): past that, holding would only build a standing queue that
//! every task waits in, so in an overload every agent works, as under the other policies.
//!
//! Among free agents expected to do equally well (instances of one identity, agents never
//! measured) the least loaded is chosen, as [`LeastLoaded`](super::LeastLoaded) would.
//!
//! Exploration is bounded: a draw that picks another free agent than the believed values would
//! (the greedy choice), and beats waiting for a busy agent, spends one token, and tokens accrue
//! at `exploration` per decision (at most a burst of [`BURST`]). So at most that share of
//! decisions, in the long run, go anywhere but to the agent believed best. `exploration = 0` is
//! greedy; `1` is plain Thompson sampling.

use super::{Candidate, Route, RoutingPolicy};
use crate::estimate::Belief;
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
    /// How long the last held task should wait at most, ms.
    hold_limit_ms: u64,
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
            hold_limit_ms: 0,
            scratch: Vec::new(),
        }
    }
}

/// Expected time to a successful result on a free agent (see the module's header).
pub fn expected_ms(latency_ms: f64, success: f64, penalty_ms: f64) -> f64 {
    let p = success.max(MIN_SUCCESS);
    latency_ms + (1.0 - p) / p * (penalty_ms + latency_ms)
}

impl Learned {
    /// The choice of the module's header, with what is believed of candidate `i` given by
    /// `belief` (the learned estimate, or a model's prediction for the neural policy).
    pub fn choose_believing(
        &mut self,
        route: &Route<'_>,
        candidates: &[Candidate<'_>],
        mut belief_of: impl FnMut(usize, &Candidate<'_>) -> Belief,
    ) -> Option<usize> {
        let penalty = route.retry_penalty_ms as f64;
        self.scratch.clear();
        self.tokens = (self.tokens + self.exploration).min(BURST);
        // Without a token to spend the greedy choice is taken: the draws are skipped.
        let explore = self.tokens >= 1.0;
        let (mut greedy, mut greedy_cost) = (None, f64::INFINITY);
        let (mut drawn, mut drawn_cost) = (None, f64::INFINITY);
        for (i, candidate) in candidates.iter().enumerate() {
            let belief = belief_of(i, candidate);
            let latency = belief.latency_ms.unwrap_or(0.0);
            let mean = expected_ms(latency, belief.success_probability, penalty);
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
        // Holding: the busy agents expected to do better than the best free one, how fast they
        // free slots, and the best of them.
        let (mut rate, mut slots, mut best_busy) = (0.0, 0u64, f64::INFINITY);
        for (candidate, &(mean, agent_rate)) in candidates.iter().zip(&self.scratch) {
            if !candidate.free() && mean < greedy_cost && agent_rate > 0.0 {
                rate += agent_rate;
                slots += u64::from(candidate.slots);
                best_busy = best_busy.min(mean);
            }
        }
        // Only while those agents keep up with the arrivals (else the queue would grow until
        // waiting cost more anyway, and meanwhile the free agent's work would be lost), and only
        // for a task one of their next free slots takes: a held queue never grows past their
        // slots, so an error in the estimates costs at most one of their attempts' time.
        let keeps_up = rate > 0.0
            && route.arrivals_per_ms < HOLD_UTILIZATION * rate
            && (route.queued as u64) < slots;
        let hold_cost = if keeps_up {
            (route.queued + 1) as f64 / rate + best_busy
        } else {
            f64::INFINITY
        };
        // Exploring weighs waiting too: a draw that is still worse than waiting for a busy
        // agent is no reason to try a free one now.
        if explore && drawn != Some(greedy) && drawn_cost < hold_cost {
            self.tokens -= 1.0;
            return drawn;
        }
        // A task never waits longer than the free agent would have taken: past that, waiting
        // has cost more than it could save (a busy agent stuck on a long attempt, say).
        let waited = route.waited_ms as f64;
        if waited < greedy_cost && hold_cost < greedy_cost {
            self.hold_limit_ms = (greedy_cost - waited).ceil().max(1.0) as u64;
            return None;
        }
        Some(greedy)
    }
}

impl RoutingPolicy for Learned {
    fn choose(&mut self, route: &Route<'_>, candidates: &[Candidate<'_>]) -> Option<usize> {
        self.choose_believing(route, candidates, |_, c| route.belief(c))
    }

    fn weighs_busy_agents(&self) -> bool {
        true
    }

    fn hold_limit_ms(&self) -> u64 {
        self.hold_limit_ms
    }

    fn name(&self) -> &'static str {
        "learned"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{LEARNING, cand, learned, route};
    use super::*;
    use crate::estimate::Estimate;
    use crate::task::AttemptOutcome;
    use crate::time::Timestamp;

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
    fn a_new_agent_is_tried_at_once_and_exploration_is_bounded() {
        let known = learned(5, 50, 0);
        let new = Estimate::default();
        let c = [cand(1, 0, 1, 1.0, &known), cand(2, 0, 1, 1.0, &new)];
        assert_eq!(
            Learned::new(9, 0.0).choose(&route(), &c),
            Some(1),
            "never measured"
        );
        // A slower agent whose failures lie ten minutes back: believed worse, but its draws are
        // wide, so exploring tries it, and only within the bound.
        let mut stale = Estimate::default();
        for _ in 0..20 {
            stale.observe(AttemptOutcome::Failed, 8, Timestamp(0), &LEARNING);
        }
        for _ in 0..80 {
            stale.observe(AttemptOutcome::Succeeded, 8, Timestamp(0), &LEARNING);
        }
        let mut fresh = Estimate::default();
        for _ in 0..50 {
            fresh.observe(AttemptOutcome::Succeeded, 5, Timestamp(599_999), &LEARNING);
        }
        let later = Route {
            now: Timestamp(600_000),
            ..route()
        };
        let c = [cand(1, 0, 1, 1.0, &fresh), cand(2, 0, 1, 1.0, &stale)];
        for (exploration, most) in [(0.0, 0), (0.05, 60)] {
            let mut p = Learned::new(9, exploration);
            let tried = (0..1_000)
                .filter(|_| p.choose(&later, &c) == Some(1))
                .count();
            assert!(tried <= most, "{exploration}: {tried}");
            if exploration > 0.0 {
                assert!(tried > 0, "an agent whose evidence faded gets tried again");
            }
        }
    }

    #[test]
    fn a_task_is_held_for_a_busy_fast_agent_until_the_queue_makes_waiting_dearer() {
        // 40 slots of 40 ms free one per ms.
        let fast = learned(40, 200, 0);
        let slow = learned(60, 200, 0);
        let flaky = learned(5, 200, 40);
        let c = [cand(1, 40, 40, 1.0, &fast), cand(2, 0, 1, 1.0, &slow)];
        let mut p = Learned::new(1, 0.0);
        let at = |queued| Route { queued, ..route() };
        assert_eq!(p.choose(&at(0), &c), None, "1 ms of wait + 45 beats 65");
        assert_eq!(p.choose(&at(15), &c), None, "16 ms + 45 still does");
        assert_eq!(p.choose(&at(25), &c), Some(1), "26 ms + 45 does not");
        // Only the flaky agent free: its failures cost a second of backoff a fifth of the time,
        // so waiting pays off longer, but a task is held only for the busy agents' next slots.
        let c = [cand(1, 40, 40, 1.0, &fast), cand(3, 0, 1, 1.0, &flaky)];
        assert_eq!(p.choose(&at(39), &c), None);
        assert_eq!(p.choose(&at(40), &c), Some(1), "past the 40 slots");
        let fast = learned(1, 200, 0);
        let slow = learned(25, 200, 0);
        // Held as long as the slow agent would take at most: then it runs there.
        let c = [cand(1, 1, 1, 1.0, &fast), cand(2, 0, 1, 1.0, &slow)];
        assert_eq!(p.choose(&at(0), &c), None);
        assert!(
            (25..=31).contains(&p.hold_limit_ms()),
            "{}",
            p.hold_limit_ms()
        );
        let waited = Route {
            waited_ms: 40,
            ..at(0)
        };
        assert_eq!(p.choose(&waited, &c), Some(1));
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
