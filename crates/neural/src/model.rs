//! The model as a whole: [`Weights`] (what predicting needs, shared with the scheduler as a
//! snapshot) and [`Model`] (those plus what learning needs: the optimiser's state and a replay
//! buffer of recent attempts).
//!
//! Learning is online, in mini-batches: each attempt that ended is predicted first (its error is
//! the model's honest error on data it never saw, [`Evaluation`]), then kept in a ring of the
//! last [`REPLAY`] attempts, and each round takes [`STEPS_PER_BATCH`] Adam steps per
//! [`BATCH`] new attempts (within [`MIN_STEPS`] and [`MAX_STEPS`]), on batches drawn at random
//! from the ring. The ring makes it learn from
//! every recent attempt several times without letting old ones outweigh the present: an agent
//! that slows down is seen as slow within a few thousand attempts of any capability.

use std::sync::Arc;

use hive_core::Prediction;
use hive_core::random::Rng;
use hive_core::task::Feature;

use crate::input::{AgentInput, TaskInput, Vocab};
use crate::mlp::{self, Activations, PARAMETERS, Row, Target};

/// Attempts kept for replay.
pub const REPLAY: usize = 8_192;
/// Rows per training step.
pub const BATCH: usize = 64;
/// Adam steps per [`BATCH`] new attempts.
pub const STEPS_PER_BATCH: usize = 8;
/// Adam steps per round at least (when attempts came) and at most: a hub with few attempts
/// still learns from them within seconds, and a burst costs a bounded round.
pub const MIN_STEPS: usize = 32;
pub const MAX_STEPS: usize = 256;
/// Attempts learned from before the model's predictions are used at all.
pub const MIN_SAMPLES: u64 = 256;
const LEARNING_RATE: f32 = 1e-2;
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;
/// Gradients longer than this are scaled down to it: one odd batch (a latency a thousand times
/// the usual) must not throw the weights far.
const MAX_GRADIENT_NORM: f32 = 5.0;
/// Latency predictions are capped here (a day), so a wild output cannot overflow.
const MAX_LOG_LATENCY: f32 = 18.3;

/// An attempt that ended, as the model learns from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub capability: Arc<str>,
    pub identity: Arc<str>,
    /// Attempts the agent ran besides this one when it started.
    pub running: u32,
    pub slots: u32,
    pub payload_bytes: usize,
    pub features: Option<Arc<[Feature]>>,
    /// How long it ran, ms; `None` where that says nothing of the agent (a lease that ran out).
    pub latency_ms: Option<f64>,
    /// `None` where the attempt was cancelled: neither a success nor a failure of the agent.
    pub succeeded: Option<bool>,
}

impl Sample {
    fn task(&self) -> TaskInput<'_> {
        TaskInput {
            capability: &self.capability,
            payload_bytes: self.payload_bytes,
            features: self.features.as_deref().unwrap_or_default(),
        }
    }

    fn agent(&self) -> AgentInput<'_> {
        AgentInput {
            identity: &self.identity,
            running: self.running,
            slots: self.slots,
        }
    }
}

/// The outputs of a row as a prediction.
pub fn prediction(output: (f32, f32)) -> Prediction {
    Prediction {
        latency_ms: f64::from(output.0.clamp(0.0, MAX_LOG_LATENCY)).exp_m1(),
        success: f64::from(mlp::sigmoid(output.1)),
    }
}

/// What predicting needs: cheap to clone into a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub vocab: Vocab,
    pub params: Vec<f32>,
    /// Attempts learned from, ever.
    pub trained: u64,
}

impl Weights {
    /// Whether the model has learned enough for its predictions to be used.
    pub fn ready(&self) -> bool {
        self.trained >= MIN_SAMPLES
    }

    /// What the model predicts for an idle agent on its capability's typical task; `None` where
    /// it cannot say (see [`Vocab::encode`]).
    pub fn predict_typical(
        &self,
        capability: &str,
        identity: &str,
        slots: u32,
    ) -> Option<Prediction> {
        if !self.ready() {
            return None;
        }
        let row = self.vocab.encode_typical(capability, identity, slots)?;
        let mut out = Vec::with_capacity(1);
        self.predict_rows(&[row], &mut Activations::default(), &mut out);
        out.pop()
    }

    /// Predictions for encoded rows, in one batched forward pass; `act` is reused scratch.
    pub fn predict_rows(&self, rows: &[Row], act: &mut Activations, out: &mut Vec<Prediction>) {
        mlp::gather(&self.params, rows, &mut act.x);
        mlp::forward(&self.params, act);
        out.clear();
        out.extend((0..rows.len()).map(|i| prediction(act.output(i))));
    }
}

/// The Adam optimiser's moments and step count.
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub step: u64,
}

impl Adam {
    fn new() -> Adam {
        Adam {
            m: vec![0.0; PARAMETERS],
            v: vec![0.0; PARAMETERS],
            step: 0,
        }
    }

    fn update(&mut self, params: &mut [f32], grad: &mut [f32]) {
        let norm = grad.iter().map(|g| g * g).sum::<f32>().sqrt();
        if norm > MAX_GRADIENT_NORM {
            let scale = MAX_GRADIENT_NORM / norm;
            grad.iter_mut().for_each(|g| *g *= scale);
        }
        self.step += 1;
        let t = self.step.min(i32::MAX as u64) as i32;
        let correct1 = 1.0 - BETA1.powi(t);
        let correct2 = 1.0 - BETA2.powi(t);
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grad.iter())
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= LEARNING_RATE * (*m / correct1) / ((*v / correct2).sqrt() + EPSILON);
        }
    }
}

/// How well the model predicted the attempts of one round before learning from them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Evaluation {
    /// Attempts learned from this round.
    pub learned: u64,
    /// Attempts with a latency that the model predicted (it was ready and knew the agent), and
    /// the sums of their absolute errors, ms, and of their actual latencies, ms.
    pub predicted: u64,
    pub absolute_error_ms: f64,
    pub actual_ms: f64,
    /// Adam steps taken and the last batch's loss.
    pub steps: u64,
    pub loss: f32,
}

/// Everything learning needs; see the module's header.
#[derive(Debug, Clone)]
pub struct Model {
    pub weights: Weights,
    pub adam: Adam,
    replay: Vec<(Row, Target)>,
    /// Where the next attempt goes in `replay` once it is full.
    next: usize,
    rng: Rng,
    // Scratch, reused between rounds.
    act: Activations,
    grad: Vec<f32>,
    batch: Vec<Row>,
    targets: Vec<Target>,
    predictions: Vec<Prediction>,
}

impl Model {
    /// A model that knows nothing; `seed` draws its first weights and its batches.
    pub fn new(seed: u64) -> Model {
        Model::from_parts(
            Weights {
                vocab: Vocab::default(),
                params: mlp::initial(seed),
                trained: 0,
            },
            Adam::new(),
            seed,
        )
    }

    /// A model that goes on from saved weights and optimiser state (its replay ring starts
    /// empty).
    pub fn from_parts(weights: Weights, adam: Adam, seed: u64) -> Model {
        Model {
            weights,
            adam,
            replay: Vec::new(),
            next: 0,
            rng: Rng::seeded(seed ^ 0x6e65_7572_616c),
            act: Activations::default(),
            grad: vec![0.0; PARAMETERS],
            batch: Vec::new(),
            targets: Vec::new(),
            predictions: Vec::new(),
        }
    }

    /// Learns from attempts that ended; see the module's header.
    pub fn learn(&mut self, samples: &[Sample]) -> Evaluation {
        let mut evaluation = Evaluation::default();
        let (mut fresh, mut actual) = (Vec::new(), Vec::new());
        let ready = self.weights.ready();
        for sample in samples {
            let target = Target {
                log_latency: sample.latency_ms.map(|ms| ms.max(0.0).ln_1p() as f32),
                succeeded: sample.succeeded,
            };
            if target.log_latency.is_none() && target.succeeded.is_none() {
                continue;
            }
            // Whether it would have been predicted, asked before the vocabulary learns it.
            let predictable = ready
                && self
                    .weights
                    .vocab
                    .encode(&sample.task(), &sample.agent())
                    .is_some();
            let Some(row) = self.weights.vocab.learn(&sample.task(), &sample.agent()) else {
                continue;
            };
            if predictable && let Some(ms) = sample.latency_ms {
                fresh.push(row);
                actual.push(ms);
            }
            self.keep(row, target);
            evaluation.learned += 1;
        }
        if !fresh.is_empty() {
            self.weights
                .predict_rows(&fresh, &mut self.act, &mut self.predictions);
            for (p, &ms) in self.predictions.iter().zip(&actual) {
                evaluation.predicted += 1;
                evaluation.absolute_error_ms += (p.latency_ms - ms).abs();
                evaluation.actual_ms += ms;
            }
        }
        let steps = if evaluation.learned == 0 {
            0
        } else {
            (evaluation.learned as usize)
                .div_ceil(BATCH)
                .saturating_mul(STEPS_PER_BATCH)
                .clamp(MIN_STEPS, MAX_STEPS)
        };
        for _ in 0..steps {
            evaluation.loss = self.step();
            evaluation.steps += 1;
        }
        self.weights.trained += evaluation.learned;
        evaluation
    }

    /// Predictions for pairs, or `None` for a pair the model cannot predict (see
    /// [`Vocab::encode`]); for tests and tools, the scheduler goes through a snapshot.
    pub fn predict(
        &mut self,
        pairs: &[(TaskInput<'_>, AgentInput<'_>)],
    ) -> Vec<Option<Prediction>> {
        let encoded: Vec<Option<Row>> = pairs
            .iter()
            .map(|(t, a)| self.weights.vocab.encode(t, a))
            .collect();
        let rows: Vec<Row> = encoded.iter().flatten().copied().collect();
        self.weights
            .predict_rows(&rows, &mut self.act, &mut self.predictions);
        let mut predictions = self.predictions.iter().copied();
        encoded
            .iter()
            .map(|r| r.and_then(|_| predictions.next()))
            .collect()
    }

    fn keep(&mut self, row: Row, target: Target) {
        if self.replay.len() < REPLAY {
            self.replay.push((row, target));
        } else {
            self.replay[self.next] = (row, target);
            self.next = (self.next + 1) % REPLAY;
        }
    }

    /// One Adam step on a batch drawn from the replay ring; returns the batch's loss.
    fn step(&mut self) -> f32 {
        self.batch.clear();
        self.targets.clear();
        for _ in 0..BATCH.min(self.replay.len()) {
            let (row, target) = self.replay[self.rng.below(self.replay.len())];
            self.batch.push(row);
            self.targets.push(target);
        }
        let params = &mut self.weights.params;
        mlp::gather(params, &self.batch, &mut self.act.x);
        mlp::forward(params, &mut self.act);
        self.grad.fill(0.0);
        let loss = mlp::backward(
            params,
            &self.batch,
            &self.targets,
            &self.act,
            &mut self.grad,
        );
        self.adam.update(params, &mut self.grad);
        loss
    }
}
