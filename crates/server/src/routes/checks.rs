//! What every request that matched a route passes before its handler, as one route layer: the
//! token (`auth::authorize`), its timing (`metrics::http`, when metrics are on), room for a
//! submit among those in flight (`admission::room_for_submit`), room for its body
//! (`admission::body::room_for_body`) and a POST's content type (`auth::browser::json_post`), in
//! that order. One layer, not one per check: axum clones a route's whole stack of layers for each
//! request, and each `from_fn` layer clones the layers inside it again: as four layers they
//! cost a single-task request 48 more allocations of its 157 (BENCHMARKS.md, "Changes made
//! because of these counts"). Timing starts before admission, so that a submit shed as
//! overloaded counts as the 5xx it is (`error_rate_percent`, the `error_rate` alert).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::http::Timing;
use crate::state::AppState;
use crate::{admission, auth};

pub async fn run(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if let Err(refused) = auth::authorize(&state, &mut request) {
        return refused.into_response();
    }
    let timing = state.metrics.enabled().then(|| Timing::start(&request));
    let response = admitted(&state, request, next).await;
    if let Some(timing) = timing {
        timing.record(&state.metrics, &response);
    }
    response
}

/// The handler's answer, or the refusal of a check; the body's room is held until the answer.
async fn admitted(state: &AppState, request: Request, next: Next) -> Response {
    if let Err(refused) = admission::room_for_submit(state, &request) {
        return refused.into_response();
    }
    let (request, _room) = match admission::body::room_for_body(state, request) {
        Ok(metered) => metered,
        Err(refused) => return refused.into_response(),
    };
    match auth::browser::json_post(&request) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}
