//! The model between the scheduler and its trainer: the scheduler predicts from the latest
//! published weights and hands over the attempts that ended, and never waits for the trainer;
//! the trainer learns on another thread (the hub's CPU pool) and publishes new weights.
//!
//! - Weights are published as an `Arc<Weights>` behind a lock plus a version counter. A
//!   [`Handle`] (the scheduler's [`Predictor`]) compares the version on each decision and, when
//!   it moved, takes the new `Arc` with `try_read`: if the trainer happens to be swapping it that
//!   instant, the decision uses the weights it had and picks the new ones up next time.
//! - Attempts go through a bounded channel with `try_send`: should the trainer fall behind by
//!   [`QUEUE`] attempts, the newest are dropped and counted ([`SharedModel::dropped`]), so memory
//!   stays bounded and the scheduler never blocks.
//! - A decision with at least [`Accelerator::min_batch`] candidates runs its forward pass on the
//!   [`Accelerator`] when there is one (the GPU, `hive-gpu`); smaller ones, and any the
//!   accelerator fails, on the CPU.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, RwLock};

use hive_core::routing::{Candidate, Observation, Prediction, Predictor, Route};
use hive_core::task::AttemptOutcome;

use crate::input::{AgentInput, TaskInput};
use crate::mlp::{self, Activations, Row};
use crate::model::{Evaluation, Model, Sample, Weights};
use crate::persist;

/// Attempts waiting for the trainer at most.
pub const QUEUE: usize = 16_384;

/// A faster engine for the forward pass of large batches (an NVIDIA GPU: `hive-gpu`).
pub trait Accelerator: Send {
    /// Rows from which it is faster than the CPU.
    fn min_batch(&self) -> usize;
    /// The network's outputs (rows x 2, as [`crate::mlp::forward`] leaves them in
    /// `Activations::y`) for the inputs `x` (rows x [`crate::mlp::INPUTS`]) under `weights`;
    /// `version` changes whenever the weights do.
    fn forward(
        &mut self,
        weights: &Weights,
        version: u64,
        x: &[f32],
        y: &mut Vec<f32>,
    ) -> Result<(), String>;
}

/// An accelerator shared by the schedulers' predictors.
pub type SharedAccelerator = Arc<Mutex<dyn Accelerator>>;

struct Inner {
    accelerator: Option<SharedAccelerator>,
    latest: RwLock<Arc<Weights>>,
    version: AtomicU64,
    sender: SyncSender<Sample>,
    dropped: AtomicU64,
    totals: Mutex<Totals>,
}

/// What the trainer has done since the hub started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Training rounds, attempts learned from and Adam steps taken.
    pub rounds: u64,
    pub learned: u64,
    pub steps: u64,
    /// Attempts whose latency was predicted before they were learned from, with the sums of
    /// the absolute errors and of the actual latencies, ms: their ratio is the model's relative
    /// error on attempts it had not seen.
    pub predicted: u64,
    pub absolute_error_ms: f64,
    pub actual_ms: f64,
    /// The last training batch's loss.
    pub loss: f32,
}

/// The hub's side of the model: makes predictors for schedulers, reads the latest weights and
/// the trainer's totals. Cheap to clone.
#[derive(Clone)]
pub struct SharedModel(Arc<Inner>);

/// The learning side: owns the model and the queue of attempts; one per hub.
pub struct Trainer {
    model: Model,
    receiver: Receiver<Sample>,
    shared: SharedModel,
    pending: Vec<Sample>,
}

impl SharedModel {
    /// Shares `model` (fresh or restored) and returns its trainer.
    pub fn new(model: Model) -> (SharedModel, Trainer) {
        SharedModel::with_accelerator(model, None)
    }

    /// [`SharedModel::new`], the large batches' forward passes on `accelerator`.
    pub fn with_accelerator(
        model: Model,
        accelerator: Option<SharedAccelerator>,
    ) -> (SharedModel, Trainer) {
        let (sender, receiver) = sync_channel(QUEUE);
        let shared = SharedModel(Arc::new(Inner {
            accelerator,
            latest: RwLock::new(Arc::new(model.weights.clone())),
            version: AtomicU64::new(0),
            sender,
            dropped: AtomicU64::new(0),
            totals: Mutex::new(Totals::default()),
        }));
        let trainer = Trainer {
            model,
            receiver,
            shared: shared.clone(),
            pending: Vec::new(),
        };
        (shared, trainer)
    }

    /// A predictor for a scheduler's neural policy.
    pub fn predictor(&self) -> Box<dyn Predictor> {
        let weights = self.weights();
        Box::new(Handle {
            shared: self.clone(),
            version: self.0.version.load(Ordering::Acquire),
            weights,
            rows: Vec::new(),
            slots: Vec::new(),
            act: Activations::default(),
            predictions: Vec::new(),
            accelerator_failed: false,
        })
    }

    /// The latest published weights.
    pub fn weights(&self) -> Arc<Weights> {
        self.0
            .latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Attempts dropped because the trainer had fallen [`QUEUE`] behind.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    pub fn totals(&self) -> Totals {
        *self.0.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, weights: Weights) {
        *self.0.latest.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(weights);
        self.0.version.fetch_add(1, Ordering::Release);
    }
}

impl Trainer {
    /// Learns from the attempts that ended since the last round and publishes the new weights;
    /// `None` if none ended.
    pub fn round(&mut self) -> Option<Evaluation> {
        self.pending.clear();
        self.pending.extend(self.receiver.try_iter().take(QUEUE));
        if self.pending.is_empty() {
            return None;
        }
        let evaluation = self.model.learn(&self.pending);
        self.shared.publish(self.model.weights.clone());
        let mut totals = self
            .shared
            .0
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        totals.rounds += 1;
        totals.learned += evaluation.learned;
        totals.steps += evaluation.steps;
        totals.predicted += evaluation.predicted;
        totals.absolute_error_ms += evaluation.absolute_error_ms;
        totals.actual_ms += evaluation.actual_ms;
        if evaluation.steps > 0 {
            totals.loss = evaluation.loss;
        }
        Some(evaluation)
    }

    /// The model's lasting state as bytes, for the store.
    pub fn save(&self) -> Vec<u8> {
        persist::encode(&self.model)
    }
}

/// A scheduler's view of the model; see the module's header.
struct Handle {
    shared: SharedModel,
    weights: Arc<Weights>,
    version: u64,
    // Scratch of one decision: the rows predicted, where each candidate's row is, the layers'
    // outputs and the predictions.
    rows: Vec<Row>,
    slots: Vec<Option<usize>>,
    act: Activations,
    predictions: Vec<Prediction>,
    /// The accelerator failed once (said once; the CPU takes over each time it fails).
    accelerator_failed: bool,
}

impl Handle {
    /// The rows' predictions: on the accelerator for a large enough batch, else (or should it
    /// fail, or be busy with another scheduler's batch: the scheduler never waits) on the CPU.
    fn forward(&mut self) {
        mlp::gather(&self.weights.params, &self.rows, &mut self.act.x);
        let accelerator = self
            .shared
            .0
            .accelerator
            .as_ref()
            .and_then(|a| match a.try_lock() {
                Ok(guard) => Some(guard),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            });
        let accelerated = match accelerator {
            Some(mut accelerator) if self.rows.len() >= accelerator.min_batch() => {
                let x = &self.act.x;
                match accelerator.forward(&self.weights, self.version, x, &mut self.act.y) {
                    Ok(()) => true,
                    Err(e) => {
                        if !self.accelerator_failed {
                            self.accelerator_failed = true;
                            tracing::warn!(error = %e, "the accelerator failed a forward pass of the routing model: the CPU runs them when it fails");
                        }
                        false
                    }
                }
            }
            _ => false,
        };
        if !accelerated {
            mlp::forward(&self.weights.params, &mut self.act);
        }
        self.predictions.clear();
        let outputs = self.act.y.chunks_exact(mlp::OUTPUTS);
        self.predictions
            .extend(outputs.map(|o| crate::model::prediction((o[0], o[1]))));
    }

    /// Takes the latest weights if they changed and the lock is free this instant.
    fn refresh(&mut self) {
        let inner = &self.shared.0;
        let version = inner.version.load(Ordering::Acquire);
        if version != self.version
            && let Ok(latest) = inner.latest.try_read()
        {
            self.weights = latest.clone();
            self.version = version;
        }
    }
}

impl Predictor for Handle {
    fn predict(
        &mut self,
        route: &Route<'_>,
        candidates: &[Candidate<'_>],
        out: &mut Vec<Option<Prediction>>,
    ) {
        out.clear();
        self.refresh();
        if !self.weights.ready() {
            out.resize(candidates.len(), None);
            return;
        }
        let task = TaskInput {
            capability: route.capability,
            payload_bytes: route.payload_bytes,
            features: route.features,
        };
        self.rows.clear();
        self.slots.clear();
        // The task's side once, not per candidate.
        let Some(task) = self.weights.vocab.encode_task(&task) else {
            out.resize(candidates.len(), None);
            return;
        };
        for c in candidates {
            // A busy candidate would take the task once a slot frees: at its slots less one,
            // the most load an attempt ever starts at (and so all the model has seen).
            let agent = AgentInput {
                identity: c.identity,
                running: c.running.min(c.slots.saturating_sub(1)),
                slots: c.slots,
            };
            let row = self.weights.vocab.encode_for(task, &agent);
            self.slots.push(row.map(|_| self.rows.len()));
            self.rows.extend(row);
        }
        if !self.rows.is_empty() {
            self.forward();
        }
        out.extend(self.slots.iter().map(|s| s.map(|i| self.predictions[i])));
    }

    fn observe(&mut self, attempt: &Observation<'_>) {
        let (latency_ms, succeeded) = match attempt.outcome {
            AttemptOutcome::Succeeded => (Some(attempt.run_ms as f64), Some(true)),
            AttemptOutcome::Failed => (Some(attempt.run_ms as f64), Some(false)),
            // It ran until its lease ended: a failure, but its run time is the lease's.
            AttemptOutcome::LeaseExpired => (None, Some(false)),
            AttemptOutcome::Cancelled | AttemptOutcome::Released => return,
        };
        let sample = Sample {
            capability: attempt.capability.into(),
            identity: attempt.identity.into(),
            running: attempt.running,
            slots: attempt.slots,
            payload_bytes: attempt.payload_bytes,
            features: attempt.features.cloned(),
            latency_ms,
            succeeded,
        };
        match self.shared.0.sender.try_send(sample) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.0.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
