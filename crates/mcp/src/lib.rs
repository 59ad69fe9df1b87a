//! Hive as a Model Context Protocol server: the tools an LLM client uses to hand work to the
//! swarm and follow it. Two transports share one [`HiveMcp`]: stdio (`hive mcp`, for desktop
//! clients; it calls a running hub's REST API) and streamable HTTP at the hub's `/mcp` (it calls
//! the hub's own router in process). Built on the official Rust SDK, `rmcp`.
//!
//! - [`catalog`]: the tools, their schemas cut from the hub's OpenAPI document ([`schema`]).
//! - [`server`]: `tools/list`, `tools/call`, errors; the [`Api`] a tool calls.

pub mod catalog;
pub mod schema;
pub mod server;

pub use rmcp;
pub use server::{Api, Call, Failure, HiveMcp};

use rmcp::ServiceExt;

/// Serves MCP on this process's stdin and stdout until the client closes them.
pub async fn serve_stdio<A: Api>(server: HiveMcp<A>) -> Result<(), String> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP client did not start a session: {e}"))?;
    running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| format!("the MCP session ended with an error: {e}"))
}

/// The streamable HTTP service for `/mcp`: stateless (any hub behind a load balancer can answer
/// any request), answering plain JSON where it can. Host and Origin are the hub's own checks;
/// `max_body` bounds a request's body. `server` is asked for the server of each request.
pub fn http_service<A: Api>(
    server: impl Fn() -> HiveMcp<A> + Send + Sync + 'static,
    max_body: usize,
) -> rmcp::transport::StreamableHttpService<
    HiveMcp<A>,
    rmcp::transport::streamable_http_server::session::never::NeverSessionManager,
> {
    use rmcp::transport::StreamableHttpServerConfig;
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .disable_allowed_hosts()
        .with_max_request_body_bytes(max_body);
    rmcp::transport::StreamableHttpService::new(move || Ok(server()), Default::default(), config)
}
