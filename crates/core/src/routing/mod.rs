//! Routing: which of the agents able to run a task gets it.
//!
//! The scheduler hands a policy the agents that have the capability and accept work with a free
//! slot, and, if the policy weighs them ([`RoutingPolicy::weighs_busy_agents`]), those busy
//! with their slots full; the policy picks a free one, or holds the task in its queue for a busy
//! one (see `scheduler::placement`). Three policies, chosen by `[routing] policy`:
//! - [`LeastLoaded`]: the smallest share of slots in use (what a plain job queue does);
//! - [`P2cEwma`]: power of two random choices by latency x outstanding work, as Finagle and
//!   Linkerd balance load;
//! - [`Learned`]: the lowest expected time to a *successful* result, by Thompson sampling over
//!   what was learned of each agent ([`crate::estimate`]);
//! - [`Neural`]: the same choice, with each agent's latency on *this* task predicted by a model
//!   that reads the task (a [`Predictor`], `hive-neural`).
//!
//! Each looks at every candidate at most once: O(candidates) per assignment.

mod learned;
mod least_loaded;
mod neural;
mod p2c;

use crate::estimate::{Belief, Estimate, LearningConfig};
use crate::ids::AgentId;
use crate::task::Feature;
use crate::time::Timestamp;

pub use learned::Learned;
pub use least_loaded::LeastLoaded;
pub use neural::{Neural, Observation, Prediction, Predictor};
pub use p2c::P2cEwma;

/// One agent that could take the task: now if it has a free slot, else once one frees up.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub agent: AgentId,
    /// Its name: what is learned is learned of the name (see `scheduler::knowledge`).
    pub identity: &'a str,
    /// Attempts it runs now, of any capability; below `slots` when it is free.
    pub running: u32,
    pub slots: u32,
    /// The agent's level for the task's capability, 0.0-1.0.
    pub level: f64,
    /// What was learned of the agent's identity (its name) on the task's capability.
    pub estimate: &'a Estimate,
}

impl Candidate<'_> {
    pub fn free(&self) -> bool {
        self.running < self.slots
    }
}

/// The task being placed and the moment, as the policies need them.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub capability: &'a str,
    /// The task's payload size and hints, which a model may weigh.
    pub payload_bytes: usize,
    pub features: &'a [Feature],
    pub now: Timestamp,
    /// What a failed attempt costs the task besides its run time: the delay before its retry.
    pub retry_penalty_ms: u64,
    /// Other tasks of the capability waiting in its ready queue.
    pub queued: usize,
    /// How long this task has waited in the queue (0 for one not queued yet).
    pub waited_ms: u64,
    /// Tasks of the capability made ready per millisecond, lately (retries included); measured
    /// only for a policy that weighs busy agents, else 0.
    pub arrivals_per_ms: f64,
    pub learning: &'a LearningConfig,
}

impl Route<'_> {
    /// Inlined, with [`Estimate::belief`](crate::Estimate::belief): read per candidate per
    /// decision.
    #[inline]
    pub fn belief(&self, candidate: &Candidate<'_>) -> Belief {
        candidate
            .estimate
            .belief(self.now, candidate.running, self.learning)
    }
}

pub trait RoutingPolicy: Send {
    /// Index into `candidates` of a free agent to run the task now, or `None` to hold the task
    /// in its queue for a busy candidate. At least one candidate is free; a policy that does not
    /// weigh busy agents is given only free ones and must pick one.
    fn choose(&mut self, route: &Route<'_>, candidates: &[Candidate<'_>]) -> Option<usize>;

    /// True if busy agents are candidates too, and the policy may hold a task for one.
    fn weighs_busy_agents(&self) -> bool {
        false
    }

    /// After `choose` held a task: the longest it should wait before it is offered again
    /// (whatever else happens meanwhile), ms.
    fn hold_limit_ms(&self) -> u64 {
        0
    }

    fn name(&self) -> &'static str;

    /// An attempt this policy's scheduler started ended: a policy that learns beyond the
    /// scheduler's estimates (the neural one) takes it in.
    fn observe(&mut self, _attempt: &Observation<'_>) {}
}

impl<P: RoutingPolicy + ?Sized> RoutingPolicy for Box<P> {
    fn choose(&mut self, route: &Route<'_>, candidates: &[Candidate<'_>]) -> Option<usize> {
        (**self).choose(route, candidates)
    }

    fn weighs_busy_agents(&self) -> bool {
        (**self).weighs_busy_agents()
    }

    fn hold_limit_ms(&self) -> u64 {
        (**self).hold_limit_ms()
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn observe(&mut self, attempt: &Observation<'_>) {
        (**self).observe(attempt)
    }
}

/// The policies by name, as `[routing] policy` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    LeastLoaded,
    P2cEwma,
    Learned,
    Neural,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::LeastLoaded,
        PolicyKind::P2cEwma,
        PolicyKind::Learned,
        PolicyKind::Neural,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::LeastLoaded => "least_loaded",
            PolicyKind::P2cEwma => "p2c_ewma",
            PolicyKind::Learned => "learned",
            PolicyKind::Neural => "neural",
        }
    }

    pub fn parse(s: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// A policy of this kind; `seed` drives its random choices, `exploration` bounds
    /// [`Learned`]'s and [`Neural`]'s (see there), and `predictor` is the neural policy's model
    /// (without one it chooses as `learned` does).
    pub fn build(
        self,
        seed: u64,
        exploration: f64,
        predictor: Option<Box<dyn Predictor>>,
    ) -> Box<dyn RoutingPolicy> {
        match self {
            PolicyKind::LeastLoaded => Box::new(LeastLoaded),
            PolicyKind::P2cEwma => Box::new(P2cEwma::seeded(seed)),
            PolicyKind::Learned => Box::new(Learned::new(seed, exploration)),
            PolicyKind::Neural => Box::new(Neural::new(seed, exploration, predictor)),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use uuid::Uuid;

    pub const LEARNING: LearningConfig = LearningConfig {
        decay_ms: 10_000,
        memory_ms: 60_000,
    };

    /// Agent names by candidate number.
    pub const NAMES: [&str; 4] = ["a0", "a1", "a2", "a3"];

    pub fn route() -> Route<'static> {
        Route {
            capability: "x",
            payload_bytes: 4,
            features: &[],
            now: Timestamp(1_000),
            retry_penalty_ms: 1_000,
            queued: 0,
            waited_ms: 0,
            arrivals_per_ms: 0.0,
            learning: &LEARNING,
        }
    }

    pub fn cand(
        n: u128,
        running: u32,
        slots: u32,
        level: f64,
        estimate: &Estimate,
    ) -> Candidate<'_> {
        Candidate {
            agent: AgentId(Uuid::from_u128(n)),
            identity: NAMES[n as usize % NAMES.len()],
            running,
            slots,
            level,
            estimate,
        }
    }

    /// An estimate from `n` attempts of `latency_ms` ending just before [`route`]'s moment,
    /// `failures` of them failed.
    pub fn learned(latency_ms: u64, n: u32, failures: u32) -> Estimate {
        let mut e = Estimate::default();
        for i in 0..n {
            let outcome = if i < failures {
                crate::task::AttemptOutcome::Failed
            } else {
                crate::task::AttemptOutcome::Succeeded
            };
            e.observe(outcome, latency_ms, Timestamp(999), &LEARNING);
        }
        e
    }
}
