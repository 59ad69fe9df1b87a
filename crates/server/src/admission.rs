//! Admission control: how much work may wait inside the hub before new work is refused.
//!
//! A submit waits twice inside the hub: for the scheduler actor, then for the group commit. Past
//! the hub's capacity those waits would grow without bound (latency for everyone, memory that
//! follows the offered load), so both are bounded here and a submit over a bound is answered at
//! once: `503 overloaded` with `Retry-After`. What was admitted stays fast.
//!
//! Three bounds, each a semaphore taken without waiting:
//! - submit requests in flight: each is one, from before its body is read (so that refusing one
//!   costs as little as it can) until it is answered; with the hub's throughput this bounds the
//!   queueing delay an admitted request sees. A client slow to send its body holds its place
//!   meanwhile, up to `limits.body_read_timeout_ms`;
//! - tasks in flight: a batch counts its tasks; this bounds the memory they hold;
//! - request body bytes being read or parsed (any route with a body), taken from
//!   `Content-Length` before the body is read (the most a body may be when it is chunked): many
//!   large bodies at once would otherwise cost memory before any check could refuse them.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, header};
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

/// Held while an admitted submit's tasks are inside the hub (the request's own place is held by
/// the route checks, [`room_for_submit`]).
pub struct Admitted {
    _tasks: OwnedSemaphorePermit,
}

/// The routes that submit tasks: each request to them takes a place among the submits in
/// flight before its body is read.
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

    /// Admits the `tasks` tasks of a submit whose request was admitted, or refuses them at once.
    pub fn admit(&self, tasks: usize) -> Result<Admitted, ApiError> {
        let tasks = tasks.clamp(1, self.limits.max_tasks.max(1)) as u32;
        match self.tasks.clone().try_acquire_many_owned(tasks) {
            Ok(tasks) => Ok(Admitted { _tasks: tasks }),
            Err(_) => Err(self.shed()),
        }
    }

    /// Admits a submit request, or refuses it at once.
    fn admit_request(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.shed())
    }

    fn shed(&self) -> ApiError {
        self.metrics.add(Count::SubmitsShed, 1);
        ApiError::Overloaded {
            what: "submits",
            retry_after_s: 1,
        }
    }

    /// Reserves room for a request body of `bytes`.
    fn admit_body(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let kib = bytes
            .div_ceil(KIB)
            .clamp(1, (self.limits.max_body_bytes / KIB).max(1));
        self.body_kib
            .clone()
            .try_acquire_many_owned(kib.min(u32::MAX as usize) as u32)
            .map_err(|_| {
                self.metrics.add(Count::SubmitsShed, 1);
                ApiError::Overloaded {
                    what: "request bodies",
                    retry_after_s: 1,
                }
            })
    }
}

/// A submit request's place among the submits in flight, held until it is answered (`None`: not
/// a submit). `Err`: 503, before its body is read or parsed, so that refusing costs as little as
/// it can: past capacity most requests are refused. One of the route checks
/// (`crate::routes::checks`).
pub fn room_for_submit(
    state: &AppState,
    request: &Request,
) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    submits(request)
        .then(|| state.admission.admit_request())
        .transpose()
}

/// Room for a request's body, held until it is answered (`None`: it has none). `Err`: 503, the
/// bodies in flight fill their bound. One of the route checks (`crate::routes::checks`).
pub fn room_for_body(
    state: &AppState,
    request: &Request,
) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let bodiless = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    );
    let bytes = match length {
        Some(0) => None,
        Some(n) => Some(n.min(state.config.max_body_bytes)),
        None if bodiless => None,
        // Chunked: it may be as large as a body may be.
        None => Some(state.config.max_body_bytes),
    };
    bytes.map(|n| state.admission.admit_body(n)).transpose()
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
        let first = (a.admit_request().unwrap(), a.admit(60).unwrap());
        let _waiting = a.admit_request().unwrap();
        assert!(matches!(a.admit(41), Err(ApiError::Overloaded { .. })));
        let second = a.admit(40).unwrap();
        assert!(a.admit_request().is_err(), "two requests in flight");
        drop(first);
        let _third = (a.admit_request().unwrap(), a.admit(60).unwrap());
        drop(second);
        // A batch larger than the bound waits for the whole of it, not forever.
        assert!(a.admit(1_000).is_err());
    }

    #[test]
    fn body_bytes_in_flight_are_bounded() {
        let a = admission(8, 8);
        let big = a.admit_body(3 * KIB).unwrap();
        assert!(a.admit_body(2 * KIB).is_err());
        let small = a.admit_body(KIB).unwrap();
        drop((big, small));
        assert!(a.admit_body(4 * KIB).is_ok());
    }
}
