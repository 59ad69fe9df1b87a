//! The least-loaded policy: what a plain job queue does.

use std::cmp::Ordering;

use super::{Candidate, Route, RoutingPolicy};

/// The agent with the smallest fraction of its slots in use; ties go to the higher level, then to
/// the agent with more free slots, then to the older agent id (stable, so tests are repeatable).
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastLoaded;

impl LeastLoaded {
    fn compare(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
        // a.running / a.slots vs b.running / b.slots without floating point.
        let load = (u64::from(a.running) * u64::from(b.slots))
            .cmp(&(u64::from(b.running) * u64::from(a.slots)));
        load.then_with(|| b.level.total_cmp(&a.level))
            .then_with(|| (b.slots - b.running).cmp(&(a.slots - a.running)))
            .then_with(|| a.agent.cmp(&b.agent))
    }
}

impl RoutingPolicy for LeastLoaded {
    fn choose(&mut self, _route: &Route<'_>, candidates: &[Candidate<'_>]) -> Option<usize> {
        (0..candidates.len()).min_by(|&i, &j| Self::compare(&candidates[i], &candidates[j]))
    }

    fn name(&self) -> &'static str {
        "least_loaded"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cand, route};
    use super::*;
    use crate::estimate::Estimate;

    #[test]
    fn picks_least_loaded_then_best_level() {
        let e = Estimate::default();
        let mut p = LeastLoaded;
        let c = [
            cand(1, 1, 2, 1.0, &e),
            cand(2, 1, 4, 0.1, &e),
            cand(3, 2, 4, 0.9, &e),
        ];
        assert_eq!(
            p.choose(&route(), &c),
            Some(1),
            "1/4 loaded beats 1/2 and 2/4"
        );
        let c = [cand(1, 0, 2, 0.5, &e), cand(2, 0, 2, 0.9, &e)];
        assert_eq!(
            p.choose(&route(), &c),
            Some(1),
            "equal load: the higher level wins"
        );
    }
}
