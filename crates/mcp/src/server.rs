//! The MCP server: `tools/list` answers the catalog, `tools/call` turns a tool's arguments into
//! one REST call (two for `submit_task` with `wait_ms`) on an [`Api`], and the answer into the
//! tool's result.
//!
//! Errors: arguments the server can tell are wrong before calling (an unknown tool or argument,
//! a missing id, a `wait_ms` out of range) are JSON-RPC "invalid params" errors. Everything the
//! hub itself refuses is a tool result with `isError: true` whose structured content is the
//! API's error body (`error.code`, `error.message`, `error.field`) and its HTTP `status`, so a
//! model reads the same reason a REST client would.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};

use crate::catalog::{self, Built, Place};

/// One REST call a tool makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: http::Method,
    /// Path and query, e.g. `/api/v1/tasks?status=queued`.
    pub target: String,
    /// The JSON body; every POST has one.
    pub body: Option<Value>,
    /// How long the hub may take to answer, when the call itself waits (a long poll).
    pub waits: Option<Duration>,
}

/// Why a call has no answer to give the tool.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The hub answered with an error: its HTTP status and error body.
    Api { status: u16, body: Value },
    /// No answer came (the hub is unreachable, or its answer was not JSON).
    Unreachable(String),
}

/// Who a tool calls: the hub's REST API, over the network (`hive mcp`) or inside the hub itself
/// (`/mcp`). `caller` is the HTTP request the MCP message came in (only on `/mcp`): its token
/// and peer address are the call's.
pub trait Api: Send + Sync + 'static {
    fn call(
        &self,
        call: Call,
        caller: Option<&http::request::Parts>,
    ) -> impl Future<Output = Result<Value, Failure>> + Send;
}

/// The MCP server over an [`Api`]; cheap to clone (one per HTTP request).
pub struct HiveMcp<A> {
    api: Arc<A>,
    tools: Arc<Vec<Built>>,
}

impl<A> Clone for HiveMcp<A> {
    fn clone(&self) -> Self {
        HiveMcp {
            api: self.api.clone(),
            tools: self.tools.clone(),
        }
    }
}

const INSTRUCTIONS: &str = "Hive is a hub that routes tasks to agents (workers) by capability, \
    retries failed attempts and keeps every task durably. Use list_agents to see which \
    capabilities exist, submit_task to hand work to the swarm (with wait_ms to wait for its \
    result), and get_task or wait_task to follow it.";

impl<A: Api> HiveMcp<A> {
    /// The server for the API described by `openapi` (the hub's `/api/openapi.json`).
    pub fn new(api: A, openapi: &Value) -> Result<Self, String> {
        Ok(HiveMcp {
            api: Arc::new(api),
            tools: Arc::new(catalog::build(openapi)?),
        })
    }

    pub fn tools(&self) -> Vec<Tool> {
        self.tools.iter().map(|b| b.tool.clone()).collect()
    }

    async fn run(
        &self,
        request: CallToolRequestParams,
        caller: Option<&http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let built = self
            .tools
            .iter()
            .find(|b| b.spec.name == request.name)
            .ok_or_else(|| {
                ErrorData::invalid_params(format!("there is no tool {:?}", request.name), None)
            })?;
        let arguments = request.arguments.unwrap_or_default();
        let prepared = prepare(built, arguments)?;
        let answer = self.api.call(prepared.call, caller).await;
        let answer = match (answer, prepared.wait_ms) {
            (Ok(task), Some(wait_ms)) if wait_ms > 0 && !finished(&task) => {
                let id = task["id"].as_str().unwrap_or_default().to_owned();
                self.api
                    .call(wait_call(&id, wait_ms), caller)
                    .await
                    .map_err(|failure| submitted_but(failure, &id))
            }
            (answer, _) => answer,
        };
        Ok(match answer {
            Ok(value) => CallToolResult::structured(value),
            Err(failure) => failed(failure),
        })
    }
}

/// A task in a final state.
fn finished(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

fn wait_call(id: &str, wait_ms: u64) -> Call {
    Call {
        method: http::Method::GET,
        target: format!("/api/v1/tasks/{}/wait?timeout_ms={wait_ms}", encode(id)),
        body: None,
        waits: Some(Duration::from_millis(wait_ms)),
    }
}

/// A wait that failed after its submit succeeded: the error says the task exists.
fn submitted_but(failure: Failure, id: &str) -> Failure {
    match failure {
        Failure::Api { status, mut body } => {
            if let Some(message) = body["error"]["message"].as_str() {
                body["error"]["message"] = json!(format!(
                    "task {id} was submitted; waiting for it failed: {message}"
                ));
            }
            if let Some(object) = body.as_object_mut() {
                object.insert("task_id".into(), json!(id));
            }
            Failure::Api { status, body }
        }
        Failure::Unreachable(reason) => Failure::Unreachable(format!(
            "task {id} was submitted; waiting for it failed: {reason}"
        )),
    }
}

fn failed(failure: Failure) -> CallToolResult {
    match failure {
        Failure::Api { status, body } => {
            let error = &body["error"];
            let mut text = format!(
                "the hub answered {status} {}: {}",
                error["code"].as_str().unwrap_or("error"),
                error["message"].as_str().unwrap_or("(no message)")
            );
            if let Some(field) = error["field"].as_str() {
                text.push_str(&format!(" (field {field})"));
            }
            let mut structured = body;
            if let Some(object) = structured.as_object_mut() {
                object.insert("status".into(), json!(status));
            }
            let mut result = CallToolResult::structured_error(structured);
            result.content = vec![ContentBlock::text(text)];
            result
        }
        Failure::Unreachable(reason) => CallToolResult::error(vec![ContentBlock::text(reason)]),
    }
}

/// A call ready to make, and the tool's own `wait_ms`.
#[derive(Debug, PartialEq)]
pub struct Prepared {
    pub call: Call,
    pub wait_ms: Option<u64>,
}

fn invalid(message: String) -> ErrorData {
    ErrorData::invalid_params(message, None)
}

/// The call `arguments` make of `built`: path parameters into the path, query parameters into
/// the query, the rest into the body. The values themselves are the hub's to check.
pub fn prepare(built: &Built, arguments: Map<String, Value>) -> Result<Prepared, ErrorData> {
    let mut path = built.spec.path.to_owned();
    let mut query = Vec::new();
    let mut body = Map::new();
    let mut wait_ms = None;
    let mut waited_ms = None;
    for (name, value) in arguments {
        let place = built
            .arguments
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, place)| place)
            .ok_or_else(|| {
                invalid(format!(
                    "{} takes no argument {name:?}; it takes {}",
                    built.spec.name,
                    built
                        .arguments
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        match place {
            Place::Path => path = path.replace(&format!("{{{name}}}"), &encode(&text(&value))),
            Place::Query if value.is_null() => {}
            Place::Query => {
                if name == "timeout_ms" {
                    waited_ms = value.as_u64();
                }
                query.push(format!("{name}={}", encode(&text(&value))));
            }
            Place::Body => {
                body.insert(name, value);
            }
            Place::Tool => wait_ms = Some(wait_argument(&value, built.max_wait_ms)?),
        }
    }
    if let Some(start) = path.find('{') {
        let name = &path[start + 1..path[start..].find('}').map_or(path.len(), |e| start + e)];
        return Err(invalid(format!(
            "{} needs the argument {name:?}",
            built.spec.name
        )));
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    // The long poll's own timeout (the hub's default 30 s when none is given).
    let waits = built
        .spec
        .path
        .ends_with("/wait")
        .then(|| Duration::from_millis(waited_ms.unwrap_or(30_000)));
    Ok(Prepared {
        call: Call {
            method: if built.spec.method == "post" {
                http::Method::POST
            } else {
                http::Method::GET
            },
            target: path,
            // A POST always sends a body: the hub takes a POST only as JSON.
            body: (built.spec.method == "post").then_some(Value::Object(body)),
            waits,
        },
        wait_ms,
    })
}

fn wait_argument(value: &Value, max: Option<u64>) -> Result<u64, ErrorData> {
    let wait = value
        .as_u64()
        .ok_or_else(|| invalid(format!("wait_ms must be a whole number of ms, not {value}")))?;
    match max {
        Some(max) if wait > max => Err(invalid(format!(
            "wait_ms is {wait}; the hub waits at most {max} ms"
        ))),
        _ => Ok(wait),
    }
}

/// An argument as it goes into a path or query: strings as they are, anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes all but the unreserved characters (RFC 3986).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

impl<A: Api> ServerHandler for HiveMcp<A> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("hive", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools
            .iter()
            .find(|b| b.spec.name == name)
            .map(|b| b.tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = context.extensions.get::<http::request::Parts>();
        self.run(request, caller).await.map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({
            "paths": {
                "/api/v1/tasks": {"post": {
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewTask"}}}},
                    "responses": {"201": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}}}
                }},
                "/api/v1/tasks/{id}/wait": {"get": {"parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "timeout_ms", "in": "query", "schema": {"type": "integer", "maximum": 2000}}
                ]}},
            },
            "components": {"schemas": {
                "NewTask": {"type": "object", "required": ["capability"], "properties": {
                    "capability": {"type": "string"}, "payload": {}
                }},
                "Task": {"type": "object", "properties": {"id": {"type": "string"}}}
            }}
        })
    }

    fn spec(name: &str) -> catalog::Spec {
        *catalog::SPECS.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn arguments_go_to_path_query_body_and_tool() {
        let doc = doc();
        let submit = catalog::build_for(&[spec("submit_task")], &doc)
            .unwrap()
            .remove(0);
        let args = json!({"capability": "echo", "payload": {"x": 1}, "wait_ms": 500});
        let prepared = prepare(&submit, args.as_object().unwrap().clone()).unwrap();
        assert_eq!(prepared.call.method, http::Method::POST);
        assert_eq!(prepared.call.target, "/api/v1/tasks");
        assert_eq!(
            prepared.call.body,
            Some(json!({"capability": "echo", "payload": {"x": 1}}))
        );
        assert_eq!(prepared.wait_ms, Some(500));
        assert_eq!(submit.tool.input_schema["required"], json!(["capability"]));
        assert_eq!(
            submit.tool.output_schema.as_ref().unwrap()["type"],
            json!("object")
        );

        let wait = catalog::build_for(&[spec("wait_task")], &doc)
            .unwrap()
            .remove(0);
        let args = json!({"id": "a b/c", "timeout_ms": 10});
        let prepared = prepare(&wait, args.as_object().unwrap().clone()).unwrap();
        assert_eq!(
            prepared.call.target,
            "/api/v1/tasks/a%20b%2Fc/wait?timeout_ms=10"
        );
        assert_eq!(prepared.call.body, None);
    }

    #[test]
    fn wrong_arguments_are_invalid_params_naming_them() {
        let doc = doc();
        let submit = catalog::build_for(&[spec("submit_task")], &doc)
            .unwrap()
            .remove(0);
        let wait = catalog::build_for(&[spec("wait_task")], &doc)
            .unwrap()
            .remove(0);
        let err = |built: &Built, args: Value| {
            prepare(built, args.as_object().unwrap().clone())
                .unwrap_err()
                .message
                .into_owned()
        };
        assert!(err(&submit, json!({"capability": "x", "colour": 1})).contains("\"colour\""));
        assert!(err(&submit, json!({"capability": "x", "wait_ms": 2001})).contains("2000"));
        assert!(err(&submit, json!({"capability": "x", "wait_ms": -1})).contains("wait_ms"));
        assert!(err(&wait, json!({"timeout_ms": 5})).contains("\"id\""));
    }

    #[test]
    fn hub_errors_are_tool_errors_with_the_api_body() {
        let body = json!({"error": {"code": "not_found", "message": "no task x", "field": "id"}});
        let result = failed(Failure::Api { status: 404, body });
        assert_eq!(result.is_error, Some(true));
        let structured = result.structured_content.unwrap();
        assert_eq!(structured["status"], 404);
        assert_eq!(structured["error"]["code"], "not_found");
        let text = result.content[0].as_text().unwrap().text.clone();
        assert_eq!(text, "the hub answered 404 not_found: no task x (field id)");
    }
}
