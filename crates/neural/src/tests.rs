//! The model learns what it should, from data made here (nothing is downloaded).

use hive_core::random::Rng;
use hive_core::routing::{Candidate, Observation, Predictor, Route};
use hive_core::task::{AttemptOutcome, Feature};
use hive_core::{AgentId, Estimate, LearningConfig, Timestamp};

use std::sync::Arc;

use crate::input::{AgentInput, MIN_AGENT_SAMPLES, TaskInput};
use crate::model::{MIN_SAMPLES, Model, Sample, Weights};
use crate::persist::{self, DecodeError};
use crate::shared::{Accelerator, QUEUE, SharedAccelerator, SharedModel};

const SMALL: usize = 200;
const LARGE: usize = 20_000;

/// Agents "short-N" take 4 ms on a small payload and 40 on a large one, "long-N" the reverse;
/// ±10% noise. Returns the samples of `n` attempts spread over four agents and both sizes.
fn crossover(n: usize, seed: u64) -> Vec<Sample> {
    let mut rng = Rng::seeded(seed);
    (0..n)
        .map(|i| {
            let agent = ["short-1", "short-2", "long-1", "long-2"][i % 4];
            let large = rng.uniform() < 0.5;
            let quick = agent.starts_with("short") != large;
            let base = if quick { 4.0 } else { 40.0 };
            Sample {
                capability: "summarize".into(),
                identity: agent.into(),
                running: rng.below(3) as u32,
                slots: 4,
                payload_bytes: if large { LARGE } else { SMALL },
                features: None,
                latency_ms: Some(base * (0.9 + 0.2 * rng.uniform())),
                succeeded: Some(true),
            }
        })
        .collect()
}

fn train(model: &mut Model, samples: &[Sample]) {
    for round in samples.chunks(100) {
        model.learn(round);
    }
}

fn task(payload_bytes: usize) -> TaskInput<'static> {
    TaskInput {
        capability: "summarize",
        payload_bytes,
        features: &[],
    }
}

fn agent(identity: &str) -> AgentInput<'_> {
    AgentInput {
        identity,
        running: 1,
        slots: 4,
    }
}

#[test]
fn it_learns_latencies_that_cross_over_with_the_payload_size() {
    let mut model = Model::new(1);
    let samples = crossover(6_000, 2);
    let (early, late) = samples.split_at(1_000);
    train(&mut model, early);
    let mut error = (0.0, 0.0);
    for round in late.chunks(100) {
        let e = model.learn(round);
        error = (e.absolute_error_ms, e.actual_ms);
    }
    // The last round was predicted before it was learned from: within 15% on the whole.
    assert!(error.0 / error.1 < 0.15, "relative error {error:?}");
    let pairs = [
        (task(SMALL), agent("short-1")),
        (task(SMALL), agent("long-2")),
        (task(LARGE), agent("short-2")),
        (task(LARGE), agent("long-1")),
    ];
    let p: Vec<f64> = model
        .predict(&pairs)
        .into_iter()
        .map(|p| p.expect("known agents").latency_ms)
        .collect();
    for (predicted, actual) in p.iter().zip([4.0, 40.0, 40.0, 4.0]) {
        assert!(
            (predicted - actual).abs() < 0.25 * actual,
            "{p:?}: predicted {predicted}, actual {actual}"
        );
    }
}

#[test]
fn it_reads_a_hint_the_payload_does_not_show_and_learns_who_fails() {
    let mut rng = Rng::seeded(5);
    let samples: Vec<Sample> = (0..6_000)
        .map(|i| {
            let tokens = 100.0 + rng.uniform() * 9_900.0;
            let (identity, latency, fails) = match i % 3 {
                // 1 ms per 200 tokens: 0.5 to 50 ms.
                0 => ("reader", tokens / 200.0, false),
                1 => ("steady", 20.0, false),
                _ => ("flaky", 20.0, rng.uniform() < 0.3),
            };
            Sample {
                capability: "llm".into(),
                identity: identity.into(),
                running: 0,
                slots: 1,
                payload_bytes: 64,
                features: Feature::from_pairs([("tokens".to_string(), tokens)]),
                latency_ms: Some(latency),
                succeeded: Some(!fails),
            }
        })
        .collect();
    let mut model = Model::new(3);
    train(&mut model, &samples);
    let predict = |model: &mut Model, identity: &str, tokens: f64| {
        let features = Feature::from_pairs([("tokens".to_string(), tokens)]).unwrap();
        let t = TaskInput {
            capability: "llm",
            payload_bytes: 64,
            features: &features,
        };
        let a = AgentInput {
            identity,
            running: 0,
            slots: 1,
        };
        model.predict(&[(t, a)])[0].expect("known")
    };
    let short = predict(&mut model, "reader", 500.0).latency_ms;
    let long = predict(&mut model, "reader", 9_000.0).latency_ms;
    let steady = predict(&mut model, "steady", 9_000.0).latency_ms;
    assert!(short < 8.0 && long > 30.0, "reader: {short} then {long}");
    assert!((15.0..25.0).contains(&steady), "steady: {steady}");
    let flaky = predict(&mut model, "flaky", 5_000.0).success;
    let reliable = predict(&mut model, "steady", 5_000.0).success;
    assert!((0.55..0.85).contains(&flaky), "flaky succeeds {flaky}");
    assert!(reliable > 0.9, "steady succeeds {reliable}");
}

#[test]
fn it_predicts_nothing_for_an_agent_it_has_barely_seen_or_a_capability_it_never_saw() {
    let mut model = Model::new(1);
    train(&mut model, &crossover(1_000, 1));
    let mut newcomer = crossover(MIN_AGENT_SAMPLES as usize - 1, 9);
    for s in &mut newcomer {
        s.identity = "newcomer".into();
    }
    model.learn(&newcomer);
    let other = TaskInput {
        capability: "translate",
        ..task(SMALL)
    };
    let p = model.predict(&[
        (task(SMALL), agent("newcomer")),
        (task(SMALL), agent("never-seen")),
        (other, agent("short-1")),
        (task(SMALL), agent("short-1")),
    ]);
    assert_eq!(&p[..3], &[None, None, None]);
    assert!(p[3].is_some());
}

#[test]
fn a_saved_model_predicts_as_before_and_bad_bytes_are_refused() {
    let mut model = Model::new(4);
    train(&mut model, &crossover(1_500, 4));
    let bytes = persist::encode(&model);
    let mut restored = persist::decode(&bytes, 99).expect("decodes");
    assert_eq!(restored.weights, model.weights);
    assert_eq!(restored.adam, model.adam);
    let pairs = [
        (task(LARGE), agent("long-1")),
        (task(SMALL), agent("long-1")),
    ];
    assert_eq!(restored.predict(&pairs), model.predict(&pairs));
    assert_eq!(
        persist::decode(&bytes[..bytes.len() - 1], 1).err(),
        Some(DecodeError::Truncated)
    );
    assert_eq!(
        persist::decode(b"not a model at all", 1).err(),
        Some(DecodeError::NotAModel)
    );
    let mut newer = bytes.clone();
    newer[6] = 9;
    assert_eq!(
        persist::decode(&newer, 1).err(),
        Some(DecodeError::Version(9))
    );
}

const LEARNING: LearningConfig = LearningConfig {
    decay_ms: 10_000,
    memory_ms: 60_000,
};

fn route(payload_bytes: usize) -> Route<'static> {
    Route {
        capability: "summarize",
        payload_bytes,
        features: &[],
        now: Timestamp(1),
        retry_penalty_ms: 1_000,
        queued: 0,
        waited_ms: 0,
        arrivals_per_ms: 0.0,
        learning: &LEARNING,
    }
}

/// Idle candidates of 4 slots under these names.
fn idle<'a>(names: &[&'a str], estimate: &'a Estimate) -> Vec<Candidate<'a>> {
    names
        .iter()
        .enumerate()
        .map(|(i, &identity)| Candidate {
            agent: AgentId::from_bytes([i as u8; 16]),
            identity,
            running: 0,
            slots: 4,
            level: 1.0,
            estimate,
        })
        .collect()
}

fn observe(predictor: &mut dyn Predictor, sample: &Sample) {
    predictor.observe(&Observation {
        capability: &sample.capability,
        identity: &sample.identity,
        running: sample.running,
        slots: sample.slots,
        payload_bytes: sample.payload_bytes,
        features: sample.features.as_ref(),
        outcome: AttemptOutcome::Succeeded,
        run_ms: sample.latency_ms.unwrap_or(0.0) as u64,
    });
}

#[test]
fn the_scheduler_predicts_from_what_the_trainer_published() {
    let (shared, mut trainer) = SharedModel::new(Model::new(8));
    let mut predictor = shared.predictor();
    let estimate = Estimate::default();
    let candidates = idle(&["short-1", "long-1", "stranger"], &estimate);
    let mut out = Vec::new();
    predictor.predict(&route(LARGE), &candidates, &mut out);
    assert_eq!(out, [None, None, None], "nothing learned yet");
    let samples = crossover(3_000, 3);
    for (i, round) in samples.chunks(500).enumerate() {
        for s in round {
            observe(predictor.as_mut(), s);
        }
        let evaluation = trainer.round().expect("attempts came");
        assert_eq!(evaluation.learned, 500);
        if i == 0 {
            // Not ready before this round, so nothing was predicted.
            assert_eq!(evaluation.predicted, 0);
        }
    }
    assert!(trainer.round().is_none(), "nothing new");
    const { assert!(MIN_SAMPLES <= 3_000) };
    predictor.predict(&route(LARGE), &candidates, &mut out);
    let (short, long) = (out[0].expect("known"), out[1].expect("known"));
    assert!(long.latency_ms < short.latency_ms, "{out:?}");
    assert_eq!(out[2], None, "never seen");
    // On the typical task (sizes spread evenly) each kind is in between its two latencies.
    let weights = shared.weights();
    for agent in ["short-1", "long-2"] {
        let typical = weights
            .predict_typical("summarize", agent, 4)
            .expect("known");
        assert!(
            (4.0..40.0).contains(&typical.latency_ms),
            "{agent}: {typical:?}"
        );
    }
    assert_eq!(weights.predict_typical("summarize", "stranger", 4), None);
    let totals = shared.totals();
    assert_eq!((totals.rounds, totals.learned), (6, 3_000));
    assert!(totals.predicted > 0 && totals.absolute_error_ms > 0.0);
    // A restart: the saved model predicts the same.
    let restored = persist::decode(&trainer.save(), 1).expect("decodes");
    assert_eq!(restored.weights, *shared.weights());
}

#[test]
fn a_trainer_that_falls_behind_costs_attempts_not_memory_or_waiting() {
    let (shared, _trainer) = SharedModel::new(Model::new(1));
    let mut predictor = shared.predictor();
    let sample = &crossover(1, 1)[0];
    for _ in 0..QUEUE + 5 {
        observe(predictor.as_mut(), sample);
    }
    assert_eq!(shared.dropped(), 5);
}

/// Computes on the CPU as the accelerator would, counting its calls; or fails every call.
struct FakeAccelerator {
    min_batch: usize,
    fail: bool,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Accelerator for FakeAccelerator {
    fn min_batch(&self) -> usize {
        self.min_batch
    }

    fn forward(
        &mut self,
        weights: &Weights,
        _version: u64,
        x: &[f32],
        y: &mut Vec<f32>,
    ) -> Result<(), String> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.fail {
            return Err("device lost".into());
        }
        let mut act = crate::mlp::Activations {
            x: x.to_vec(),
            ..Default::default()
        };
        crate::mlp::forward(&weights.params, &mut act);
        *y = act.y.iter().map(|v| v + 1.0).collect();
        Ok(())
    }
}

#[test]
fn large_batches_go_to_the_accelerator_and_the_cpu_takes_over_when_it_fails() {
    let mut trained = Model::new(2);
    train(&mut trained, &crossover(2_000, 2));
    let estimate = Estimate::default();
    let names: Vec<String> = (1..=2)
        .flat_map(|i| [format!("short-{i}"), format!("long-{i}")])
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let candidates = idle(&names, &estimate);
    let predict = |accelerator: Option<FakeAccelerator>, candidates: &[Candidate<'_>]| {
        let accelerator =
            accelerator.map(|a| Arc::new(std::sync::Mutex::new(a)) as SharedAccelerator);
        let (shared, _trainer) = SharedModel::with_accelerator(trained.clone(), accelerator);
        let mut out = Vec::new();
        shared
            .predictor()
            .predict(&route(LARGE), candidates, &mut out);
        out.into_iter()
            .map(|p| p.unwrap().latency_ms)
            .collect::<Vec<_>>()
    };
    let cpu = predict(None, &candidates);
    let fake = |min_batch, fail, calls: &Arc<_>| FakeAccelerator {
        min_batch,
        fail,
        calls: Arc::clone(calls),
    };
    let calls = Arc::default();
    // Four candidates: at a minimum of 4 the accelerator runs them (its outputs are the CPU's
    // plus one, so it shows), at 5 the CPU does.
    let accelerated = predict(Some(fake(4, false, &calls)), &candidates);
    for (a, c) in accelerated.iter().zip(&cpu) {
        assert!(
            (a - ((c + 1.0).ln() + 1.0).exp_m1()).abs() < 1e-3,
            "{a} {c}"
        );
    }
    assert_eq!(predict(Some(fake(5, false, &calls)), &candidates), cpu);
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
    // A failing accelerator: the CPU's predictions, every time.
    let calls = Arc::default();
    assert_eq!(predict(Some(fake(1, true, &calls)), &candidates), cpu);
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_saved_vocabulary_past_the_models_limits_is_refused() {
    let mut model = Model::new(1);
    train(&mut model, &crossover(300, 1));
    let names: Vec<std::sync::Arc<str>> = (0..300).map(|i| format!("agent-{i}").into()).collect();
    model.weights.vocab.agents = crate::input::Names::from_names(names);
    model.weights.vocab.agent_samples = vec![20; 300];
    let bytes = persist::encode(&model);
    assert!(matches!(
        persist::decode(&bytes, 1),
        Err(DecodeError::Vocabulary(_))
    ));
}

#[test]
fn once_the_agent_names_are_full_a_new_agent_teaches_nothing_and_its_capability_is_not_learned() {
    let mut model = Model::new(1);
    let sample = |agent: usize, capability: &str| Sample {
        capability: capability.into(),
        identity: format!("agent-{agent}").into(),
        running: 0,
        slots: 1,
        payload_bytes: 10,
        features: None,
        latency_ms: Some(5.0),
        succeeded: Some(true),
    };
    let full: Vec<Sample> = (0..crate::mlp::AGENTS)
        .map(|i| sample(i, "known"))
        .collect();
    assert_eq!(model.learn(&full).learned, crate::mlp::AGENTS as u64);
    assert_eq!(model.learn(&[sample(999, "new")]).learned, 0);
    assert_eq!(model.weights.vocab.capabilities().len(), 1);
    // And the saved model still reads back.
    persist::decode(&persist::encode(&model), 1).expect("decodes");
}

#[test]
fn a_task_encoded_once_gives_each_agent_the_row_encode_would() {
    let mut model = Model::new(1);
    let mut samples = crossover(1_000, 1);
    for (i, s) in samples.iter_mut().enumerate() {
        s.features = Feature::from_pairs([("tokens".to_string(), i as f64)]);
    }
    train(&mut model, &samples);
    let vocab = &model.weights.vocab;
    let features = Feature::from_pairs([("tokens".to_string(), 42.0)]).unwrap();
    let task = TaskInput {
        capability: "summarize",
        payload_bytes: 5_000,
        features: &features,
    };
    let encoded = vocab.encode_task(&task).expect("a known capability");
    for (identity, running) in [("short-1", 0), ("long-2", 3), ("stranger", 1)] {
        let agent = AgentInput {
            identity,
            running,
            slots: 4,
        };
        assert_eq!(
            vocab.encode_for(encoded, &agent),
            vocab.encode(&task, &agent)
        );
    }
    let unknown = TaskInput {
        capability: "translate",
        ..task
    };
    assert_eq!(vocab.encode_task(&unknown), None);
}
