//! The tools: each is one operation of the REST API, named and described for a model, with its
//! input schema made from the operation's parameters and request body and its output schema from
//! the operation's answer, as the hub's OpenAPI document states them. So a tool takes exactly
//! what the API takes, with the same bounds and descriptions, and cannot drift from it.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use crate::schema;

/// What a tool does besides its one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    None,
    /// `submit_task`: `wait_ms` waits for the new task to finish (`GET /tasks/{id}/wait`).
    WaitAfterSubmit,
}

/// One tool: an API operation and how a model should see it.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub description: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    /// Reads only (`readOnlyHint`); otherwise it changes something.
    pub read_only: bool,
    /// Ends something for good (`destructiveHint`).
    pub destructive: bool,
    pub extra: Extra,
}

const WAIT_PATH: &str = "/api/v1/tasks/{id}/wait";

pub const SPECS: [Spec; 8] = [
    Spec {
        name: "submit_task",
        description: "Submit a task to the hive: the hub routes it to an agent that has the \
            capability, retries failed attempts and keeps it durably. Returns the task (its id, \
            status, and once it succeeded its result). With wait_ms the call also waits up to \
            that long for the task to finish and returns it as it then stands. A repeated \
            idempotency_key returns the first task instead of creating another.",
        method: "post",
        path: "/api/v1/tasks",
        read_only: false,
        destructive: false,
        extra: Extra::WaitAfterSubmit,
    },
    Spec {
        name: "get_task",
        description: "Get one task by id: its status (waiting, queued, running, succeeded, \
            failed, cancelled), result or error, and every attempt.",
        method: "get",
        path: "/api/v1/tasks/{id}",
        read_only: true,
        destructive: false,
        extra: Extra::None,
    },
    Spec {
        name: "wait_task",
        description: "Wait for a task to finish, up to timeout_ms; returns the task as soon as \
            it finishes, or as it stands when the time is up (check its status).",
        method: "get",
        path: WAIT_PATH,
        read_only: true,
        destructive: false,
        extra: Extra::None,
    },
    Spec {
        name: "list_tasks",
        description: "List tasks, newest first, optionally by status and capability; page with \
            the answer's next_cursor.",
        method: "get",
        path: "/api/v1/tasks",
        read_only: true,
        destructive: false,
        extra: Extra::None,
    },
    Spec {
        name: "cancel_task",
        description: "Cancel a task that has not finished: it will not run again, and a running \
            attempt is told to stop. Returns the task.",
        method: "post",
        path: "/api/v1/tasks/{id}/cancel",
        read_only: false,
        destructive: true,
        extra: Extra::None,
    },
    Spec {
        name: "list_agents",
        description: "List the connected agents: each one's capabilities (with levels), slots, \
            running tasks, state, and what routing has learned of its speed and success per \
            capability. The capabilities listed here are what submit_task can ask for.",
        method: "get",
        path: "/api/v1/agents",
        read_only: true,
        destructive: false,
        extra: Extra::None,
    },
    Spec {
        name: "hub_status",
        description: "The hub at a glance: tasks by status, agents by state, queue depth per \
            capability, and the routing policy.",
        method: "get",
        path: "/api/v1/status",
        read_only: true,
        destructive: false,
        extra: Extra::None,
    },
    Spec {
        name: "broadcast",
        description: "Send a message to every agent of a swarm (group) and collect their \
            replies for up to timeout_ms. Returns the replies that came in time, who was sent \
            the message, and who did not answer.",
        method: "post",
        path: "/api/v1/swarms/{group}/messages",
        read_only: false,
        destructive: false,
        extra: Extra::None,
    },
];

/// Where an argument goes in the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Path,
    Query,
    Body,
    /// Taken by the tool itself (`wait_ms`).
    Tool,
}

/// A tool as built from the document: what `tools/list` shows and how its arguments map.
#[derive(Debug, Clone)]
pub struct Built {
    pub spec: Spec,
    pub tool: Tool,
    /// Every argument the tool takes, and where it goes.
    pub arguments: Vec<(String, Place)>,
    /// The most `wait_ms` may be (the wait operation's `timeout_ms` maximum).
    pub max_wait_ms: Option<u64>,
}

/// The `timeout_ms` maximum of the wait operation: this hub's `max_wait`.
fn max_wait_ms(doc: &Value) -> Option<u64> {
    doc["paths"][WAIT_PATH]["get"]["parameters"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "timeout_ms")?["schema"]["maximum"]
        .as_u64()
}

/// The tools, built from `doc` (the hub's `/api/openapi.json`). Fails naming the operation the
/// document lacks.
pub fn build(doc: &Value) -> Result<Vec<Built>, String> {
    build_for(&SPECS, doc)
}

/// Only the tools of `specs`, built from `doc`.
pub fn build_for(specs: &[Spec], doc: &Value) -> Result<Vec<Built>, String> {
    specs.iter().map(|spec| build_one(*spec, doc)).collect()
}

fn build_one(spec: Spec, doc: &Value) -> Result<Built, String> {
    let operation = &doc["paths"][spec.path][spec.method];
    if !operation.is_object() {
        return Err(format!(
            "the OpenAPI document has no {} {}",
            spec.method.to_uppercase(),
            spec.path
        ));
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut arguments = Vec::new();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let (Some(name), Some(location)) = (parameter["name"].as_str(), parameter["in"].as_str())
        else {
            continue;
        };
        let place = match location {
            "path" => Place::Path,
            "query" => Place::Query,
            _ => continue,
        };
        let mut property = parameter["schema"].clone();
        if let Some(description) = parameter.get("description") {
            property["description"] = description.clone();
        }
        properties.insert(name.to_owned(), property);
        if parameter["required"] == true || place == Place::Path {
            required.push(name.to_owned());
        }
        arguments.push((name.to_owned(), place));
    }
    let body_schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    let body = schema::resolved(body_schema, doc);
    // A body with properties is the tool's input, flattened; a POST that takes none still sends
    // one (`{}`), as the hub wants a JSON POST.
    for (name, property) in body["properties"].as_object().into_iter().flatten() {
        properties.insert(name.clone(), property.clone());
        arguments.push((name.clone(), Place::Body));
    }
    for name in body["required"].as_array().into_iter().flatten() {
        if let Some(name) = name.as_str() {
            required.push(name.to_owned());
        }
    }
    let max_wait_ms = max_wait_ms(doc);
    if spec.extra == Extra::WaitAfterSubmit {
        properties.insert(
            "wait_ms".into(),
            json!({
                "type": "integer", "minimum": 0, "maximum": max_wait_ms,
                "description": "Also wait up to this long (ms) for the task to finish, and \
                    return it as it then stands (default 0: return at once, as accepted)."
            }),
        );
        arguments.push(("wait_ms".into(), Place::Tool));
    }
    let input = schema::standalone(schema::object(properties, required), doc);
    let mut tool = Tool::new(spec.name, spec.description, Arc::new(input)).with_annotations(
        ToolAnnotations::new()
            .read_only(spec.read_only)
            .destructive(spec.destructive)
            .idempotent(spec.read_only)
            .open_world(false),
    );
    if let Some(output) = answer_schema(operation, doc) {
        tool = tool.with_raw_output_schema(Arc::new(output));
    }
    Ok(Built {
        spec,
        tool,
        arguments,
        max_wait_ms,
    })
}

/// The schema of the operation's successful JSON answer, standing alone; an MCP output schema
/// must describe an object.
fn answer_schema(operation: &Value, doc: &Value) -> Option<JsonObject> {
    let responses = operation["responses"].as_object()?;
    let schema = responses
        .iter()
        .filter(|(status, _)| status.starts_with('2'))
        .find_map(|(_, r)| r["content"]["application/json"]["schema"].as_object())?;
    let root = schema::resolved(&Value::Object(schema.clone()), doc).clone();
    match root {
        Value::Object(map) if map.get("type") == Some(&json!("object")) => {
            Some(schema::standalone(map, doc))
        }
        _ => None,
    }
}
