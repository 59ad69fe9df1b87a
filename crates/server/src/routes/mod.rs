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

fn routes() -> Router<AppState> {
    let api = Router::new()
        .route("/tasks", post(tasks::create).get(tasks::list))
        .route("/tasks/batch", post(tasks::create_batch))
        .route("/tasks/{id}", get(tasks::get_one))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route("/tasks/{id}/wait", get(tasks::wait))
        .route("/tasks/{id}/events", get(task_events::follow))
        .route("/agents", get(agents::list))
        .route("/agents/{id}", get(agents::get_one))
        .route("/agents/{id}/drain", post(agents::drain))
        .route("/agents/{id}/undrain", post(agents::undrain))
        .route("/status", get(system::status))
        .route("/swarms", get(swarms::list))
        .route("/hubs", get(hubs::list))
        .route("/swarms/{group}/messages", post(swarms::broadcast))
        .route("/metrics", get(metrics::snapshot))
        .route("/alerts", get(alerts::list))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{name}/revoke", post(tokens::revoke));
    Router::new()
        .nest("/api/v1", api)
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
    router
        .route_layer(middleware::from_fn_with_state(state.clone(), checks::run))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        // Outermost: a request a browser defence refuses costs nothing else.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::browser::guard,
        ))
        .with_state(state.clone())
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
