//! The model as bytes, for the store: the weights, the vocabulary and the optimiser's state, so a
//! restarted hub predicts and goes on learning where it stopped. (The replay ring is not kept: it
//! refills with the next few thousand attempts.)
//!
//! Layout, little-endian: the magic `HIVENN`, the format version (u16), the parameter count
//! (u32; a model of another shape is refused, not misread), attempts learned from (u64), Adam's
//! step (u64), the capability, agent and hint names (each a u32 count, then per name a u32
//! length and UTF-8), the attempts learned per agent (u32 count, u64 each), each capability's
//! typical task (u32 count, then per capability the tasks averaged, u64, and [`DENSE`] f32),
//! then the parameters and Adam's two moments (f32 each). Decoding checks every count against
//! the model's limits, so no saved blob can make an index out of range later.

use std::sync::Arc;

use crate::input::{Names, Vocab};
use crate::mlp::{AGENTS, CAPABILITIES, DENSE, HINTS, PARAMETERS};
use crate::model::{Adam, Model, Weights};

const MAGIC: &[u8; 6] = b"HIVENN";
const VERSION: u16 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a saved model (no HIVENN header)")]
    NotAModel,
    #[error("saved by format version {0}; this hub reads version {VERSION}")]
    Version(u16),
    #[error("the saved model has {saved} parameters, this hub's has {PARAMETERS}")]
    Shape { saved: u32 },
    #[error("the saved model ends early or holds a bad name")]
    Truncated,
    #[error("the saved model's vocabulary is inconsistent: {0}")]
    Vocabulary(&'static str),
}

/// The model's lasting state as bytes.
pub fn encode(model: &Model) -> Vec<u8> {
    let (weights, adam) = (&model.weights, &model.adam);
    let mut out = Vec::with_capacity(64 + PARAMETERS * 12);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(PARAMETERS as u32).to_le_bytes());
    out.extend_from_slice(&weights.trained.to_le_bytes());
    out.extend_from_slice(&adam.step.to_le_bytes());
    let vocab = &weights.vocab;
    for names in [&vocab.capabilities, &vocab.agents, &vocab.hints] {
        out.extend_from_slice(&(names.names.len() as u32).to_le_bytes());
        for name in &names.names {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(&(vocab.agent_samples.len() as u32).to_le_bytes());
    for n in &vocab.agent_samples {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(vocab.typical.len() as u32).to_le_bytes());
    for (typical, n) in vocab.typical.iter().zip(&vocab.typical_count) {
        out.extend_from_slice(&n.to_le_bytes());
        for v in typical {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    for values in [&weights.params, &adam.m, &adam.v] {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// A model from [`encode`]'s bytes; `seed` draws its batches from now on.
pub fn decode(bytes: &[u8], seed: u64) -> Result<Model, DecodeError> {
    let mut r = Reader(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err(DecodeError::NotAModel);
    }
    let version = u16::from_le_bytes(r.array()?);
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let saved = u32::from_le_bytes(r.array()?);
    if saved as usize != PARAMETERS {
        return Err(DecodeError::Shape { saved });
    }
    let trained = u64::from_le_bytes(r.array()?);
    let step = u64::from_le_bytes(r.array()?);
    let capabilities = r.names()?;
    let agents = r.names()?;
    let hints = r.names()?;
    let count = u32::from_le_bytes(r.array()?) as usize;
    if count != agents.len() {
        return Err(DecodeError::Vocabulary("a count per agent"));
    }
    let agent_samples = (0..count)
        .map(|_| r.array().map(u64::from_le_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let count = u32::from_le_bytes(r.array()?) as usize;
    if count != capabilities.len() {
        return Err(DecodeError::Vocabulary("a typical task per capability"));
    }
    let (mut typical, mut typical_count) = (Vec::new(), Vec::new());
    for _ in 0..count {
        typical_count.push(u64::from_le_bytes(r.array()?));
        let floats = r.floats(DENSE)?;
        typical.push(floats.try_into().expect("DENSE floats"));
    }
    let params = r.floats(PARAMETERS)?;
    let m = r.floats(PARAMETERS)?;
    let v = r.floats(PARAMETERS)?;
    if !r.0.is_empty() {
        return Err(DecodeError::Truncated);
    }
    for (names, limit) in [
        (&capabilities, CAPABILITIES),
        (&agents, AGENTS),
        (&hints, HINTS),
    ] {
        if names.len() > limit || !names.distinct() {
            return Err(DecodeError::Vocabulary(
                "more names than the model tells apart, or a name twice",
            ));
        }
    }
    let vocab = Vocab {
        capabilities,
        agents,
        hints,
        agent_samples,
        typical,
        typical_count,
    };
    Ok(Model::from_parts(
        Weights {
            vocab,
            params,
            trained,
        },
        Adam { m, v, step },
        seed,
    ))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn names(&mut self) -> Result<Names, DecodeError> {
        let count = u32::from_le_bytes(self.array()?) as usize;
        let mut names = Vec::new();
        for _ in 0..count {
            let len = u32::from_le_bytes(self.array()?) as usize;
            let name = std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError::Truncated)?;
            names.push(Arc::<str>::from(name));
        }
        Ok(Names::from_names(names))
    }

    fn floats(&mut self, n: usize) -> Result<Vec<f32>, DecodeError> {
        let bytes = self.take(n * 4)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }
}
