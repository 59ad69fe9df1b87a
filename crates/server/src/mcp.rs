//! `/mcp`: the Model Context Protocol (streamable HTTP) on the hub itself. Its tools call the
//! hub's own REST router in process ([`InProcess`]), so each passes the same validation,
//! authorisation, admission and metrics as a REST request: the same errors, the same roles.
//! The transport's own refusals (rmcp answers them in plain text) get the API's JSON error body
//! ([`json_errors`]).
//!
//! Authentication: `/mcp` itself needs a token that may read (`auth::authorize`); each tool's call
//! then needs what its route needs, checked against the same token ([`auth::Delegated`]), so a
//! `read` token lists and gets but cannot submit.

use axum::body::Body;
use axum::extract::Request as AxumRequest;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use hive_mcp::{Api, Call, Failure, HiveMcp};
use hive_proto::api::{ErrorBody, ErrorDetail};
use serde_json::Value;
use tower_service::Service;

use crate::auth::{Delegated, Principal};
use crate::reads::ClientAddr;
use crate::state::AppState;

/// The hub's router, called without a network in between.
#[derive(Clone)]
pub struct InProcess {
    router: axum::Router,
}

impl Api for InProcess {
    async fn call(
        &self,
        call: Call,
        caller: Option<&axum::http::request::Parts>,
    ) -> Result<Value, Failure> {
        let mut request = Request::builder().method(call.method).uri(&call.target);
        let body = call.body.map(|b| b.to_string());
        if let Some(body) = &body {
            // With its length stated, a body that does not fit beside those being read is refused
            // before it is read (`admission::body::room_for_body`).
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, body.len());
        }
        let body = body.map_or_else(Body::empty, Body::from);
        let mut request = request
            .body(body)
            .map_err(|e| Failure::Unreachable(format!("cannot call {}: {e}", call.target)))?;
        if let Some(parts) = caller {
            if let Some(who) = parts.extensions.get::<Principal>() {
                request.extensions_mut().insert(Delegated(who.clone()));
            }
            if let Some(peer) = parts.extensions.get::<ClientAddr>() {
                request.extensions_mut().insert(*peer);
            }
        }
        let response = match self.router.clone().call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| Failure::Unreachable(format!("{}: {e}", call.target)))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Unreachable(format!(
                "{} answered {status} without JSON: {e}",
                call.target
            ))
        })?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(Failure::Api {
                status: status.as_u16(),
                body: value,
            })
        }
    }
}

/// The `/mcp` service over `router` (the hub's routes with their layers, without `/mcp`).
pub fn service(
    router: axum::Router,
    state: &AppState,
) -> hive_mcp::rmcp::transport::StreamableHttpService<
    HiveMcp<InProcess>,
    hive_mcp::rmcp::transport::streamable_http_server::session::never::NeverSessionManager,
> {
    // Built at the first `/mcp` request, not at start: the OpenAPI document it is cut from is
    // ~0.2 MB of code run once, and code a hub runs at start stays resident (BENCHMARKS.md,
    // "Idle memory now"). Tests build it (tests/it/mcp.rs), so its `expect` cannot fire first
    // in production.
    let config = state.config.clone();
    let built = std::sync::OnceLock::new();
    let server = move || {
        built
            .get_or_init(|| {
                let document = crate::routes::openapi::for_hub(&config);
                HiveMcp::new(
                    InProcess {
                        router: router.clone(),
                    },
                    &document,
                )
                .expect("the hub's own OpenAPI document has every tool's operation")
            })
            .clone()
    };
    // An MCP request wraps the API's body in a JSON-RPC envelope: room for that.
    hive_mcp::http_service(server, state.config.max_body_bytes + 64 * 1024)
}

/// The code of a refusal by the MCP transport, by its status.
fn transport_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        _ => "mcp_transport",
    }
}

/// Middleware on `/mcp`: an error the transport answered in plain text (a body that is not
/// JSON, a missing `Accept`, an unknown `MCP-Protocol-Version`) is answered with the API's JSON
/// error body instead, its text as the message, its status kept.
pub async fn json_errors(request: AxumRequest, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let body = ErrorBody {
        error: ErrorDetail {
            code: transport_code(status).to_owned(),
            message: if message.is_empty() {
                status.to_string()
            } else {
                message
            },
            field: None,
        },
    };
    let bytes = serde_json::to_vec(&body).expect("an error body is JSON");
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}
