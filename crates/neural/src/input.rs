//! What the model reads of a (task, agent) pair, and the names it knows.
//!
//! The [`Vocab`] gives each capability, agent identity and hint name the model has learned from
//! an index, first come first served up to [`CAPABILITIES`], [`AGENTS`] and [`HINTS`]; a name
//! past those is not learned from, and a pair whose capability or agent the model does not know
//! gets no prediction (routing then uses what `learned` believes of that agent). The names are
//! kept for the model's life (and saved with it): once 256 agent names are known, a new name is
//! never learned. An agent is predicted only after [`MIN_AGENT_SAMPLES`] of its attempts were
//! learned from: before that its embedding is still the random one it started with.
//!
//! The numbers ([`DENSE`]), each scaled to about 0-1 so no input dominates the first layer:
//! - the agent's load: attempts it runs over its slots (at most 2), and `ln(1 + running) / 4`;
//! - the payload's size: `ln(1 + bytes) / 14` (1 MiB reads as 1);
//! - per known hint: `sign(v) ln(1 + |v|) / 10`, and 1 where the task gave it (0 and 0 where it
//!   did not, so a missing hint is not read as the value 0).

use std::collections::HashMap;
use std::sync::Arc;

use hive_core::task::Feature;

use crate::mlp::{AGENTS, CAPABILITIES, DENSE, HINTS, Row};

/// Attempts of an agent learned from before its predictions are used.
pub const MIN_AGENT_SAMPLES: u64 = 16;

/// The task's side of a pair.
#[derive(Debug, Clone, Copy)]
pub struct TaskInput<'a> {
    pub capability: &'a str,
    pub payload_bytes: usize,
    pub features: &'a [Feature],
}

/// The agent's side of a pair.
#[derive(Debug, Clone, Copy)]
pub struct AgentInput<'a> {
    pub identity: &'a str,
    /// Attempts it runs besides the one predicted.
    pub running: u32,
    pub slots: u32,
}

/// Names to indices; see the module's header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocab {
    pub(crate) capabilities: Names,
    pub(crate) agents: Names,
    pub(crate) hints: Names,
    /// Attempts learned from per agent index.
    pub(crate) agent_samples: Vec<u64>,
    /// Per capability index, its typical task's numbers (an average of the tasks learned from,
    /// see [`Vocab::learn_typical`]; the agent's part left 0), and the tasks averaged: what
    /// people are shown predictions for.
    pub(crate) typical: Vec<[f32; DENSE]>,
    pub(crate) typical_count: Vec<u64>,
}

/// The least weight of a new task in its capability's typical one: the last thousand or so
/// count.
pub const TYPICAL_WEIGHT: f32 = 1e-3;

/// One kind of name, indexed in the order first seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Names {
    pub(crate) names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u16>,
}

impl Names {
    pub(crate) fn from_names(names: Vec<Arc<str>>) -> Names {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u16))
            .collect();
        Names { names, index }
    }

    fn get(&self, name: &str) -> Option<u16> {
        self.index.get(name).copied()
    }

    /// The name's index, given one if there is room.
    fn learn(&mut self, name: &str, limit: usize) -> Option<u16> {
        if let Some(i) = self.get(name) {
            return Some(i);
        }
        if self.names.len() >= limit {
            return None;
        }
        let name: Arc<str> = name.into();
        let i = self.names.len() as u16;
        self.names.push(name.clone());
        self.index.insert(name, i);
        Some(i)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    fn has_room_for(&self, name: &str, limit: usize) -> bool {
        self.index.contains_key(name) || self.names.len() < limit
    }

    /// Whether no name repeats (a decoded list must not).
    pub(crate) fn distinct(&self) -> bool {
        self.index.len() == self.names.len()
    }
}

impl Vocab {
    /// The encoded pair, or `None` if the model does not know the capability or the agent, or
    /// has not learned enough of the agent yet.
    pub fn encode(&self, task: &TaskInput<'_>, agent: &AgentInput<'_>) -> Option<Row> {
        let capability = self.capabilities.get(task.capability)?;
        let index = self.agents.get(agent.identity)?;
        if self.agent_samples[usize::from(index)] < MIN_AGENT_SAMPLES {
            return None;
        }
        let dense = dense_of(task, agent, |name| self.hints.get(name));
        Some(Row {
            capability,
            agent: index,
            dense,
        })
    }

    /// The task's side of [`Vocab::encode`], for many agents: its capability's index and its
    /// numbers with the agent's part left 0 (see [`Vocab::encode_for`]).
    pub fn encode_task(&self, task: &TaskInput<'_>) -> Option<(u16, [f32; DENSE])> {
        let capability = self.capabilities.get(task.capability)?;
        let idle = AgentInput {
            identity: "",
            running: 0,
            slots: 1,
        };
        Some((
            capability,
            dense_of(task, &idle, |name| self.hints.get(name)),
        ))
    }

    /// [`Vocab::encode`] from the task's side already encoded: the same row, without looking
    /// the capability and the hints up again for each agent.
    pub fn encode_for(&self, task: (u16, [f32; DENSE]), agent: &AgentInput<'_>) -> Option<Row> {
        let index = self.agents.get(agent.identity)?;
        if self.agent_samples[usize::from(index)] < MIN_AGENT_SAMPLES {
            return None;
        }
        let (capability, mut dense) = task;
        dense[..AGENT_PART].copy_from_slice(&load(agent));
        Some(Row {
            capability,
            agent: index,
            dense,
        })
    }

    /// The encoded pair for learning from an attempt, its names added to the vocabulary where
    /// there is room; `None` where there is not.
    pub fn learn(&mut self, task: &TaskInput<'_>, agent: &AgentInput<'_>) -> Option<Row> {
        // Both names or neither: a capability learned for an agent that is not would have no
        // typical task.
        if !self
            .capabilities
            .has_room_for(task.capability, CAPABILITIES)
            || !self.agents.has_room_for(agent.identity, AGENTS)
        {
            return None;
        }
        let capability = self.capabilities.learn(task.capability, CAPABILITIES)?;
        let index = self.agents.learn(agent.identity, AGENTS)?;
        if self.agent_samples.len() < self.agents.len() {
            self.agent_samples.resize(self.agents.len(), 0);
        }
        self.agent_samples[usize::from(index)] += 1;
        let hints = &mut self.hints;
        let dense = dense_of(task, agent, |name| hints.learn(name, HINTS));
        self.learn_typical(capability, &dense);
        Some(Row {
            capability,
            agent: index,
            dense,
        })
    }

    /// A capability's typical task on an idle agent, encoded; `None` as [`Vocab::encode`].
    pub fn encode_typical(&self, capability: &str, identity: &str, slots: u32) -> Option<Row> {
        let capability = self.capabilities.get(capability)?;
        let index = self.agents.get(identity)?;
        if self.agent_samples[usize::from(index)] < MIN_AGENT_SAMPLES {
            return None;
        }
        let mut dense = *self.typical.get(usize::from(capability))?;
        let idle = AgentInput {
            identity,
            running: 0,
            slots,
        };
        dense[..AGENT_PART].copy_from_slice(&load(&idle));
        Some(Row {
            capability,
            agent: index,
            dense,
        })
    }

    /// Moves the capability's typical task toward this one: the plain mean of its first
    /// thousand tasks, then a moving average that weighs the last thousand or so.
    fn learn_typical(&mut self, capability: u16, dense: &[f32; DENSE]) {
        let i = usize::from(capability);
        if self.typical.len() <= i {
            self.typical.resize(i + 1, [0.0; DENSE]);
            self.typical_count.resize(i + 1, 0);
        }
        self.typical_count[i] += 1;
        let weight = (1.0 / self.typical_count[i] as f32).max(TYPICAL_WEIGHT);
        let typical = &mut self.typical[i];
        for (t, d) in typical.iter_mut().zip(dense).skip(AGENT_PART) {
            *t += weight * (d - *t);
        }
    }

    /// The capabilities the model knows, in the order first seen.
    pub fn capabilities(&self) -> &[Arc<str>] {
        &self.capabilities.names
    }
}

/// The leading numbers that describe the agent (its load), not the task.
const AGENT_PART: usize = 2;

/// The agent's numbers: its load.
fn load(agent: &AgentInput<'_>) -> [f32; AGENT_PART] {
    let slots = agent.slots.max(1) as f32;
    [
        (agent.running as f32 / slots).min(2.0),
        (agent.running as f32).ln_1p() / 4.0,
    ]
}

/// The numbers of a pair; `hint_slot` says where each hint goes, if anywhere.
fn dense_of(
    task: &TaskInput<'_>,
    agent: &AgentInput<'_>,
    mut hint_slot: impl FnMut(&str) -> Option<u16>,
) -> [f32; DENSE] {
    let mut dense = [0.0f32; DENSE];
    dense[..AGENT_PART].copy_from_slice(&load(agent));
    dense[2] = (task.payload_bytes as f32).ln_1p() / 14.0;
    for feature in task.features {
        if let Some(slot) = hint_slot(&feature.name) {
            let v = feature.value;
            dense[3 + 2 * usize::from(slot)] = (v.signum() * v.abs().ln_1p() / 10.0) as f32;
            dense[4 + 2 * usize::from(slot)] = 1.0;
        }
    }
    dense
}
