//! What routing believes of one agent identity on one capability, learned from the outcomes of
//! its attempts: how likely an attempt succeeds, how long one takes, and how much of the recent
//! traffic it got.
//!
//! - Success: counts of successes and failures, each outcome weighing more than older ones (they
//!   fade with time constant [`LearningConfig::memory_ms`] between outcomes). The probability
//!   believed is `(successes + 1) / (successes + failures + 1)` (see [`Belief`]); Thompson
//!   sampling draws from a Beta posterior whose counts also fade while the agent is idle, so an
//!   agent that failed is tried again after a while and can show that it recovered.
//! - Latency: an EWMA that is *peak sensitive* like Finagle's and Linkerd's peak-EWMA: a sample
//!   above the estimate moves it half way at once (a 20x slow-down shows in one attempt), a sample
//!   below moves it a tenth of the way, more when the samples are far apart in time. While an
//!   agent runs nothing, its estimate decays toward zero (time constant
//!   [`LearningConfig::decay_ms`], as tower's and Finagle's do), so an agent the policies stopped
//!   using is tried again and can show that it recovered.
//! - Tail: the decayed mean absolute deviation of the samples from the estimate; `latency +
//!   2 x deviation` is reported as the tail estimate.
//! - Share: a decayed count of assignments, for "share of recent assignments".
//!
//! Every finished attempt is evidence: a success or a failure counts for the success rate (a
//! lease that ran out is a failure, and so is an answer that lost a consensus vote), and each
//! attempt's run time is a latency sample. A cancelled
//! attempt says nothing about success; its run time counts only when it is above the estimate (it
//! took at least that long).

use crate::task::AttemptOutcome;
use crate::time::Timestamp;

/// How fast what was learned fades.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearningConfig {
    /// Time constant of an idle agent's latency decay and of the assignment share, ms.
    pub decay_ms: u64,
    /// Time constant with which success and failure counts fade, ms.
    pub memory_ms: u64,
}

impl Default for LearningConfig {
    fn default() -> Self {
        LearningConfig {
            decay_ms: 10_000,
            memory_ms: 60_000,
        }
    }
}

/// Share of the distance a latency sample above the estimate moves it.
const RISE: f64 = 0.5;
/// Share of the distance a sample below the estimate moves it (at least; more when the last
/// sample is old, see [`Estimate::observe`]).
const FALL: f64 = 0.1;
/// Share of the distance a sample moves the deviation.
const DEVIATION_GAIN: f64 = 0.1;

/// The learned state; plain data so the store can keep it and give it back after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Estimate {
    /// Faded counts of successful and failed attempts, as of `updated_at`.
    pub successes: f64,
    pub failures: f64,
    /// Latency estimate and mean absolute deviation, ms, as of `updated_at`.
    pub latency_ms: f64,
    pub deviation_ms: f64,
    /// Latency samples taken, ever (0: never measured).
    pub samples: u64,
    /// When the last outcome was observed.
    pub updated_at: Timestamp,
    /// Faded count of assignments, as of `assigned_at`.
    pub assigned: f64,
    pub assigned_at: Timestamp,
}

/// An [`Estimate`] read at a moment: what the policies weigh.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Belief {
    /// The success probability believed: `(successes + 1) / (successes + failures + 1)`, with
    /// the counts as of the last outcome. Optimistic (an agent never seen failing is believed
    /// to succeed, so a new one is worth trying), and it does not drift while an agent is idle:
    /// an agent that was reliable stays so until an attempt says otherwise.
    pub success_probability: f64,
    /// Parameters of the Beta posterior that Thompson sampling draws from: Beta(1 + successes,
    /// 1 + failures) over counts faded since (time constant [`LearningConfig::memory_ms`]), so
    /// the draws widen as the evidence ages and an agent not tried for a while gets tried.
    pub alpha: f64,
    pub beta: f64,
    /// `None` until a first sample.
    pub latency_ms: Option<f64>,
    pub deviation_ms: f64,
    /// Outcomes counted, faded like `alpha` and `beta`: how sure the estimate is.
    pub weight: f64,
}

/// What routing believes of an agent on one capability, for people (the API, `hive agents`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingView {
    /// Posterior mean of the success probability.
    pub success_probability: f64,
    /// Latency estimate and tail estimate (`latency + 2 x deviation`), ms; `None` until measured.
    pub latency_ms: Option<f64>,
    pub tail_ms: Option<f64>,
    /// Latency samples taken, ever.
    pub samples: u64,
    /// Share of the capability's recent assignments that went to this identity, 0-1.
    pub share: f64,
}

impl RoutingView {
    /// `total_assigned`: every identity's [`Estimate::assigned_at_time`] on the capability.
    pub fn of(
        estimate: &Estimate,
        now: Timestamp,
        running: u32,
        config: &LearningConfig,
        total_assigned: f64,
    ) -> RoutingView {
        let belief = estimate.belief(now, running, config);
        let assigned = estimate.assigned_at_time(now, config);
        RoutingView {
            success_probability: belief.success_probability,
            latency_ms: belief.latency_ms,
            tail_ms: belief.latency_ms.map(|l| l + 2.0 * belief.deviation_ms),
            samples: estimate.samples,
            share: if total_assigned > 0.0 {
                assigned / total_assigned
            } else {
                0.0
            },
        }
    }
}

/// A decayed count of events (time constant `time_constant_ms`): for a steady stream its count
/// is the rate times the time constant, so it reads as a rate that follows changes within a
/// few time constants.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    count: f64,
    at: Timestamp,
}

impl Rate {
    pub fn add(&mut self, now: Timestamp, time_constant_ms: u64) {
        self.count = self.count_at(now, time_constant_ms) + 1.0;
        self.at = self.at.max(now);
    }

    fn count_at(&self, now: Timestamp, time_constant_ms: u64) -> f64 {
        self.count * fade(now.ms_since(self.at), time_constant_ms)
    }

    /// Events per millisecond.
    pub fn per_ms(&self, now: Timestamp, time_constant_ms: u64) -> f64 {
        self.count_at(now, time_constant_ms) / time_constant_ms.max(1) as f64
    }
}

/// `exp(-elapsed / time_constant)`. Routing reads an estimate per candidate per decision, mostly
/// moments after its last update: for those the Taylor series to the cubic term (error below
/// 1e-9) spares the `exp` call that was most of the learned policy's instructions. From
/// [`NOTHING_LEFT`] time constants on the answer is 0 without the call, as `exp`'s own would be:
/// an estimate never updated is dated 0, decades ago, and the C library's `exp` takes a slow
/// path (it sets `errno`) for every result that underflows, a sixth of a listing of agents'
/// snapshots. A cut earlier than about 745.13 would change answers, and with them the learned
/// policy's choices among long-idle agents.
fn fade(elapsed_ms: u64, time_constant_ms: u64) -> f64 {
    if elapsed_ms == 0 {
        return 1.0;
    }
    let x = elapsed_ms as f64 / time_constant_ms.max(1) as f64;
    if x < 0.01 {
        1.0 - x * (1.0 - x * (0.5 - x / 6.0))
    } else if x < NOTHING_LEFT {
        (-x).exp()
    } else {
        0.0
    }
}

/// Time constants from which `exp(-x)` is 0 in `f64` (at or below half the least subnormal
/// 4.9e-324, from 1075 ln 2 = 745.133 on), for [`fade`].
const NOTHING_LEFT: f64 = 746.0;

impl Estimate {
    /// Takes in the outcome of an attempt that ran `run_ms`.
    pub fn observe(
        &mut self,
        outcome: AttemptOutcome,
        run_ms: u64,
        now: Timestamp,
        config: &LearningConfig,
    ) {
        let elapsed = now.ms_since(self.updated_at);
        let kept = fade(elapsed, config.memory_ms);
        self.successes *= kept;
        self.failures *= kept;
        match outcome {
            AttemptOutcome::Succeeded => self.successes += 1.0,
            AttemptOutcome::Failed | AttemptOutcome::LeaseExpired => self.failures += 1.0,
            AttemptOutcome::Cancelled | AttemptOutcome::Released => {}
        }
        let sample = run_ms as f64;
        let censored = matches!(
            outcome,
            AttemptOutcome::Cancelled | AttemptOutcome::Released
        );
        if self.samples == 0 {
            if !censored {
                self.latency_ms = sample;
                self.deviation_ms = 0.0;
                self.samples = 1;
            }
        } else if sample > self.latency_ms {
            self.deviation_ms += DEVIATION_GAIN * ((sample - self.latency_ms) - self.deviation_ms);
            self.latency_ms += RISE * (sample - self.latency_ms);
            self.samples += 1;
        } else if !censored {
            // Samples far apart in time each say more about the present than a burst does.
            let gain = FALL.max(1.0 - fade(elapsed, config.decay_ms));
            self.deviation_ms += DEVIATION_GAIN * ((self.latency_ms - sample) - self.deviation_ms);
            self.latency_ms += gain * (sample - self.latency_ms);
            self.samples += 1;
        }
        self.updated_at = now;
    }

    /// An answer that lost a consensus vote: the success it was counted as becomes a failure
    /// (its latency stands: the agent did answer in that time).
    pub fn overrule(&mut self, now: Timestamp, config: &LearningConfig) {
        let kept = fade(now.ms_since(self.updated_at), config.memory_ms);
        self.successes = (self.successes * kept - 1.0).max(0.0);
        self.failures = self.failures * kept + 1.0;
        self.updated_at = now;
    }

    /// Counts one assignment, for the share of recent traffic.
    pub fn assign(&mut self, now: Timestamp, config: &LearningConfig) {
        self.assigned = self.assigned_at_time(now, config) + 1.0;
        self.assigned_at = now;
    }

    /// The faded assignment count at `now`; comparable between estimates read at the same `now`.
    pub fn assigned_at_time(&self, now: Timestamp, config: &LearningConfig) -> f64 {
        self.assigned * fade(now.ms_since(self.assigned_at), config.decay_ms)
    }

    /// What is believed at `now` of an agent running `running` attempts (of any capability).
    /// Inlined: the learned policy reads it per candidate per decision, and the compiler's own
    /// choice moves with unrelated code (`fade`'s cut once made it a call: +9.6% of the
    /// `scheduler_learned` count).
    #[inline]
    pub fn belief(&self, now: Timestamp, running: u32, config: &LearningConfig) -> Belief {
        let elapsed = now.ms_since(self.updated_at);
        let kept = fade(elapsed, config.memory_ms);
        let idle_decay = if running == 0 {
            fade(elapsed, config.decay_ms)
        } else {
            1.0
        };
        Belief {
            success_probability: (self.successes + 1.0) / (self.successes + self.failures + 1.0),
            alpha: 1.0 + self.successes * kept,
            beta: 1.0 + self.failures * kept,
            latency_ms: (self.samples > 0).then_some(self.latency_ms * idle_decay),
            deviation_ms: self.deviation_ms * idle_decay,
            weight: (self.successes + self.failures) * kept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: LearningConfig = LearningConfig {
        decay_ms: 10_000,
        memory_ms: 60_000,
    };

    fn at(ms: u64) -> Timestamp {
        Timestamp(1_000_000 + ms)
    }

    #[test]
    fn fading_is_exp_of_the_elapsed_share_of_the_time_constant() {
        for elapsed in [0, 1, 5, 99, 100, 101, 10_000, 1_000_000] {
            let exact = (-(elapsed as f64) / 10_000.0).exp();
            assert!((fade(elapsed, 10_000) - exact).abs() < 1e-9, "{elapsed}");
        }
        // From the cut on, exp's own answer (0) without the call; just before it, not yet 0.
        for elapsed in [746_000, 750_000, u64::MAX] {
            let exact = (-(elapsed as f64) / 1_000.0).exp();
            assert_eq!(exact, 0.0, "{elapsed}");
            assert_eq!(fade(elapsed, 1_000).to_bits(), exact.to_bits(), "{elapsed}");
        }
        assert_eq!((-745.14f64).exp(), 0.0);
        assert!(fade(745_100, 1_000) > 0.0 && (-745.0f64).exp() > 0.0);
    }

    #[test]
    fn a_slow_down_shows_at_once_and_a_recovery_over_a_few_samples() {
        let mut e = Estimate::default();
        for i in 0..50 {
            e.observe(AttemptOutcome::Succeeded, 1, at(i), &CONFIG);
        }
        assert_eq!(e.belief(at(50), 1, &CONFIG).latency_ms, Some(1.0));
        e.observe(AttemptOutcome::Succeeded, 20, at(50), &CONFIG);
        let slowed = e.belief(at(50), 1, &CONFIG).latency_ms.unwrap();
        assert!(
            slowed >= 10.0,
            "one slow sample moves it half way: {slowed}"
        );
        for i in 0..30 {
            e.observe(AttemptOutcome::Succeeded, 1, at(51 + i), &CONFIG);
        }
        let back = e.belief(at(81), 1, &CONFIG).latency_ms.unwrap();
        assert!(back < 1.5, "thirty fast samples bring it back: {back}");
        assert!(e.deviation_ms > 0.0);
    }

    #[test]
    fn an_idle_agent_decays_toward_zero_but_a_busy_one_keeps_its_estimate() {
        let mut e = Estimate::default();
        e.observe(AttemptOutcome::Succeeded, 20, at(0), &CONFIG);
        let idle = e.belief(at(30_000), 0, &CONFIG).latency_ms.unwrap();
        assert!((idle - 20.0 * (-3.0f64).exp()).abs() < 1e-9, "{idle}");
        assert_eq!(e.belief(at(30_000), 2, &CONFIG).latency_ms, Some(20.0));
    }

    #[test]
    fn success_counts_form_a_posterior_that_fades() {
        let mut e = Estimate::default();
        assert_eq!(
            e.belief(at(0), 0, &CONFIG).success_probability,
            1.0,
            "optimistic about a new agent"
        );
        for i in 0..80 {
            e.observe(AttemptOutcome::Succeeded, 5, at(i), &CONFIG);
        }
        for i in 0..20 {
            e.observe(AttemptOutcome::Failed, 5, at(80 + i), &CONFIG);
        }
        let now = e.belief(at(100), 0, &CONFIG);
        assert!((now.success_probability - 81.0 / 101.0).abs() < 0.01);
        let later = e.belief(at(100 + 600_000), 0, &CONFIG);
        // Idle for ten minutes: the belief stands, the draws widen to the uniform prior.
        assert_eq!(later.success_probability, now.success_probability);
        assert!(later.weight < 0.01 && (later.alpha - 1.0).abs() < 0.01);
        e.observe(AttemptOutcome::LeaseExpired, 30_000, at(101), &CONFIG);
        assert!(e.failures > 20.0, "a lease that ran out is a failure");
    }

    #[test]
    fn a_cancel_only_raises_the_latency() {
        let mut e = Estimate::default();
        e.observe(AttemptOutcome::Cancelled, 50, at(0), &CONFIG);
        assert_eq!(e.samples, 0, "nothing known yet: a cancel sets no estimate");
        e.observe(AttemptOutcome::Succeeded, 10, at(1), &CONFIG);
        e.observe(AttemptOutcome::Cancelled, 2, at(2), &CONFIG);
        assert_eq!(e.latency_ms, 10.0);
        assert!(
            (e.successes + e.failures - 1.0).abs() < 1e-3,
            "a cancel is no outcome"
        );
        e.observe(AttemptOutcome::Cancelled, 30, at(3), &CONFIG);
        assert_eq!(e.latency_ms, 20.0);
    }

    #[test]
    fn a_steady_stream_reads_as_its_rate() {
        let mut r = Rate::default();
        for i in 0..5_000 {
            r.add(at(i * 2), 1_000); // one per 2 ms
        }
        let rate = r.per_ms(at(10_000), 1_000);
        assert!((rate - 0.5).abs() < 0.01, "{rate}");
        assert!(
            r.per_ms(at(20_000), 1_000) < 0.001,
            "it fades when the stream stops"
        );
    }

    #[test]
    fn assignments_fade_into_a_share() {
        let mut a = Estimate::default();
        let mut b = Estimate::default();
        for i in 0..30 {
            a.assign(at(i), &CONFIG);
        }
        for i in 0..10 {
            b.assign(at(i), &CONFIG);
        }
        let (wa, wb) = (
            a.assigned_at_time(at(40), &CONFIG),
            b.assigned_at_time(at(40), &CONFIG),
        );
        assert!((wa / (wa + wb) - 0.75).abs() < 0.01, "{wa} {wb}");
        assert!(a.assigned_at_time(at(100_000), &CONFIG) < 0.01);
    }
}
