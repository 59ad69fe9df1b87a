//! The HTTP surface: `app(state)` builds the router. One file per resource; the OpenAPI document
//! is generated from the handlers' annotations and the wire types (`openapi`).

pub mod agents;
pub mod alerts;
mod checks;
pub mod dashboard;
pub mod events;
pub mod hubs;
pub mod metrics;
pub mod openapi;
pub mod swarms;
pub mod system;
pub mod task_events;
pub mod tasks;
pub mod tokens;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post, post_service};
use tower_layer::Layer;

use crate::error::ApiError;
use crate::state::AppState;
use crate::ws_agent;

/// The hub's HTTP surface. `/mcp`'s tools call the same routes in process (crate::mcp), through
/// the same layers, so they are built twice: once without `/mcp` for the tools, once with it.
pub fn app(state: AppState) -> Router {
    let inner = secured(routes(), &state);
    let mcp = crate::mcp::service(inner, &state);
    // POST only: stateless, the hub has no stream to offer on a GET (405 from the fallback).
    let mcp = post_service(mcp).layer(middleware::from_fn(crate::mcp::json_errors));
    secured(routes().route("/mcp", mcp), &state)
}

/// The routes that submit tasks (admission takes their place before reading their body).
pub const SUBMIT: &str = "/api/v1/tasks";
pub const SUBMIT_BATCH: &str = "/api/v1/tasks/batch";

fn routes() -> Router<AppState> {
    // The API's paths in full rather than a nested router: `nest` wraps each of its routes in
    // one more layer, and a request pays for every layer of its route (see `secured`).
    Router::new()
        .route(SUBMIT, post(tasks::create).get(tasks::list))
        .route(SUBMIT_BATCH, post(tasks::create_batch))
        .route("/api/v1/tasks/{id}", get(tasks::get_one))
        .route("/api/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/v1/tasks/{id}/wait", get(tasks::wait))
        .route("/api/v1/tasks/{id}/events", get(task_events::follow))
        .route("/api/v1/agents", get(agents::list))
        .route("/api/v1/agents/{id}", get(agents::get_one))
        .route("/api/v1/agents/{id}/drain", post(agents::drain))
        .route("/api/v1/agents/{id}/undrain", post(agents::undrain))
        .route("/api/v1/status", get(system::status))
        .route("/api/v1/swarms", get(swarms::list))
        .route("/api/v1/hubs", get(hubs::list))
        .route("/api/v1/swarms/{group}/messages", post(swarms::broadcast))
        .route("/api/v1/metrics", get(metrics::snapshot))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/api/v1/tokens/{name}/revoke", post(tokens::revoke))
        .route("/api/openapi.json", get(system::openapi))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/ws/agent", get(ws_agent::upgrade))
        .route("/metrics", get(metrics::prometheus))
        .route("/ws/performance", get(metrics::performance))
        .route("/ws/events", get(events::stream))
        .route("/", get(dashboard::index))
        .route("/assets/{*path}", get(dashboard::asset))
}

/// `router` with the checks every route passes, and the answers for routes that do not exist.
fn secured(router: Router<AppState>, state: &AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    // Route layers run only for a route and method that exist: anything else is answered 404 or
    // 405 by the fallbacks below, with no token needed to learn that (the routes are public in
    // the OpenAPI document anyway).
    let routed = router
        .route_layer(middleware::from_fn_with_state(state.clone(), checks::run))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // The body limit and the browser defence wrap the whole router once. As `Router::layer`s
    // they wrapped every route's own stack again, and axum clones a route's stack, one boxed
    // layer at a time, at each layer a request passes through (BENCHMARKS.md).
    let limited = DefaultBodyLimit::max(body_limit).layer(routed);
    // Outermost: a request a browser defence refuses costs nothing else.
    let guarded =
        middleware::from_fn_with_state(state.clone(), crate::auth::browser::guard).layer(limited);
    Router::new().fallback_service(guarded)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound {
        what: format!("route {}", uri.path()),
    }
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        message: format!("{method} is not allowed on {}", uri.path()),
    }
}
