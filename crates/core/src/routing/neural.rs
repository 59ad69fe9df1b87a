//! The neural policy: [`Learned`]'s choice (lowest expected time to a successful result, held
//! tasks, bounded exploration), with each candidate's latency on *this* task predicted by a
//! model (see [`believed`] for why its success prediction is not weighed) that reads the task's payload size and hints, the agent's identity and
//! its load, where the learned policy has one estimate per agent and capability. It sees what
//! that cannot: an agent quick on short inputs and slow on long ones.
//!
//! The model lives outside the core ([`Predictor`]; `hive-neural` implements it, learning on the
//! hub's CPU pool): the policy asks it for one batched prediction per decision and tells it of
//! every attempt that ended. Where the model cannot say (not trained yet, an agent it has not
//! learned enough of, more agents or capabilities than it tells apart) the candidate is weighed
//! by what `learned` believes of it, so an untrained model routes exactly as `learned` does.
//! The exploration draws keep the learned evidence: a prediction is a mean, and how sure it is
//! of an agent still grows with the attempts seen of that agent.

use std::sync::Arc;

use super::{Candidate, Learned, Route, RoutingPolicy};
use crate::estimate::Belief;
use crate::task::{AttemptOutcome, Feature};

/// What a model predicts of one candidate on the task being placed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub latency_ms: f64,
    /// Probability of success, 0-1.
    pub success: f64,
}

/// An attempt that ended, as a model learns from it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub capability: &'a str,
    pub identity: &'a str,
    /// Attempts the agent ran besides this one as it started (its load, as the model reads it:
    /// the same number a candidate shows when the task is placed).
    pub running: u32,
    pub slots: u32,
    pub payload_bytes: usize,
    pub features: Option<&'a Arc<[Feature]>>,
    pub outcome: AttemptOutcome,
    pub run_ms: u64,
}

/// A model of agents' performance per task, as the neural policy uses it.
pub trait Predictor: Send {
    /// Fills `out` (cleared first) with one entry per candidate: its prediction for the task
    /// `route` places, `None` where the model cannot say.
    fn predict(
        &mut self,
        route: &Route<'_>,
        candidates: &[Candidate<'_>],
        out: &mut Vec<Option<Prediction>>,
    );

    /// An attempt ended; must not wait (it runs on the scheduler's thread).
    fn observe(&mut self, attempt: &Observation<'_>);
}

pub struct Neural {
    learned: Learned,
    predictor: Option<Box<dyn Predictor>>,
    /// The current decision's predictions, kept to spare allocations.
    predictions: Vec<Option<Prediction>>,
}

impl Neural {
    /// Without a predictor it chooses as [`Learned`] does.
    pub fn new(seed: u64, exploration: f64, predictor: Option<Box<dyn Predictor>>) -> Self {
        Neural {
            learned: Learned::new(seed, exploration),
            predictor,
            predictions: Vec::new(),
        }
    }
}

/// What is believed of an agent given the model's prediction: the predicted latency for this
/// task, with the learned evidence (how many attempts back it) kept for the exploring draws.
///
/// The success probability stays the learned one. The expected time multiplies the chance of a
/// failure by the retry's delay (a second by default), so near a probability of 1 a 1% error
/// costs 10 ms, more than most latencies routing tells apart; the learned estimate counts an
/// agent's outcomes exactly, where the model's sigmoid output was measured a few percent off
/// after its first few hundred attempts (a test hub then sent small tasks to the agent slow on
/// them). The model's success prediction is shown (`predicted` in the agents API) but not
/// weighed: tasks whose failures depend on the task are not routed around yet.
fn believed(learned: Belief, predicted: Prediction) -> Belief {
    Belief {
        latency_ms: Some(predicted.latency_ms.max(0.0)),
        ..learned
    }
}

impl RoutingPolicy for Neural {
    fn choose(&mut self, route: &Route<'_>, candidates: &[Candidate<'_>]) -> Option<usize> {
        let Some(predictor) = self.predictor.as_mut() else {
            return self.learned.choose(route, candidates);
        };
        predictor.predict(route, candidates, &mut self.predictions);
        let predictions = &self.predictions;
        self.learned.choose_believing(route, candidates, |i, c| {
            let belief = route.belief(c);
            match predictions.get(i).copied().flatten() {
                Some(p) => believed(belief, p),
                None => belief,
            }
        })
    }

    fn weighs_busy_agents(&self) -> bool {
        true
    }

    fn hold_limit_ms(&self) -> u64 {
        self.learned.hold_limit_ms()
    }

    fn name(&self) -> &'static str {
        "neural"
    }

    fn observe(&mut self, attempt: &Observation<'_>) {
        if let Some(predictor) = self.predictor.as_mut() {
            predictor.observe(attempt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cand, learned, route};
    use super::*;

    /// Predicts by payload size: agent "a1" takes 1 ms per byte, the others 50 ms flat; knows
    /// nothing of "a3".
    #[derive(Default)]
    struct BySize {
        observed: Arc<std::sync::Mutex<Vec<(String, u64)>>>,
    }

    impl Predictor for BySize {
        fn predict(
            &mut self,
            route: &Route<'_>,
            candidates: &[Candidate<'_>],
            out: &mut Vec<Option<Prediction>>,
        ) {
            out.clear();
            out.extend(candidates.iter().map(|c| {
                let latency_ms = match c.identity {
                    "a3" => return None,
                    "a1" => route.payload_bytes as f64,
                    _ => 50.0,
                };
                Some(Prediction {
                    latency_ms,
                    success: 1.0,
                })
            }));
        }

        fn observe(&mut self, attempt: &Observation<'_>) {
            self.observed
                .lock()
                .unwrap()
                .push((attempt.identity.to_string(), attempt.run_ms));
        }
    }

    #[test]
    fn the_prediction_for_this_task_decides_and_an_unknown_agent_falls_back_to_learned() {
        // Learned believes both take 25 ms, and would share by load.
        let same = learned(25, 100, 0);
        let c = [cand(1, 0, 4, 1.0, &same), cand(2, 1, 4, 1.0, &same)];
        let mut p = Neural::new(1, 0.0, Some(Box::<BySize>::default()));
        let small = Route {
            payload_bytes: 10,
            ..route()
        };
        let large = Route {
            payload_bytes: 500,
            ..route()
        };
        assert_eq!(p.choose(&small, &c), Some(0), "a1: 10 ms beats 50");
        assert_eq!(p.choose(&large, &c), Some(1), "a2: 50 ms beats 500");
        // "a3" is not predicted: it is weighed by its learned 5 ms.
        let quick = learned(5, 100, 0);
        let c = [cand(1, 0, 4, 1.0, &same), cand(3, 0, 4, 1.0, &quick)];
        assert_eq!(p.choose(&small, &c), Some(1));
        assert_eq!(
            Neural::new(1, 0.0, None).choose(&large, &c),
            Learned::new(1, 0.0).choose(&large, &c),
            "without a model it is the learned policy"
        );
    }

    #[test]
    fn observations_reach_the_model() {
        let model = BySize::default();
        let observed = model.observed.clone();
        let mut p = Neural::new(1, 0.0, Some(Box::new(model)));
        p.observe(&Observation {
            capability: "x",
            identity: "a1",
            running: 0,
            slots: 1,
            payload_bytes: 3,
            features: None,
            outcome: AttemptOutcome::Succeeded,
            run_ms: 7,
        });
        assert_eq!(*observed.lock().unwrap(), [("a1".to_string(), 7)]);
    }
}
