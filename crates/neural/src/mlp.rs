//! The network itself: its shape, its parameters in one flat vector, the batched forward pass and
//! the gradient of a mini-batch.
//!
//! Input per row: the capability's embedding ([`CAPABILITY_DIM`]), the agent's embedding
//! ([`AGENT_DIM`]) and [`DENSE`] numbers (load, payload size, hints; see `crate::input`). Two
//! hidden layers of [`H1`] and [`H2`] ReLU units, and two outputs: `ln(1 + latency ms)` and the
//! logit of success. Every parameter lives in one `Vec<f32>` at the offsets below, so the
//! optimiser, persistence and a snapshot for the scheduler each treat them as one slice.
//!
//! Written by hand rather than on candle: a few thousand parameters and three small matrix
//! products need no tensor library, and candle would have added minutes to a clean build and a
//! large dependency tree for what is under two hundred lines here, gradient included (the GPU
//! path, crate `hive-gpu`, calls cuBLAS directly).

use hive_core::random::Rng;

/// Capabilities the model tells apart; tasks of others are routed without it.
pub const CAPABILITIES: usize = 64;
/// Agent identities (names) the model tells apart; others are routed without it.
pub const AGENTS: usize = 256;
pub const CAPABILITY_DIM: usize = 4;
pub const AGENT_DIM: usize = 8;
/// Task hints (`features`) the model reads, by name, first come first served.
pub const HINTS: usize = 8;
/// Load share, log of running attempts, log of payload size, then per hint its value and
/// whether the task gave it.
pub const DENSE: usize = 3 + 2 * HINTS;
pub const INPUTS: usize = CAPABILITY_DIM + AGENT_DIM + DENSE;
pub const H1: usize = 32;
pub const H2: usize = 16;
pub const OUTPUTS: usize = 2;

// Offsets into the parameter vector.
pub const CAPABILITY_EMBEDDING: usize = 0;
pub const AGENT_EMBEDDING: usize = CAPABILITY_EMBEDDING + CAPABILITIES * CAPABILITY_DIM;
pub const W1: usize = AGENT_EMBEDDING + AGENTS * AGENT_DIM;
pub const B1: usize = W1 + H1 * INPUTS;
pub const W2: usize = B1 + H1;
pub const B2: usize = W2 + H2 * H1;
pub const W3: usize = B2 + H2;
pub const B3: usize = W3 + OUTPUTS * H2;
/// Parameters in all.
pub const PARAMETERS: usize = B3 + OUTPUTS;

/// One (task, agent) pair, encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub capability: u16,
    pub agent: u16,
    pub dense: [f32; DENSE],
}

/// What the network learns from one row; a target is `None` where the attempt did not say
/// (a lost lease says nothing of the latency).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// `ln(1 + latency ms)`.
    pub log_latency: Option<f32>,
    pub succeeded: Option<bool>,
}

/// Fresh parameters: He-scaled normal weights, small embeddings, zero biases.
pub fn initial(seed: u64) -> Vec<f32> {
    let mut rng = Rng::seeded(seed);
    let mut params = vec![0.0f32; PARAMETERS];
    let mut fill = |range: std::ops::Range<usize>, scale: f64| {
        for p in &mut params[range] {
            *p = (rng.normal() * scale) as f32;
        }
    };
    fill(CAPABILITY_EMBEDDING..W1, 0.3);
    fill(W1..B1, (2.0 / INPUTS as f64).sqrt());
    fill(W2..B2, (2.0 / H1 as f64).sqrt());
    fill(W3..B3, (1.0 / H2 as f64).sqrt());
    params
}

/// The layers' outputs for a batch, kept for the backward pass; reused between calls so that a
/// forward pass allocates nothing once warm.
#[derive(Debug, Default, Clone)]
pub struct Activations {
    pub x: Vec<f32>,
    pub h1: Vec<f32>,
    pub h2: Vec<f32>,
    pub y: Vec<f32>,
}

impl Activations {
    /// Rows of the last forward pass.
    pub fn rows(&self) -> usize {
        self.y.len() / OUTPUTS
    }

    /// The outputs of row `i`: (`ln(1 + latency ms)`, success logit).
    pub fn output(&self, i: usize) -> (f32, f32) {
        (self.y[i * OUTPUTS], self.y[i * OUTPUTS + 1])
    }
}

/// Writes the input vectors of `rows` into `x` (rows x [`INPUTS`]).
pub fn gather(params: &[f32], rows: &[Row], x: &mut Vec<f32>) {
    x.clear();
    x.reserve(rows.len() * INPUTS);
    for row in rows {
        let c = CAPABILITY_EMBEDDING + usize::from(row.capability) * CAPABILITY_DIM;
        let a = AGENT_EMBEDDING + usize::from(row.agent) * AGENT_DIM;
        x.extend_from_slice(&params[c..c + CAPABILITY_DIM]);
        x.extend_from_slice(&params[a..a + AGENT_DIM]);
        x.extend_from_slice(&row.dense);
    }
}

/// The forward pass over the inputs already in `act.x`.
pub fn forward(params: &[f32], act: &mut Activations) {
    let rows = act.x.len() / INPUTS;
    act.h1.resize(rows * H1, 0.0);
    act.h2.resize(rows * H2, 0.0);
    act.y.resize(rows * OUTPUTS, 0.0);
    layer(
        &act.x,
        INPUTS,
        &params[W1..B1],
        &params[B1..W2],
        &mut act.h1,
        true,
    );
    layer(
        &act.h1,
        H1,
        &params[W2..B2],
        &params[B2..W3],
        &mut act.h2,
        true,
    );
    layer(
        &act.h2,
        H2,
        &params[W3..B3],
        &params[B3..],
        &mut act.y,
        false,
    );
}

/// `y = x W^T + b` per row, then ReLU if asked; `w` is `outputs x inputs`, row-major.
fn layer(x: &[f32], inputs: usize, w: &[f32], b: &[f32], y: &mut [f32], relu: bool) {
    let outputs = b.len();
    for (xr, yr) in x.chunks_exact(inputs).zip(y.chunks_exact_mut(outputs)) {
        for (o, (out, wr)) in yr.iter_mut().zip(w.chunks_exact(inputs)).enumerate() {
            let s = b[o] + dot(xr, wr);
            *out = if relu { s.max(0.0) } else { s };
        }
    }
}

/// A dot product in eight independent sums, which the compiler turns into SIMD.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, at) = a.split_at(a.len() / 8 * 8);
    let (bc, bt) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = at.iter().zip(bt).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// The logistic function.
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// The mean loss of the batch whose forward pass is in `act`, and its gradient added into
/// `grad`: squared error on the log latency plus cross-entropy on success, each averaged over
/// the rows that have that target.
pub fn backward(
    params: &[f32],
    rows: &[Row],
    targets: &[Target],
    act: &Activations,
    grad: &mut [f32],
) -> f32 {
    let with_latency = targets.iter().filter(|t| t.log_latency.is_some()).count();
    let with_outcome = targets.iter().filter(|t| t.succeeded.is_some()).count();
    let mut loss = 0.0;
    let (mut dh2, mut dh1, mut dx) = ([0.0f32; H2], [0.0f32; H1], [0.0f32; INPUTS]);
    for (i, (row, target)) in rows.iter().zip(targets).enumerate() {
        let (latency, logit) = act.output(i);
        let mut dy = [0.0f32; OUTPUTS];
        if let Some(t) = target.log_latency {
            let e = latency - t;
            loss += e * e / with_latency as f32;
            dy[0] = 2.0 * e / with_latency as f32;
        }
        if let Some(s) = target.succeeded {
            let s = if s { 1.0 } else { 0.0 };
            let p = sigmoid(logit);
            // -[s ln p + (1 - s) ln(1 - p)], computed from the logit so it stays finite.
            loss +=
                (logit.max(0.0) - logit * s + (-logit.abs()).exp().ln_1p()) / with_outcome as f32;
            dy[1] = (p - s) / with_outcome as f32;
        }
        let x = &act.x[i * INPUTS..(i + 1) * INPUTS];
        let h1 = &act.h1[i * H1..(i + 1) * H1];
        let h2 = &act.h2[i * H2..(i + 1) * H2];
        back_layer(&dy, h2, params, W3, B3, grad, &mut dh2);
        relu_mask(&mut dh2, h2);
        back_layer(&dh2, h1, params, W2, B2, grad, &mut dh1);
        relu_mask(&mut dh1, h1);
        back_layer(&dh1, x, params, W1, B1, grad, &mut dx);
        let c = CAPABILITY_EMBEDDING + usize::from(row.capability) * CAPABILITY_DIM;
        let a = AGENT_EMBEDDING + usize::from(row.agent) * AGENT_DIM;
        for k in 0..CAPABILITY_DIM {
            grad[c + k] += dx[k];
        }
        for k in 0..AGENT_DIM {
            grad[a + k] += dx[CAPABILITY_DIM + k];
        }
    }
    loss
}

/// For one row of a layer with weights at `w` and biases at `b`: adds `dy x input^T` to the
/// weights' gradient and `dy` to the biases', and writes the gradient with respect to the
/// layer's input into `dinput`.
fn back_layer(
    dy: &[f32],
    input: &[f32],
    params: &[f32],
    w: usize,
    b: usize,
    grad: &mut [f32],
    dinput: &mut [f32],
) {
    let inputs = input.len();
    dinput.fill(0.0);
    for (o, &d) in dy.iter().enumerate() {
        if d == 0.0 {
            continue;
        }
        grad[b + o] += d;
        let row = w + o * inputs;
        for j in 0..inputs {
            grad[row + j] += d * input[j];
            dinput[j] += d * params[row + j];
        }
    }
}

/// The gradient passes a ReLU only where its output was positive.
fn relu_mask(d: &mut [f32], out: &[f32]) {
    for (d, &o) in d.iter_mut().zip(out) {
        if o <= 0.0 {
            *d = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(capability: u16, agent: u16, seed: u64) -> Row {
        let mut rng = Rng::seeded(seed);
        let mut dense = [0.0; DENSE];
        for d in &mut dense {
            *d = rng.normal() as f32;
        }
        Row {
            capability,
            agent,
            dense,
        }
    }

    fn loss(params: &[f32], rows: &[Row], targets: &[Target]) -> f32 {
        let mut act = Activations::default();
        gather(params, rows, &mut act.x);
        forward(params, &mut act);
        let mut grad = vec![0.0; PARAMETERS];
        backward(params, rows, targets, &act, &mut grad)
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let params = initial(7);
        let rows = [row(1, 3, 1), row(2, 3, 2), row(1, 200, 3)];
        let targets = [
            Target {
                log_latency: Some(2.0),
                succeeded: Some(true),
            },
            Target {
                log_latency: None,
                succeeded: Some(false),
            },
            Target {
                log_latency: Some(0.5),
                succeeded: None,
            },
        ];
        let mut act = Activations::default();
        gather(&params, &rows, &mut act.x);
        forward(&params, &mut act);
        let mut grad = vec![0.0; PARAMETERS];
        backward(&params, &rows, &targets, &act, &mut grad);
        // A parameter of each kind: both embeddings in use, each layer's weights and biases.
        let probes = [
            CAPABILITY_EMBEDDING + CAPABILITY_DIM + 1,
            AGENT_EMBEDDING + 200 * AGENT_DIM + 5,
            W1 + 3 * INPUTS + 2,
            W1 + 7 * INPUTS + CAPABILITY_DIM + AGENT_DIM + 4,
            B1 + 9,
            W2 + 5 * H1 + 11,
            B2 + 2,
            W3 + H2 + 3,
            B3,
            B3 + 1,
        ];
        for p in probes {
            let h = 1e-2;
            let (mut up, mut down) = (params.clone(), params.clone());
            up[p] += h;
            down[p] -= h;
            let numeric = (loss(&up, &rows, &targets) - loss(&down, &rows, &targets)) / (2.0 * h);
            let tolerance = 1e-2 * numeric.abs().max(grad[p].abs()).max(1e-2);
            assert!(
                (numeric - grad[p]).abs() <= tolerance,
                "parameter {p}: analytic {} numeric {numeric}",
                grad[p]
            );
        }
        // An embedding no row uses gets no gradient.
        let unused = AGENT_EMBEDDING + 4 * AGENT_DIM;
        assert!(grad[unused..unused + AGENT_DIM].iter().all(|&g| g == 0.0));
    }

    #[test]
    fn a_batch_gives_each_row_what_it_would_get_alone() {
        let params = initial(3);
        let rows: Vec<Row> = (0..37).map(|i| row(i % 5, i * 3, u64::from(i))).collect();
        let mut batch = Activations::default();
        gather(&params, &rows, &mut batch.x);
        forward(&params, &mut batch);
        assert_eq!(batch.rows(), rows.len());
        for (i, r) in rows.iter().enumerate() {
            let mut one = Activations::default();
            gather(&params, std::slice::from_ref(r), &mut one.x);
            forward(&params, &mut one);
            assert_eq!(one.output(0), batch.output(i));
        }
    }
}
