//! Routing: which of the agents able to run a task gets it.
//!
//! The scheduler hands a policy only agents that have the capability, accept work and have a free
//! slot; the policy picks one. Policies that learn (success rate, latency per capability) use the
//! counters in [`Candidate::stats`].

use std::cmp::Ordering;

use crate::agent::CapabilityStats;
use crate::ids::AgentId;

/// One agent that could take the task now.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub agent: AgentId,
    pub running: u32,
    pub slots: u32,
    /// The agent's level for the task's capability, 0.0-1.0.
    pub level: f64,
    pub stats: &'a CapabilityStats,
}

pub trait RoutingPolicy: Send {
    /// Index into `candidates` of the agent to run the task; `candidates` is never empty.
    fn choose(&mut self, capability: &str, candidates: &[Candidate<'_>]) -> usize;

    fn name(&self) -> &'static str;
}

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
    fn choose(&mut self, _capability: &str, candidates: &[Candidate<'_>]) -> usize {
        (0..candidates.len())
            .min_by(|&i, &j| Self::compare(&candidates[i], &candidates[j]))
            .unwrap_or(0)
    }

    fn name(&self) -> &'static str {
        "least_loaded"
    }
}

impl<P: RoutingPolicy + ?Sized> RoutingPolicy for Box<P> {
    fn choose(&mut self, capability: &str, candidates: &[Candidate<'_>]) -> usize {
        (**self).choose(capability, candidates)
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn cand(
        n: u128,
        running: u32,
        slots: u32,
        level: f64,
        stats: &CapabilityStats,
    ) -> Candidate<'_> {
        Candidate {
            agent: AgentId(Uuid::from_u128(n)),
            running,
            slots,
            level,
            stats,
        }
    }

    #[test]
    fn picks_least_loaded_then_best_level() {
        let s = CapabilityStats::default();
        let mut p = LeastLoaded;
        let c = [
            cand(1, 1, 2, 1.0, &s),
            cand(2, 1, 4, 0.1, &s),
            cand(3, 2, 4, 0.9, &s),
        ];
        assert_eq!(p.choose("x", &c), 1, "1/4 loaded beats 1/2 and 2/4");
        let c = [cand(1, 0, 2, 0.5, &s), cand(2, 0, 2, 0.9, &s)];
        assert_eq!(p.choose("x", &c), 1, "equal load: the higher level wins");
    }
}
