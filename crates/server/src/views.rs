//! Conversions between the API's wire types and the domain: building a validated [`TaskSpec`]
//! from a submitted [`NewTask`], and rendering stored tasks (agents: [`crate::agent_view`]).

use std::sync::Arc;

use hive_core::consensus::vote_of;
use hive_core::routing::PolicyKind;
use hive_core::{
    AgentState, AttemptOutcome, Backoff, Capability, ConsensusSpec, Feature, OnParentFailure,
    TaskId, TaskLimits, TaskSpec, TaskStatus, Timestamp,
};
use hive_proto::RawValue;
use hive_proto::api;
use hive_store::StoredTask;
use uuid::Uuid;

use crate::error::ApiError;

/// The domain's words as the wire's. The matches are exhaustive both ways, so a word added to
/// either side fails to compile here until the other has it.
pub fn task_status(status: TaskStatus) -> api::TaskStatus {
    match status {
        TaskStatus::Waiting => api::TaskStatus::Waiting,
        TaskStatus::Queued => api::TaskStatus::Queued,
        TaskStatus::Running => api::TaskStatus::Running,
        TaskStatus::Succeeded => api::TaskStatus::Succeeded,
        TaskStatus::Failed => api::TaskStatus::Failed,
        TaskStatus::Cancelled => api::TaskStatus::Cancelled,
    }
}

/// An id as the API writes it: a lowercase hyphenated UUID in quotes (it needs no escaping).
pub fn write_id(out: &mut hive_proto::fast_json::Writer, id: &Uuid) {
    out.bytes(b"\"");
    out.bytes(
        id.hyphenated()
            .encode_lower(&mut [0; uuid::fmt::Hyphenated::LENGTH])
            .as_bytes(),
    );
    out.bytes(b"\"");
}

/// The wire's status as the domain's (a query's filter).
pub fn domain_status(status: api::TaskStatus) -> TaskStatus {
    match status {
        api::TaskStatus::Waiting => TaskStatus::Waiting,
        api::TaskStatus::Queued => TaskStatus::Queued,
        api::TaskStatus::Running => TaskStatus::Running,
        api::TaskStatus::Succeeded => TaskStatus::Succeeded,
        api::TaskStatus::Failed => TaskStatus::Failed,
        api::TaskStatus::Cancelled => TaskStatus::Cancelled,
    }
}

pub fn attempt_outcome(outcome: AttemptOutcome) -> api::AttemptOutcome {
    match outcome {
        AttemptOutcome::Succeeded => api::AttemptOutcome::Succeeded,
        AttemptOutcome::Failed => api::AttemptOutcome::Failed,
        AttemptOutcome::LeaseExpired => api::AttemptOutcome::LeaseExpired,
        AttemptOutcome::Cancelled => api::AttemptOutcome::Cancelled,
        AttemptOutcome::Released => api::AttemptOutcome::Released,
    }
}

pub fn agent_state(state: AgentState) -> api::AgentState {
    match state {
        AgentState::Idle => api::AgentState::Idle,
        AgentState::Busy => api::AgentState::Busy,
        AgentState::Draining => api::AgentState::Draining,
        AgentState::Offline => api::AgentState::Offline,
    }
}

pub fn routing_policy(policy: PolicyKind) -> api::RoutingPolicy {
    match policy {
        PolicyKind::LeastLoaded => api::RoutingPolicy::LeastLoaded,
        PolicyKind::P2cEwma => api::RoutingPolicy::P2cEwma,
        PolicyKind::Learned => api::RoutingPolicy::Learned,
        PolicyKind::Neural => api::RoutingPolicy::Neural,
    }
}

pub fn rfc3339(t: Timestamp) -> String {
    let text = hive_proto::fast_json::rfc3339_millis(t.0);
    String::from_utf8_lossy(&text).into_owned()
}

/// Validates a submitted task, the `at`-th of a batch or (`None`) one on its own; errors name
/// the field under `tasks[at]` in a batch.
pub fn spec_from_new(
    new: api::NewTask,
    now: Timestamp,
    limits: &TaskLimits,
    at: Option<usize>,
    submitted_by: Option<&std::sync::Arc<str>>,
) -> Result<TaskSpec, ApiError> {
    // Field names are made only for an error: two `format!`s per accepted task (the prefix and
    // the capability's name) were ~2.5% of a batched task's instructions.
    let prefix = || at.map(|i| format!("tasks[{i}]")).unwrap_or_default();
    let invalid = |e| ApiError::from_validation(e, &prefix());
    let field = |name: &str| match at {
        None => name.to_string(),
        Some(i) => format!("tasks[{i}].{name}"),
    };
    let capability = Capability::parse(&new.capability, "capability").map_err(invalid)?;
    let payload: Arc<str> = match new.payload {
        Some(raw) => Arc::from(Box::<str>::from(raw)),
        None => Arc::from("null"),
    };
    let depends_on = new
        .depends_on
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, id)| {
            id.parse::<TaskId>()
                .map_err(|e| ApiError::invalid(field(&format!("depends_on[{i}]")), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let base_ms = new.backoff_ms.unwrap_or(Backoff::default().base_ms);
    let spec = TaskSpec {
        id: TaskId(Uuid::now_v7()),
        capability,
        payload,
        priority: new.priority.unwrap_or(TaskSpec::DEFAULT_PRIORITY),
        max_attempts: new.max_attempts.unwrap_or(TaskSpec::DEFAULT_MAX_ATTEMPTS),
        timeout_ms: new.timeout_ms.unwrap_or(TaskSpec::DEFAULT_TIMEOUT_MS),
        backoff: Backoff {
            base_ms,
            max_ms: Backoff::default().max_ms.max(base_ms),
        },
        idempotency_key: new.idempotency_key,
        depends_on,
        on_parent_failure: match new.on_parent_failure {
            Some(api::OnParentFailure::Run) => OnParentFailure::Run,
            Some(api::OnParentFailure::Fail) | None => OnParentFailure::Fail,
        },
        consensus: ConsensusSpec::from_fields(new.replicas, new.quorum, new.vote.as_deref())
            .map_err(invalid)?
            .map(Box::new),
        created_at: now,
        submitted_by: submitted_by.cloned(),
        features: Feature::from_pairs(new.features.unwrap_or_default()),
    };
    spec.validate(limits).map_err(invalid)?;
    Ok(spec)
}

/// Stored JSON text as a raw value. The text was validated when it was accepted; should the
/// store hand back something else, the value reads `null` rather than failing the request.
pub fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_string())
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("valid JSON"))
}

/// A task just accepted, before any attempt.
pub fn new_task(spec: &TaskSpec, status: TaskStatus) -> api::Task {
    api::Task {
        id: spec.id.to_string(),
        status: task_status(status),
        capability: spec.capability.to_string(),
        payload: raw(&spec.payload),
        priority: spec.priority,
        max_attempts: spec.max_attempts,
        timeout_ms: spec.timeout_ms,
        backoff_ms: spec.backoff.base_ms,
        idempotency_key: spec.idempotency_key.clone(),
        depends_on: spec.depends_on.iter().map(ToString::to_string).collect(),
        on_parent_failure: match spec.on_parent_failure {
            OnParentFailure::Run => api::OnParentFailure::Run,
            OnParentFailure::Fail => api::OnParentFailure::Fail,
        },
        attempts: Vec::new(),
        result: None,
        error: None,
        created_at: rfc3339(spec.created_at),
        updated_at: rfc3339(spec.created_at),
        submitted_by: spec.submitted_by.as_deref().map(str::to_string),
        replicas: spec.consensus.as_ref().map(|c| u32::from(c.replicas)),
        quorum: spec.consensus.as_ref().map(|c| u32::from(c.quorum)),
        vote: spec
            .consensus
            .as_ref()
            .and_then(|c| c.vote.as_deref().map(str::to_string)),
        features: spec
            .features
            .as_deref()
            .map(|fs| fs.iter().map(|f| (f.name.to_string(), f.value)).collect()),
        votes: spec.consensus.as_ref().map(|_| Vec::new()),
        dissenters: None,
        progress: None,
    }
}

/// `detail`: a task's own page, with its replicas' results and votes (left out of listings).
pub fn stored_task(task: StoredTask, detail: bool) -> api::Task {
    let mut view = new_task(&task.spec, task.status);
    view.result = task.result.as_deref().map(raw);
    view.error = task.error;
    view.updated_at = rfc3339(task.updated_at);
    view.attempts = task
        .attempt_log
        .into_iter()
        .map(|a| api::Attempt {
            attempt: a.attempt,
            agent_id: a.agent.map(|id| id.to_string()),
            started_at: rfc3339(a.started_at),
            ended_at: a.ended_at.map(rfc3339),
            outcome: a.outcome.map(attempt_outcome),
            error: a.error,
            output: a.output.as_deref().map(raw),
        })
        .collect();
    if !detail {
        view.votes = None;
    } else if let Some(consensus) = &task.spec.consensus {
        let agreed = (task.status == TaskStatus::Succeeded)
            .then(|| task.result.as_deref().and_then(|r| vote_of(r, None).ok()))
            .flatten();
        let votes = votes(&view.attempts, consensus, agreed.as_deref());
        if agreed.is_some() {
            let dissenters = votes.iter().filter(|v| !v.agreed);
            view.dissenters = Some(dissenters.filter_map(|v| v.agent_id.clone()).collect());
        }
        view.votes = Some(votes);
    }
    view
}

/// The votes of a consensus task's replicas: each successful attempt's value, and whether it is
/// the agreed one (canonical JSON, as the scheduler compared them).
fn votes(
    attempts: &[api::Attempt],
    consensus: &ConsensusSpec,
    agreed: Option<&str>,
) -> Vec<api::Vote> {
    attempts
        .iter()
        .filter(|a| a.outcome == Some(api::AttemptOutcome::Succeeded))
        .filter_map(|a| {
            let value = vote_of(a.output.as_ref()?.get(), consensus.vote.as_deref()).ok()?;
            Some(api::Vote {
                attempt: a.attempt,
                agent_id: a.agent_id.clone(),
                agreed: agreed == Some(value.as_str()),
                value: raw(&value),
            })
        })
        .collect()
}

pub fn token(record: &hive_store::StoredToken) -> api::TokenInfo {
    api::TokenInfo {
        name: record.name.clone(),
        // Only the hub writes roles, from the enum. A row edited by hand to another word lists
        // as `read`, the least it could be; `Tokens::verify` refuses such a token whatever it
        // says.
        role: record.role.parse().unwrap_or(api::Role::Read),
        capabilities: record.capabilities.clone(),
        groups: record.groups.clone(),
        created_at: rfc3339(record.created_at),
        revoked_at: record.revoked_at.map(rfc3339),
        expires_at: record.expires_at.map(rfc3339),
    }
}
