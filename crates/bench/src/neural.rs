//! `neural`: the routing model's own costs, in this process (no hub): the batched forward pass
//! against batch size, training samples per second, and what one routing decision costs the
//! scheduler with the model in it (the `neural` policy's prediction for every candidate).
//!
//! Built with `--features gpu`, the forward pass is timed on the GPU too (the embeddings gathered
//! on the CPU, the copies both ways included), its outputs compared with the CPU's, and the
//! batch size from which it is faster reported.
//!
//! The model is first trained on a few thousand synthetic attempts so that its weights and
//! vocabulary are those of a working model (speed does not depend on them otherwise). Each
//! measurement repeats its operation for at least [`MIN_TIME`] and reports the median of the
//! repetitions' times, so a preempted repetition on a shared machine does not move it.

use std::time::{Duration, Instant};

use hive_core::estimate::{Estimate, LearningConfig};
use hive_core::random::Rng;
use hive_core::routing::{Candidate, Route};
use hive_core::{AgentId, Timestamp};
use hive_neural::mlp::{Activations, Row};
use hive_neural::{AgentInput, Model, Sample, SharedModel, TaskInput};

/// The batch sizes of the forward pass measured.
pub const BATCHES: [usize; 9] = [1, 4, 16, 64, 256, 1_024, 4_096, 16_384, 65_536];
/// Agents in the synthetic swarm, and candidates per routing decision.
const AGENTS: usize = 64;
const CANDIDATES: usize = 12;
/// Each measurement runs at least this long.
const MIN_TIME: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, serde::Serialize)]
pub struct NeuralRun {
    pub parameters: usize,
    pub forward: Vec<ForwardPoint>,
    pub training_samples_per_sec: f64,
    /// One routing decision's predictions for [`CANDIDATES`] candidates, µs.
    pub decision_us: f64,
    pub device: String,
    /// `None`: built without the `gpu` feature.
    pub gpu: Option<GpuRun>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GpuRun {
    /// The device, or why there was none to use.
    pub device: Result<String, String>,
    pub forward: Vec<ForwardPoint>,
    /// The largest difference between a GPU and a CPU output over every batch.
    pub max_difference: f32,
    /// The smallest batch from which the GPU was faster than the CPU at every size measured.
    pub overtakes_cpu_at: Option<usize>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ForwardPoint {
    pub batch: usize,
    /// Median time of one forward pass, µs.
    pub latency_us: f64,
    pub predictions_per_sec: f64,
}

fn samples(n: usize, seed: u64) -> Vec<Sample> {
    let mut rng = Rng::seeded(seed);
    (0..n)
        .map(|i| Sample {
            capability: format!("cap-{}", i % 4).into(),
            identity: format!("agent-{}", i % AGENTS).into(),
            running: rng.below(4) as u32,
            slots: 4,
            payload_bytes: 64 + rng.below(16_000),
            features: hive_core::Feature::from_pairs([(
                "tokens".to_string(),
                rng.uniform() * 4_000.0,
            )]),
            latency_ms: Some(1.0 + rng.uniform() * 20.0),
            succeeded: Some(rng.uniform() > 0.05),
        })
        .collect()
}

/// The median of `reps` timings of `f`, repeated until [`MIN_TIME`] has passed (at least 5).
fn median_time(mut f: impl FnMut()) -> Duration {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || start.elapsed() < MIN_TIME {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

pub fn measure() -> NeuralRun {
    let mut model = Model::new(1);
    for round in samples(8_192, 2).chunks(256) {
        model.learn(round);
    }
    let weights = model.weights.clone();
    // Rows for every batch size, encoded once: the forward pass is what is timed.
    let pool = samples(1_024, 3);
    let rows: Vec<Row> = pool
        .iter()
        .filter_map(|s| {
            let task = TaskInput {
                capability: &s.capability,
                payload_bytes: s.payload_bytes,
                features: s.features.as_deref().unwrap_or_default(),
            };
            let agent = AgentInput {
                identity: &s.identity,
                running: s.running,
                slots: s.slots,
            };
            weights.vocab.encode(&task, &agent)
        })
        .collect();
    assert!(!rows.is_empty(), "a trained model knows its agents");
    let mut act = Activations::default();
    let mut out = Vec::new();
    let forward: Vec<ForwardPoint> = BATCHES
        .iter()
        .map(|&batch| {
            let batch_rows: Vec<Row> = rows.iter().copied().cycle().take(batch).collect();
            let t = median_time(|| weights.predict_rows(&batch_rows, &mut act, &mut out));
            let secs = t.as_secs_f64().max(1e-9);
            ForwardPoint {
                batch,
                latency_us: secs * 1e6,
                predictions_per_sec: batch as f64 / secs,
            }
        })
        .collect();
    // Training: rounds of 256 attempts, each with its Adam steps.
    let fresh = samples(256, 4);
    let t = median_time(|| {
        model.learn(&fresh);
    });
    let training_samples_per_sec = fresh.len() as f64 / t.as_secs_f64().max(1e-9);
    let gpu = gpu::measure(&weights, &rows, &forward);
    NeuralRun {
        parameters: hive_neural::mlp::PARAMETERS,
        gpu,
        forward,
        training_samples_per_sec,
        decision_us: decision_us(model),
        device: "CPU".into(),
    }
}

/// One routing decision as the scheduler makes it: the predictor's batched predictions for
/// [`CANDIDATES`] candidates, through the same [`Predictor`](hive_core::Predictor) handle.
fn decision_us(model: Model) -> f64 {
    let (shared, _trainer) = SharedModel::new(model);
    let mut predictor = shared.predictor();
    let estimate = Estimate::default();
    let names: Vec<String> = (0..CANDIDATES).map(|i| format!("agent-{i}")).collect();
    let candidates: Vec<Candidate<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Candidate {
            agent: AgentId::from_bytes([i as u8; 16]),
            identity: name,
            running: 1,
            slots: 4,
            level: 1.0,
            estimate: &estimate,
        })
        .collect();
    let features = hive_core::Feature::from_pairs([("tokens".to_string(), 900.0)]);
    let learning = LearningConfig::default();
    let route = Route {
        capability: "cap-1",
        payload_bytes: 3_000,
        features: features.as_deref().unwrap_or_default(),
        now: Timestamp(1),
        retry_penalty_ms: 1_000,
        queued: 0,
        waited_ms: 0,
        arrivals_per_ms: 0.0,
        learning: &learning,
    };
    let mut out = Vec::new();
    const DECISIONS: u32 = 100;
    let t = median_time(|| {
        for _ in 0..DECISIONS {
            predictor.predict(&route, &candidates, &mut out);
        }
    });
    assert!(out.iter().all(Option::is_some), "every candidate predicted");
    t.as_secs_f64() * 1e6 / f64::from(DECISIONS)
}

#[cfg(feature = "gpu")]
mod gpu {
    use hive_gpu::GpuForward;
    use hive_neural::Weights;
    use hive_neural::mlp::{self, Activations, Row};

    use super::{BATCHES, ForwardPoint, GpuRun, median_time};

    pub fn measure(weights: &Weights, rows: &[Row], cpu: &[ForwardPoint]) -> Option<GpuRun> {
        let mut gpu = match GpuForward::new() {
            Ok(gpu) => gpu,
            Err(e) => {
                return Some(GpuRun {
                    device: Err(e.to_string()),
                    forward: Vec::new(),
                    max_difference: 0.0,
                    overtakes_cpu_at: None,
                });
            }
        };
        gpu.set_min_batch(1);
        let (mut act, mut y) = (Activations::default(), Vec::new());
        let mut max_difference = 0.0f32;
        let mut forward = Vec::new();
        for &batch in &BATCHES {
            let batch_rows: Vec<Row> = rows.iter().copied().cycle().take(batch).collect();
            // The CPU's outputs, to compare.
            mlp::gather(&weights.params, &batch_rows, &mut act.x);
            mlp::forward(&weights.params, &mut act);
            if let Err(e) = gpu.run(weights, 0, &act.x, &mut y) {
                return Some(GpuRun {
                    device: Err(format!("{}: {e}", gpu.device())),
                    forward,
                    max_difference,
                    overtakes_cpu_at: None,
                });
            }
            for (a, b) in act.y.iter().zip(&y) {
                max_difference = max_difference.max((a - b).abs());
            }
            let mut x = Vec::new();
            let t = median_time(|| {
                mlp::gather(&weights.params, &batch_rows, &mut x);
                let _ = gpu.run(weights, 0, &x, &mut y);
            });
            let secs = t.as_secs_f64().max(1e-9);
            forward.push(ForwardPoint {
                batch,
                latency_us: secs * 1e6,
                predictions_per_sec: batch as f64 / secs,
            });
        }
        // The smallest size from which the GPU wins at every larger size too.
        let wins: Vec<bool> = forward
            .iter()
            .zip(cpu)
            .map(|(g, c)| g.latency_us < c.latency_us)
            .collect();
        let overtakes_cpu_at = (0..wins.len())
            .find(|&i| wins[i..].iter().all(|&w| w))
            .map(|i| forward[i].batch);
        Some(GpuRun {
            device: Ok(gpu.device().to_string()),
            forward,
            max_difference,
            overtakes_cpu_at,
        })
    }
}

#[cfg(not(feature = "gpu"))]
mod gpu {
    use hive_neural::Weights;
    use hive_neural::mlp::Row;

    use super::{ForwardPoint, GpuRun};

    /// Built without the `gpu` feature: nothing to measure.
    pub fn measure(_: &Weights, _: &[Row], _: &[ForwardPoint]) -> Option<GpuRun> {
        None
    }
}

/// The rows of the bench table.
pub fn rows(run: &NeuralRun) -> Vec<[String; 4]> {
    let mut rows = vec![[
        format!(
            "neural: model of {} parameters, on {}",
            run.parameters, run.device
        ),
        "-".into(),
        "-".into(),
        format!(
            "{:.0} training samples/s; one routing decision ({CANDIDATES} candidates) {:.1} µs",
            run.training_samples_per_sec, run.decision_us
        ),
    ]];
    let gpu = run.gpu.as_ref();
    for (i, p) in run.forward.iter().enumerate() {
        let on_gpu = match gpu.and_then(|g| g.forward.get(i)) {
            Some(g) => format!(
                "; GPU {:.1} µs, {:.2} M/s",
                g.latency_us,
                g.predictions_per_sec / 1e6
            ),
            None => String::new(),
        };
        rows.push([
            format!("neural forward pass, batch {}", p.batch),
            "-".into(),
            "-".into(),
            format!(
                "CPU {:.1} µs, {:.2} M predictions/s{on_gpu}",
                p.latency_us,
                p.predictions_per_sec / 1e6
            ),
        ]);
    }
    let gpu_row = match gpu {
        None => "not built (cargo build --release --features gpu)".to_string(),
        Some(GpuRun {
            device: Err(why), ..
        }) => format!("none to use: {why}"),
        Some(g) => format!(
            "{}: faster than the CPU from batch {}; outputs within {:.1e} of the CPU's",
            g.device.as_deref().unwrap_or("?"),
            g.overtakes_cpu_at
                .map_or("(never, up to 65,536)".into(), |b| b.to_string()),
            g.max_difference
        ),
    };
    rows.push(["neural on the GPU".into(), "-".into(), "-".into(), gpu_row]);
    rows
}
