//! A small neural network that predicts, for a (task, agent) pair, the attempt's latency and its
//! probability of success, for the `neural` routing policy (`hive_core::routing::Neural`).
//!
//! - [`mlp`]: the network (a few thousand parameters), its batched forward pass and gradient;
//! - [`input`]: what it reads of a pair, and the names it knows;
//! - [`model`]: weights, online training from ended attempts (Adam over a replay ring), and the
//!   error on attempts before they are learned from;
//! - [`persist`]: the model as bytes for the store;
//! - [`shared`]: the model between the scheduler (predicts, never waits) and the trainer.
//!
//! No I/O here: the hub decides where training runs and where the bytes go.

pub mod input;
pub mod mlp;
pub mod model;
pub mod persist;
pub mod shared;

pub use input::{AgentInput, TaskInput, Vocab};
pub use model::{Evaluation, Model, Sample, Weights};
pub use persist::{DecodeError, decode, encode};
pub use shared::{SharedModel, Totals, Trainer};

#[cfg(test)]
mod tests;
