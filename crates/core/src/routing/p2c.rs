//! Power of two random choices by peak-EWMA latency x outstanding work: how Finagle's and
//! Linkerd's balancers spread requests, here so the learned policy is compared against the
//! strongest policy in common use.

use super::{Candidate, Route, RoutingPolicy};
use crate::random::Rng;

/// Two distinct candidates drawn at random; the one with the lower cost, `latency x (running +
/// 1)`, wins. An agent never measured costs 0, so it is tried (as in Finagle, where a new node
/// starts at zero cost); an idle agent's latency decays toward zero ([`crate::estimate`]), so one
/// that was slow is tried again.
#[derive(Debug, Clone)]
pub struct P2cEwma {
    rng: Rng,
}

impl P2cEwma {
    pub fn seeded(seed: u64) -> Self {
        P2cEwma {
            rng: Rng::seeded(seed),
        }
    }

    fn cost(route: &Route<'_>, candidate: &Candidate<'_>) -> f64 {
        let latency = route.belief(candidate).latency_ms.unwrap_or(0.0);
        latency * f64::from(candidate.running + 1)
    }
}

impl RoutingPolicy for P2cEwma {
    fn choose(&mut self, route: &Route<'_>, candidates: &[Candidate<'_>]) -> Option<usize> {
        let n = candidates.len();
        if n < 2 {
            return Some(0);
        }
        let a = self.rng.below(n);
        let mut b = self.rng.below(n - 1);
        if b >= a {
            b += 1;
        }
        let (ca, cb) = (
            Self::cost(route, &candidates[a]),
            Self::cost(route, &candidates[b]),
        );
        let a_wins = ca < cb || (ca == cb && candidates[a].running <= candidates[b].running);
        Some(if a_wins { a } else { b })
    }

    fn name(&self) -> &'static str {
        "p2c_ewma"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cand, learned, route};
    use super::*;

    #[test]
    fn of_two_the_faster_or_less_busy_wins_and_the_slowest_never_does() {
        let (fast, medium, slow) = (learned(1, 20, 0), learned(5, 20, 0), learned(25, 20, 0));
        let c = [
            cand(1, 0, 4, 1.0, &fast),
            cand(2, 0, 4, 1.0, &medium),
            cand(3, 0, 4, 1.0, &slow),
        ];
        let mut p = P2cEwma::seeded(3);
        let mut picks = [0; 3];
        for _ in 0..3_000 {
            picks[p.choose(&route(), &c).unwrap()] += 1;
        }
        assert_eq!(picks[2], 0, "the slowest loses every pair it is drawn into");
        // The fastest wins both pairs it is in (2/3 of draws), the medium one the last third.
        assert!((1_900..=2_100).contains(&picks[0]), "{picks:?}");
        // Outstanding work counts: a fast agent running 9 costs 10 ms, more than an idle medium.
        let c = [cand(1, 9, 16, 1.0, &fast), cand(2, 0, 4, 1.0, &medium)];
        assert_eq!(p.choose(&route(), &c), Some(1));
    }
}
