//! The neural routing model in the hub (`[routing] policy = "neural"`): read from the store at
//! start, trained in rounds on a CPU-pool thread of its own (never on the scheduler's), saved to
//! the store every [`SAVE_EVERY`] while it learns and once more as the hub stops.
//!
//! A saved model the hub cannot read (another format or shape, after an upgrade) is logged and
//! replaced by a fresh one: routing then behaves as `learned` until the new one has learned
//! enough (see `hive_neural`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_core::Clock;
use hive_neural::{Model, SharedModel, Trainer};
use hive_store::{ModelStore, StoreError};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::builtin::pool::CpuPool;

/// The name the model is saved under.
pub const MODEL_NAME: &str = "routing";
/// How often a round of training starts (when attempts ended meanwhile).
pub const ROUND_EVERY: Duration = Duration::from_millis(100);
/// How often the model is saved while it learns.
pub const SAVE_EVERY: Duration = Duration::from_secs(10);

/// The model as the hub holds it.
pub struct NeuralRouting {
    pub shared: SharedModel,
    trainer: Arc<Mutex<Trainer>>,
    store: Arc<dyn ModelStore>,
}

impl NeuralRouting {
    /// The saved model, or a fresh one; `seed` draws a fresh one's weights and the batches.
    pub fn load(store: Arc<dyn ModelStore>, seed: u64) -> Result<NeuralRouting, StoreError> {
        let model = match store.load_model(MODEL_NAME)? {
            Some(bytes) => match hive_neural::decode(&bytes, seed) {
                Ok(model) => {
                    tracing::info!(
                        learned = model.weights.trained,
                        "neural routing model restored"
                    );
                    model
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the saved neural routing model cannot be read: starting a fresh one");
                    Model::new(seed)
                }
            },
            None => Model::new(seed),
        };
        let (shared, trainer) = SharedModel::new(model);
        Ok(NeuralRouting {
            shared,
            trainer: Arc::new(Mutex::new(trainer)),
            store,
        })
    }

    /// Trains until `stopping`, then saves; the handle ends once the last save is done.
    pub fn start(
        &self,
        clock: Arc<dyn Clock>,
        mut stopping: watch::Receiver<bool>,
    ) -> std::io::Result<JoinHandle<()>> {
        let pool = CpuPool::new(1)?;
        let (trainer, store) = (self.trainer.clone(), self.store.clone());
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(ROUND_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut saved = tokio::time::Instant::now();
            let mut unsaved = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopping.wait_for(|s| *s) => break,
                }
                unsaved |= round(&pool, &trainer).await;
                if unsaved && saved.elapsed() >= SAVE_EVERY {
                    save(&trainer, &store, &*clock).await;
                    (saved, unsaved) = (tokio::time::Instant::now(), false);
                }
            }
            unsaved |= round(&pool, &trainer).await;
            if unsaved {
                save(&trainer, &store, &*clock).await;
            }
        }))
    }
}

/// One round on the pool's thread; true if it learned anything.
async fn round(pool: &CpuPool, trainer: &Arc<Mutex<Trainer>>) -> bool {
    let (done, learned) = oneshot::channel();
    let trainer = trainer.clone();
    pool.spawn(move || {
        let evaluation = trainer.lock().unwrap_or_else(|p| p.into_inner()).round();
        let _ = done.send(evaluation.is_some());
    });
    learned.await.unwrap_or(false)
}

async fn save(trainer: &Arc<Mutex<Trainer>>, store: &Arc<dyn ModelStore>, clock: &dyn Clock) {
    let bytes = trainer.lock().unwrap_or_else(|p| p.into_inner()).save();
    let (store, now) = (store.clone(), clock.now());
    let saved =
        tokio::task::spawn_blocking(move || store.save_model(MODEL_NAME, &bytes, now)).await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the neural routing model"),
        Err(e) => tracing::warn!(error = %e, "saving the neural routing model panicked"),
    }
}
