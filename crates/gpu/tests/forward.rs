//! The GPU's forward pass against the CPU's, where there is a GPU; where there is none,
//! `GpuForward::new` says why instead of failing later (the hub then stays on the CPU, which
//! `hive-neural`'s tests cover).
#![cfg(feature = "cuda")]

use hive_gpu::{GpuError, GpuForward};
use hive_neural::mlp::{self, Activations, DENSE, Row};
use hive_neural::{Model, Sample};

fn trained() -> Model {
    let samples: Vec<Sample> = (0..2_000)
        .map(|i| Sample {
            capability: "c".into(),
            identity: format!("agent-{}", i % 8).into(),
            running: (i % 3) as u32,
            slots: 4,
            payload_bytes: 64 + i * 7,
            features: None,
            latency_ms: Some(1.0 + (i % 17) as f64),
            succeeded: Some(i % 11 != 0),
        })
        .collect();
    let mut model = Model::new(5);
    for round in samples.chunks(200) {
        model.learn(round);
    }
    model
}

#[test]
fn the_gpu_computes_what_the_cpu_does_or_says_why_it_cannot() {
    let mut gpu = match GpuForward::new() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("no GPU to compare with: {e}");
            assert!(matches!(
                e,
                GpuError::NoDriver | GpuError::NoLibrary(_) | GpuError::Driver(_)
            ));
            return;
        }
    };
    let model = trained();
    let weights = &model.weights;
    // The last, smaller than the one before, runs in buffers larger than it needs.
    for batch in [1, 7, 1_000, 70_000, 3] {
        let rows: Vec<Row> = (0..batch)
            .map(|i| Row {
                capability: 0,
                agent: (i % 8) as u16,
                dense: [((i % 13) as f32) / 13.0; DENSE],
            })
            .collect();
        let mut act = Activations::default();
        mlp::gather(&weights.params, &rows, &mut act.x);
        mlp::forward(&weights.params, &mut act);
        let mut y = Vec::new();
        gpu.run(weights, 1, &act.x, &mut y).expect("a forward pass");
        assert_eq!(y.len(), act.y.len());
        for (g, c) in y.iter().zip(&act.y) {
            assert!(
                (g - c).abs() <= 1e-4 * c.abs().max(1.0),
                "batch {batch}: {g} vs {c}"
            );
        }
    }
}
