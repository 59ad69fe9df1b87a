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
        let (shared, trainer) = SharedModel::with_accelerator(model, accelerator());
        Ok(NeuralRouting {
            shared,
            trainer: Arc::new(Mutex::new(trainer)),
            store,
        })
    }

    /// Trains until `stopping` turns true, then takes a last round and saves; the handle ends
    /// once that save is done. The hub says stop after its scheduler has stopped, so the last
    /// attempts are learned from too.
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

/// The GPU for large batches, with the `gpu` feature and a GPU to use; one line says which.
#[cfg(feature = "gpu")]
fn accelerator() -> Option<hive_neural::shared::SharedAccelerator> {
    use hive_neural::shared::Accelerator;
    match hive_gpu::GpuForward::new() {
        Ok(gpu) => {
            tracing::info!(
                device = gpu.device(),
                min_batch = gpu.min_batch(),
                "neural routing model: forward passes of min_batch rows or more run on the GPU"
            );
            Some(Arc::new(Mutex::new(gpu)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "neural routing model: no GPU to use, it runs on the CPU");
            None
        }
    }
}

#[cfg(not(feature = "gpu"))]
fn accelerator() -> Option<hive_neural::shared::SharedAccelerator> {
    None
}

/// One round on the pool's thread; true if it learned anything.
async fn round(pool: &CpuPool, trainer: &Arc<Mutex<Trainer>>) -> bool {
    let (done, learned) = oneshot::channel();
    let trainer = trainer.clone();
    pool.spawn(move || {
        // A panic would end the pool's only thread, and with it all training, silently: it is
        // caught and said, and the next round goes on (the lock is taken back from the panic).
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            trainer.lock().unwrap_or_else(|p| p.into_inner()).round()
        }));
        let learned = match round {
            Ok(evaluation) => evaluation.is_some(),
            Err(_) => {
                tracing::error!("a training round of the neural routing model panicked");
                false
            }
        };
        let _ = done.send(learned);
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
