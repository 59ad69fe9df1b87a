//! The OpenAPI document at `/api/openapi.json`: what utoipa generates from the handlers'
//! annotations and the wire types ([`ApiDoc`]), then the answers and rules that every route
//! shares, added here once ([`amend`]) rather than repeated on twenty handlers where one would
//! be forgotten. Schemathesis checks the result against the running hub in `.ci/run`.

use std::sync::OnceLock;

use serde_json::{Value, json};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hive",
        description = "AI orchestrator hub: agents, tasks, routing."
    ),
    paths(
        super::tasks::create,
        super::tasks::create_batch,
        super::tasks::get_one,
        super::tasks::list,
        super::tasks::cancel,
        super::tasks::wait,
        super::task_events::follow,
        super::agents::list,
        super::agents::get_one,
        super::agents::drain,
        super::agents::undrain,
        super::system::status,
        super::system::healthz,
        super::system::readyz,
        super::swarms::list,
        super::swarms::broadcast,
        super::hubs::list,
        super::metrics::snapshot,
        super::alerts::list,
        super::tokens::create,
        super::tokens::list,
        super::tokens::revoke,
    ),
    components(schemas(
        hive_proto::api::NewTask,
        hive_proto::api::NewTaskBatch,
        hive_proto::api::OnParentFailure,
        hive_proto::api::NewToken,
        hive_proto::api::TokenInfo,
        hive_proto::api::TokenCreated,
        hive_proto::api::TokenList,
        hive_proto::api::BatchCreated,
        hive_proto::api::Task,
        hive_proto::api::Attempt,
        hive_proto::api::Vote,
        hive_proto::api::TaskProgress,
        hive_proto::api::TaskList,
        hive_proto::api::Agent,
        hive_proto::api::AgentList,
        hive_proto::api::CapabilityStats,
        hive_proto::api::RoutingEstimate,
        hive_proto::api::Status,
        hive_proto::api::Health,
        hive_proto::api::ErrorBody,
        hive_proto::api::ErrorDetail,
        hive_proto::api::NewSwarmMessage,
        hive_proto::api::SwarmReply,
        hive_proto::api::SwarmMessageOutcome,
        hive_proto::api::Swarm,
        hive_proto::api::SwarmList,
        hive_proto::api::HubView,
        hive_proto::api::HubList,
        hive_proto::metrics::MetricsSnapshot,
        hive_proto::metrics::LatencySummary,
        hive_proto::metrics::RouteMetrics,
        hive_proto::metrics::ProcessMetrics,
        hive_proto::metrics::LlmUsage,
        hive_proto::alerts::Alert,
        hive_proto::alerts::AlertEvent,
        hive_proto::alerts::AlertList,
        hive_proto::events::Event,
        hive_proto::enums::TaskStatus,
        hive_proto::enums::AttemptOutcome,
        hive_proto::enums::AgentState,
        hive_proto::enums::AlertState,
        hive_proto::enums::AlertChange,
        hive_proto::enums::Role,
        hive_proto::enums::LeaseState,
        hive_proto::enums::StoreKind,
        hive_proto::enums::RoutingPolicy,
        hive_proto::enums::HealthStatus,
    ))
)]
pub struct ApiDoc;

/// The document as served, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document is JSON");
        amend(&mut doc);
        describe_task_events(&mut doc);
        doc
    })
}

/// A task's event stream: in OpenAPI 3.1 the `text/event-stream` schema describes one event, its
/// name and its data (JSON text).
fn describe_task_events(doc: &mut Value) {
    let content = &mut doc["paths"]["/api/v1/tasks/{id}/events"]["get"]["responses"]["200"]["content"]
        ["text/event-stream"];
    content["schema"] = json!({
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["task", "status", "progress", "skipped"]},
            "data": {"type": "string", "contentMediaType": "application/json"},
        },
    });
}

/// The document with this hub's configured limits where the generated one states the defaults.
pub fn for_hub(config: &crate::config::HubConfig) -> Value {
    let mut doc = document().clone();
    for path in ["/api/v1/tasks/{id}/wait", "/api/v1/tasks/{id}/events"] {
        let parameters = &mut doc["paths"][path]["get"]["parameters"];
        if let Some(timeout) = parameters
            .as_array_mut()
            .and_then(|parameters| parameters.iter_mut().find(|p| p["name"] == "timeout_ms"))
        {
            timeout["schema"]["maximum"] = json!(config.max_wait.as_millis() as u64);
        }
    }
    doc
}

/// `hive_core::Capability::parse`'s rule, which swarm groups follow too. utoipa takes a pattern
/// only as a literal, so `NewTask.capability` and the task list's `capability` filter write it
/// again: a test holds every copy in the document equal to this one.
const CAPABILITY_PATTERN: &str = "^[A-Za-z0-9_.:/-]+$";
/// `auth::tokens`: token names (`NewToken.name` writes it again, held equal the same way).
const TOKEN_NAME_PATTERN: &str = "^[A-Za-z0-9_.-]+$";

/// What a path parameter, or a query parameter that holds an id, must look like, as the
/// handlers check it.
fn parameter_schema(location: &str, name: &str) -> Option<Value> {
    match (location, name) {
        ("path", "id") | ("query", "cursor") => Some(json!({"type": "string", "format": "uuid"})),
        ("path", "group") => Some(json!({
            "type": "string", "pattern": CAPABILITY_PATTERN, "minLength": 1, "maxLength": 128
        })),
        ("path", "name") => Some(json!({
            "type": "string", "pattern": TOKEN_NAME_PATTERN, "minLength": 1, "maxLength": 64
        })),
        _ => None,
    }
}

/// The answers a route may give without saying so in its own annotation.
fn shared_answers(
    path: &str,
    method: &str,
    has_parameters: bool,
    reads_body: bool,
) -> Vec<(&'static str, &'static str)> {
    let mut answers = vec![(
        "503",
        "Overloaded (connections or work in flight over their bounds) or the store refuses \
         commits; `Retry-After` says when to try again",
    )];
    if path.starts_with("/api/v1/") {
        answers.extend([
            (
                "401",
                "Authentication is on and no valid token was given (`unauthorized`), or it \
                 expired (`token_expired`)",
            ),
            (
                "403",
                "The token's role may not do this, or the `Host` header names a host this hub \
                 does not answer to (`forbidden_host`, `server.allowed_hosts`)",
            ),
            (
                "429",
                "The token is over its rate limit; `Retry-After` says when to try again",
            ),
        ]);
    } else {
        // The Host check guards every route, the open ones too.
        answers.push((
            "403",
            "The `Host` header names a host this hub does not answer to (`forbidden_host`, \
             `server.allowed_hosts`)",
        ));
    }
    if has_parameters {
        answers.push(("400", "A parameter is invalid; `field` names it"));
    }
    if method == "post" {
        answers.push(("415", "A POST must carry `Content-Type: application/json`"));
    }
    // Only a route that reads its body can find it too slow or too large: one that takes no
    // input answers before reading any.
    if reads_body {
        answers.extend([
            (
                "408",
                "The body did not arrive within `limits.body_read_timeout_ms`",
            ),
            ("413", "The body is over the limit"),
        ]);
    }
    answers
}

/// Adds the shared answers, a description where utoipa left one out, the id parameters' formats,
/// a JSON body on POSTs that take no input (the hub requires their `Content-Type` to be JSON, so
/// that a web page cannot forge them: docs/security.md; a JSON body is how a client says so), and
/// the format of a dependency's id and of an agent token's capabilities and swarms.
fn amend(doc: &mut Value) {
    let error_body =
        json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                let mut has_parameters = false;
                // `get_mut`, not indexing: an index would insert `null` where there is nothing.
                if let Some(parameters) = operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                {
                    has_parameters = !parameters.is_empty();
                    for parameter in parameters {
                        let location = parameter["in"].as_str().unwrap_or_default().to_owned();
                        if let Some(schema) = parameter["name"]
                            .as_str()
                            .and_then(|name| parameter_schema(&location, name))
                        {
                            parameter["schema"] = schema;
                        }
                    }
                }
                let reads_body = operation.get("requestBody").is_some();
                if method == "post" && !reads_body {
                    operation["requestBody"] = json!({
                        "required": true,
                        "description": "Any JSON value, ignored: this route takes no input, but a \
                                        POST must be JSON",
                        "content": {"application/json": {"schema": {}}},
                    });
                }
                let Some(responses) = operation
                    .get_mut("responses")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                for (status, response) in responses.iter_mut() {
                    // utoipa leaves out an empty description; OpenAPI requires one.
                    if response.get("description").is_none() {
                        let reason = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
                            .and_then(|code| code.canonical_reason())
                            .unwrap_or("Answer");
                        response["description"] = json!(reason);
                    }
                }
                for (status, description) in
                    shared_answers(path, method, has_parameters, reads_body)
                {
                    responses.entry(status).or_insert_with(
                        || json!({"description": description, "content": error_body.clone()}),
                    );
                }
            }
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    let depends_on = &mut schemas["NewTask"]["properties"]["depends_on"];
    if depends_on.is_object() {
        depends_on["items"]["format"] = json!("uuid");
    }
    // Ids the hub answers with are UUIDs too.
    for (schema, property) in [("Task", "id"), ("Agent", "id")] {
        let id = &mut schemas[schema]["properties"][property];
        if id.is_object() {
            id["format"] = json!("uuid");
        }
    }
    let parents = &mut schemas["Task"]["properties"]["depends_on"];
    if parents.is_object() {
        parents["items"]["format"] = json!("uuid");
    }
    // An agent token's capabilities and swarms follow the capability rules.
    for list in ["capabilities", "groups"] {
        let property = &mut schemas["NewToken"]["properties"][list];
        if property.is_object() {
            property["items"] = parameter_schema("path", "group").expect("a known parameter");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_documents_the_shared_answers_and_posts_take_json() {
        let doc = document();
        let cancel = &doc["paths"]["/api/v1/tasks/{id}/cancel"]["post"];
        for status in ["400", "401", "403", "404", "409", "415", "429", "503"] {
            assert!(
                cancel["responses"][status].is_object(),
                "cancel lacks {status}"
            );
        }
        // Cancel reads no body, so it never finds one too slow or too large; submit does.
        for status in ["408", "413"] {
            assert!(cancel["responses"][status].is_null(), "cancel has {status}");
            assert!(
                doc["paths"]["/api/v1/tasks"]["post"]["responses"][status].is_object(),
                "submit lacks {status}"
            );
        }
        assert_eq!(cancel["requestBody"]["required"], true);
        assert_eq!(cancel["parameters"][0]["schema"]["format"], "uuid");
        assert_eq!(cancel["responses"]["404"]["description"], "Not Found");
        let health = &doc["paths"]["/healthz"]["get"]["responses"];
        assert!(health["401"].is_null() && health["503"].is_object());
        assert!(
            health["403"].is_object(),
            "the Host check guards /healthz too"
        );
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["Task"]["properties"]["id"]["format"], "uuid");
        assert_eq!(
            schemas["Task"]["properties"]["depends_on"]["items"]["format"],
            "uuid"
        );
        assert_eq!(schemas["Agent"]["properties"]["id"]["format"], "uuid");
        let status = &doc["paths"]["/api/v1/status"]["get"];
        assert!(
            status.get("parameters").is_none(),
            "no null where nothing was"
        );
        let submit = &doc["paths"]["/api/v1/tasks"]["post"];
        assert_eq!(
            submit["responses"]["201"]["description"],
            "Created and committed"
        );
        let task = &doc["components"]["schemas"]["NewTask"]["properties"];
        assert_eq!(task["depends_on"]["items"]["format"], "uuid");
        assert_eq!(task["capability"]["maxLength"], 128);
        let token = &doc["components"]["schemas"]["NewToken"]["properties"];
        assert_eq!(token["groups"]["items"]["maxLength"], 128);
    }

    /// Generators name a client's methods after them (two `list`s would clash), and OpenAPI
    /// requires them unique.
    #[test]
    fn every_operation_has_its_own_id() {
        let mut seen = std::collections::BTreeSet::new();
        for (path, item) in document()["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str();
                let id = id.unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                assert!(seen.insert(id.to_string()), "{id} is used twice");
            }
        }
        assert!(seen.contains("submit_task") && seen.contains("list_agents"));
    }

    /// The dashboard's TypeScript types are generated from its copy of the document, so a change
    /// to the API that leaves the copy behind would leave the types behind too.
    #[test]
    fn the_dashboards_copy_of_the_document_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboard/openapi.json");
        let text = std::fs::read_to_string(&path).expect("dashboard/openapi.json is committed");
        let copy: Value = serde_json::from_str(&text).expect("dashboard/openapi.json is JSON");
        assert!(
            copy == *document(),
            "dashboard/openapi.json is stale: run `cargo run -p hive-cli -- openapi > \
             dashboard/openapi.json`, then `npm run types` in dashboard/, and commit both"
        );
    }

    /// The patterns utoipa needs as literals are the same as the ones `amend` writes.
    #[test]
    fn every_copy_of_a_name_pattern_in_the_document_is_the_same() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let list_capability = doc["paths"]["/api/v1/tasks"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "capability")
            .unwrap()["schema"]["pattern"]
            .clone();
        for (what, pattern) in [
            (
                "NewTask.capability",
                &schemas["NewTask"]["properties"]["capability"]["pattern"],
            ),
            ("the task list's capability", &list_capability),
            (
                "NewToken.capabilities",
                &schemas["NewToken"]["properties"]["capabilities"]["items"]["pattern"],
            ),
            (
                "a swarm's group",
                &doc["paths"]["/api/v1/swarms/{group}/messages"]["post"]["parameters"][0]["schema"]
                    ["pattern"],
            ),
        ] {
            assert_eq!(pattern, CAPABILITY_PATTERN, "{what}");
        }
        assert_eq!(
            schemas["NewToken"]["properties"]["name"]["pattern"],
            TOKEN_NAME_PATTERN
        );
        // And each pattern is the rule the hub checks, byte for byte.
        for byte in 0x20u8..0x7f {
            let text = (byte as char).to_string();
            assert_eq!(
                hive_core::Capability::parse(&text, "capability").is_ok(),
                in_class(CAPABILITY_PATTERN, byte),
                "capability {text:?}"
            );
            assert_eq!(
                crate::auth::tokens::valid_name(&text),
                in_class(TOKEN_NAME_PATTERN, byte),
                "token name {text:?}"
            );
        }
    }

    /// Whether `byte` is in the one character class of a pattern `^[...]+$` (ranges `a-z`, and
    /// a `-` last or first standing for itself).
    fn in_class(pattern: &str, byte: u8) -> bool {
        let class = pattern
            .strip_prefix("^[")
            .and_then(|p| p.strip_suffix("]+$"))
            .expect("a pattern of one character class")
            .as_bytes();
        let mut i = 0;
        while i < class.len() {
            if i + 2 < class.len() && class[i + 1] == b'-' {
                if (class[i]..=class[i + 2]).contains(&byte) {
                    return true;
                }
                i += 3;
            } else {
                if class[i] == byte {
                    return true;
                }
                i += 1;
            }
        }
        false
    }

    #[test]
    fn a_token_lifetimes_bound_is_the_one_the_hub_checks() {
        let doc = document();
        let lifetime = &doc["components"]["schemas"]["NewToken"]["properties"]["expires_in_s"];
        assert_eq!(lifetime["maximum"], hive_proto::api::MAX_TOKEN_LIFETIME_S);
        assert_eq!(lifetime["minimum"], 1);
    }

    #[test]
    fn the_served_document_states_this_hubs_longest_wait() {
        let mut config = crate::config::HubConfig::new(([127, 0, 0, 1], 0).into(), "unused".into());
        config.max_wait = std::time::Duration::from_millis(1500);
        let doc = for_hub(&config);
        let wait = &doc["paths"]["/api/v1/tasks/{id}/wait"]["get"]["parameters"];
        let timeout = wait
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "timeout_ms");
        assert_eq!(timeout.unwrap()["schema"]["maximum"], 1500);
    }
}
