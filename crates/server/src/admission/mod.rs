//! Admission control: how much work may wait inside the hub before new work is refused.
//!
//! A submit waits twice inside the hub: for the scheduler actor, then for the group commit. Past
//! the hub's capacity those waits would grow without bound (latency for everyone, memory that
//! follows the offered load), so both are bounded here and a submit over a bound is answered at
//! once: `503 overloaded` with `Retry-After`. What was admitted stays fast.
//!
//! Three bounds, each a semaphore taken without waiting:
//! - submit requests in flight: each is one from when its body has been read and parsed until it
//!   is answered; with the hub's throughput this bounds the queueing delay an admitted request
//!   sees. A submit is refused before its body is read when no place is free
//!   ([`room_for_submit`]): past capacity most are, at the least cost;
//! - tasks in flight: a batch counts its tasks; this bounds the memory they hold;
//! - request body bytes being read or parsed (any route with a body), taken as the bytes arrive
//!   and held until the request is answered ([`body`]); a body whose `Content-Length` does not
//!   fit is refused before any of it is read.
//!
//! So a client slow to send its body holds only what it sent: stalled bodies cannot fill either
//! bound and refuse everyone else (`limits.body_read_timeout_ms` then ends them).

pub mod body;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::metrics::{Count, HubMetrics};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Submit requests being read, or waiting for the scheduler or a commit.
    pub max_requests: usize,
    /// Tasks in those requests; at least the largest batch.
    pub max_tasks: usize,
    /// Request body bytes being read or parsed, all requests together.
    pub max_body_bytes: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_requests: 1_024,
            max_tasks: 50_000,
            max_body_bytes: 256 << 20,
        }
    }
}

/// Body bytes are counted in KiB: a semaphore takes at most `u32::MAX` permits at once.
const KIB: usize = 1024;

pub struct Admission {
    limits: AdmissionLimits,
    requests: Arc<Semaphore>,
    tasks: Arc<Semaphore>,
    body_kib: Arc<Semaphore>,
    metrics: Arc<HubMetrics>,
}

/// Held while an admitted submit is inside the hub: its place and its tasks.
pub struct Admitted {
    _request: OwnedSemaphorePermit,
    _tasks: OwnedSemaphorePermit,
}

/// The routes that submit tasks: a request to them is refused before its body is read when no
/// place is free.
fn submits(request: &Request) -> bool {
    use crate::routes::{SUBMIT, SUBMIT_BATCH};
    let path = request.uri().path();
    request.method() == Method::POST && (path == SUBMIT || path == SUBMIT_BATCH)
}

impl Admission {
    pub fn new(limits: AdmissionLimits, metrics: Arc<HubMetrics>) -> Self {
        Admission {
            limits,
            requests: Arc::new(Semaphore::new(limits.max_requests.max(1))),
            tasks: Arc::new(Semaphore::new(limits.max_tasks.max(1))),
            body_kib: Arc::new(Semaphore::new((limits.max_body_bytes / KIB).max(1))),
            metrics,
        }
    }

    /// Admits a submit of `tasks` tasks, its body read and parsed, or refuses it at once.
    pub fn admit(&self, tasks: usize) -> Result<Admitted, ApiError> {
        let request = self
            .requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.shed())?;
        let tasks = tasks.clamp(1, self.limits.max_tasks.max(1)) as u32;
        match self.tasks.clone().try_acquire_many_owned(tasks) {
            Ok(tasks) => Ok(Admitted {
                _request: request,
                _tasks: tasks,
            }),
            Err(_) => Err(self.shed()),
        }
    }

    fn shed(&self) -> ApiError {
        self.metrics.add(Count::SubmitsShed, 1);
        ApiError::Overloaded {
            what: "submits",
            retry_after_s: 1,
        }
    }

    /// The refusal of a body that finds no room.
    fn no_room_for_body(&self) -> ApiError {
        self.metrics.add(Count::SubmitsShed, 1);
        ApiError::Overloaded {
            what: "request bodies",
            retry_after_s: 1,
        }
    }

    /// Refuses a submit at once when no place is free, before its body is read; the place is
    /// taken only once the body is read and parsed ([`Admission::admit`]).
    fn refuse_when_full(&self) -> Result<(), ApiError> {
        match self.requests.available_permits() {
            0 => Err(self.shed()),
            _ => Ok(()),
        }
    }
}

/// A submit is refused here, before its body is read, when every place among the submits in
/// flight is taken: past capacity most are, so refusing costs as little as it can. It takes its
/// place once its body is read and parsed (a client slow to send it holds none meanwhile). One
/// of the route checks (`crate::routes::checks`).
pub fn room_for_submit(state: &AppState, request: &Request) -> Result<(), ApiError> {
    match submits(request) {
        true => state.admission.refuse_when_full(),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_requests: usize, max_tasks: usize) -> Admission {
        let limits = AdmissionLimits {
            max_requests,
            max_tasks,
            max_body_bytes: 4 * KIB,
        };
        Admission::new(limits, Arc::new(HubMetrics::new(true)))
    }

    #[test]
    fn a_submit_past_either_bound_is_refused_until_room_returns() {
        let a = admission(2, 100);
        let first = a.admit(60).unwrap();
        assert!(a.refuse_when_full().is_ok(), "one place is left");
        assert!(matches!(a.admit(41), Err(ApiError::Overloaded { .. })));
        let second = a.admit(40).unwrap();
        assert!(a.refuse_when_full().is_err(), "two submits in flight");
        assert!(a.admit(1).is_err());
        drop(first);
        assert!(a.refuse_when_full().is_ok());
        let _third = a.admit(60).unwrap();
        drop(second);
        // A batch larger than the bound waits for the whole of it, not forever.
        assert!(a.admit(1_000).is_err());
    }
}
