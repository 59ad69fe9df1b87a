//! The answer to `POST /tasks`: the task just accepted, as JSON, written straight from its spec
//! before the spec is handed to the scheduler, and finished with its status once that is known.
//! Building the API's [`api::Task`] for it copied the spec (to keep one for the answer), copied
//! and parsed the payload again and made strings of the id and the capability (BENCHMARKS.md,
//! "One payload from the request to the frame"). The bytes are serde's of [`views::new_task`]'s
//! view: the tests compare them. Consensus tasks and tasks with features, whose views carry more,
//! still go through that view.

use hive_core::{OnParentFailure, TaskSpec, TaskStatus};
use hive_proto::api;
use hive_proto::fast_json::Writer;

use crate::views;

/// A submitted task's view, but for its status.
pub enum Accepted {
    /// Written, the status to go at `status_at`.
    Written { bytes: Vec<u8>, status_at: usize },
    /// Kept to build [`views::new_task`]'s view from.
    Spec(Box<TaskSpec>),
}

impl Accepted {
    pub fn of(spec: &TaskSpec) -> Accepted {
        if spec.consensus.is_some() || spec.features.is_some() {
            return Accepted::Spec(Box::new(spec.clone()));
        }
        let mut out = Writer::with_capacity(320 + spec.payload.len());
        out.bytes(br#"{"id":"#);
        views::write_id(&mut out, &spec.id.0);
        out.bytes(br#","status":"#);
        let status_at = out.len();
        write_rest(&mut out, spec);
        Accepted::Written {
            bytes: out.into_bytes(),
            status_at,
        }
    }

    /// The answer's body, now that the task's status is known.
    pub fn with_status(self, status: TaskStatus) -> Vec<u8> {
        match self {
            Accepted::Written {
                mut bytes,
                status_at,
            } => {
                let status =
                    serde_json::to_vec(&views::task_status(status)).expect("a status serialises");
                bytes.splice(status_at..status_at, status);
                bytes
            }
            Accepted::Spec(spec) => hive_proto::fast_json::task(&views::new_task(&spec, status)),
        }
    }
}

/// Everything after the status, for a task without consensus or features.
fn write_rest(out: &mut Writer, spec: &TaskSpec) {
    let TaskSpec {
        id: _,
        capability,
        payload,
        priority,
        max_attempts,
        timeout_ms,
        backoff,
        idempotency_key,
        depends_on,
        on_parent_failure,
        consensus: _,
        created_at,
        submitted_by,
        features: _,
    } = spec;
    out.bytes(br#","capability":"#);
    out.string(capability.as_str());
    out.bytes(br#","payload":"#);
    // JSON text validated when the task was accepted: as it is, as serde writes a raw value.
    out.bytes(payload.as_bytes());
    out.bytes(br#","priority":"#);
    out.number(*priority);
    out.bytes(br#","max_attempts":"#);
    out.number(*max_attempts);
    out.bytes(br#","timeout_ms":"#);
    out.number(*timeout_ms);
    out.bytes(br#","backoff_ms":"#);
    out.number(backoff.base_ms);
    out.bytes(br#","idempotency_key":"#);
    match idempotency_key {
        Some(key) => out.string(key),
        None => out.bytes(b"null"),
    }
    out.bytes(br#","depends_on":"#);
    out.list(depends_on, |out, id| views::write_id(out, &id.0));
    out.bytes(br#","on_parent_failure":"#);
    out.value(&match on_parent_failure {
        OnParentFailure::Run => api::OnParentFailure::Run,
        OnParentFailure::Fail => api::OnParentFailure::Fail,
    });
    out.bytes(br#","attempts":[],"result":null,"error":null,"created_at":"#);
    out.timestamp(created_at.0);
    out.bytes(br#","updated_at":"#);
    out.timestamp(created_at.0);
    out.present(
        br#","submitted_by":"#,
        submitted_by.as_deref(),
        Writer::string,
    );
    out.bytes(b"}");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hive_core::{ConsensusSpec, Feature, TaskId, Timestamp};

    use super::*;

    fn check(spec: &TaskSpec) {
        for status in [TaskStatus::Queued, TaskStatus::Running, TaskStatus::Waiting] {
            let written = Accepted::of(spec).with_status(status);
            let serdes = serde_json::to_vec(&views::new_task(spec, status)).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(serdes).unwrap()
            );
        }
    }

    #[test]
    fn the_answer_is_serdes_bytes_of_the_tasks_view() {
        let plain = crate::assign_frame::tests::spec(1, "echo", r#"{"n": 1, "t":"\u00e9\n"}"#);
        check(&plain);
        let mut full = (*plain).clone();
        full.idempotency_key = Some("order \"7\"\\é".into());
        full.depends_on = vec![
            TaskId(uuid::Uuid::from_u128(5)),
            TaskId(uuid::Uuid::from_u128(u128::MAX)),
        ];
        full.on_parent_failure = OnParentFailure::Run;
        full.submitted_by = Some(Arc::from("ci-token"));
        full.created_at = Timestamp(1_764_892_800_123);
        full.payload = "null".into();
        check(&full);
        // Written through the API's view, with what only it carries.
        let mut voted = full.clone();
        voted.consensus = ConsensusSpec::from_fields(Some(3), Some(2), None)
            .unwrap()
            .map(Box::new);
        assert!(matches!(Accepted::of(&voted), Accepted::Spec(_)));
        check(&voted);
        let mut featured = full;
        featured.features = Feature::from_pairs(vec![("size".into(), 2.5)]);
        check(&featured);
    }
}
