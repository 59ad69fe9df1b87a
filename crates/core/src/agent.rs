//! The agent model: what a worker announces ([`AgentSpec`]), the states it moves through, and the
//! per-capability counters routing learns from.

use std::fmt;
use std::sync::Arc;

use crate::estimate::RoutingView;
use crate::ids::AgentId;
use crate::task::Capability;
use crate::time::Timestamp;

/// What a worker announces when it connects.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    pub name: String,
    /// Capability name and level, 0.0 (barely) to 1.0 (expert).
    pub capabilities: Vec<(Capability, f64)>,
    /// How many tasks it runs at once.
    pub slots: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Connected, nothing running.
    Idle,
    /// Connected, at least one task running.
    Busy,
    /// Connected, finishing what it runs, taking nothing new.
    Draining,
    /// Disconnected or silent past the heartbeat timeout.
    Offline,
}

impl AgentState {
    pub const ALL: [AgentState; 4] = [
        AgentState::Idle,
        AgentState::Busy,
        AgentState::Draining,
        AgentState::Offline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Idle => "idle",
            AgentState::Busy => "busy",
            AgentState::Draining => "draining",
            AgentState::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<AgentState> {
        AgentState::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcomes of one agent on one capability.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CapabilityStats {
    pub completed: u64,
    pub failed: u64,
    /// Sum of the run times of completed attempts, for the mean.
    pub total_latency_ms: u64,
}

impl CapabilityStats {
    pub fn mean_latency_ms(&self) -> Option<f64> {
        (self.completed > 0).then(|| self.total_latency_ms as f64 / self.completed as f64)
    }
}

/// A point-in-time copy of an agent, for the API and the store.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSnapshot {
    pub id: AgentId,
    /// The scheduler's own, shared: a listing of a thousand agents copies no names.
    pub spec: Arc<AgentSpec>,
    pub state: AgentState,
    pub running: u32,
    pub connected_at: Timestamp,
    pub last_heartbeat: Timestamp,
    pub stats: Vec<(Capability, CapabilityStats)>,
    /// What routing believes of the agent's identity on each of its capabilities.
    pub routing: Vec<(Capability, RoutingView)>,
}

impl AgentSpec {
    pub const MAX_SLOTS: u32 = 10_000;
    pub const MAX_NAME_LEN: usize = 128;
    pub const MAX_CAPABILITIES: usize = 256;

    pub fn validate(&self) -> Result<(), crate::task::ValidationError> {
        use crate::task::ValidationError;
        if self.name.is_empty() || self.name.len() > Self::MAX_NAME_LEN {
            return Err(ValidationError::new("name", "must be 1 to 128 bytes long"));
        }
        if self.capabilities.len() > Self::MAX_CAPABILITIES {
            return Err(ValidationError::new(
                "capabilities",
                format!(
                    "{} named, at most {}",
                    self.capabilities.len(),
                    Self::MAX_CAPABILITIES
                ),
            ));
        }
        if self.capabilities.is_empty() {
            return Err(ValidationError::new(
                "capabilities",
                "at least one capability is required",
            ));
        }
        for (cap, level) in &self.capabilities {
            if !(0.0..=1.0).contains(level) {
                return Err(ValidationError::new(
                    format!("capabilities.{cap}"),
                    "level must be between 0.0 and 1.0",
                ));
            }
        }
        if !(1..=Self::MAX_SLOTS).contains(&self.slots) {
            return Err(ValidationError::new("slots", "must be between 1 and 10000"));
        }
        Ok(())
    }
}
