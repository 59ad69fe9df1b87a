//! Hive's domain core: tasks, agents, the scheduler that matches them, and the rules for leases,
//! retries, priority aging and fencing.
//!
//! This crate does no I/O: no async runtime, no database, no network. Time comes in as a
//! [`Timestamp`] argument (see [`Clock`]), and every decision the scheduler takes comes out as a
//! [`Change`] that the caller persists and carries out. That keeps every timing rule testable
//! without sleeping and keeps routing decided in exactly one place.
//!
//! # Layout
//! - [`time`]: `Timestamp` and the `Clock` trait.
//! - [`ids`]: `TaskId`, `AgentId` (UUIDv7, sortable by creation time).
//! - [`task`]: the task model, its validation and status state machine.
//! - [`agent`]: the agent model, its states and per-capability counters.
//! - [`backoff`]: exponential backoff with deterministic jitter.
//! - [`consensus`]: what a consensus task asks for and what counts as agreeing.
//! - [`queue`]: the per-capability ready queue with priority aging.
//! - [`estimate`]: what routing learns of an agent identity on a capability.
//! - [`random`]: seeded randomness for the policies.
//! - [`routing`]: the `RoutingPolicy` trait and the policies: least-loaded, p2c-EWMA, learned.
//! - [`scheduler`]: the `Scheduler` itself and the `Change`s it emits.

pub mod agent;
pub mod backoff;
pub mod consensus;
pub mod estimate;
pub mod ids;
pub mod queue;
pub mod random;
pub mod routing;
pub mod scheduler;
pub mod task;
pub mod time;

pub use agent::{AgentSnapshot, AgentSpec, AgentState, CapabilityStats};
pub use backoff::Backoff;
pub use consensus::ConsensusSpec;
pub use estimate::{Estimate, LearningConfig, RoutingView};
pub use ids::{AgentId, IdParseError, TaskId};
pub use routing::{
    Candidate, Learned, LeastLoaded, Neural, Observation, P2cEwma, PolicyKind, Prediction,
    Predictor, Route, RoutingPolicy,
};
pub use scheduler::{
    CancelError, Change, DrainError, HeldAttempt, LearnedEstimate, NextStatus, RecoveredReplica,
    RecoveredTask, Rejoined, Report, ReportError, Scheduler, SchedulerConfig, SchedulerMemory,
    SpareSlots, SubmitError,
};
pub use task::{
    AttemptOutcome, Capability, Feature, OnParentFailure, TaskEnd, TaskLimits, TaskSpec,
    TaskStatus, ValidationError,
};
pub use time::{Clock, SystemClock, Timestamp};
