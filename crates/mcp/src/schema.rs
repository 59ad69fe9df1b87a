//! JSON Schemas for tools, cut out of the hub's OpenAPI document: an MCP tool's schema must stand
//! alone, so the document's references (`#/components/schemas/X`) become the schema's own
//! `$defs`, holding only what the schema reaches. OpenAPI 3.1 schemas are JSON Schema 2020-12,
//! so nothing else changes.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

const COMPONENTS: &str = "#/components/schemas/";
const DEFS: &str = "#/$defs/";

/// The component a `$ref` names, if it names one.
fn component(reference: &str) -> Option<&str> {
    reference.strip_prefix(COMPONENTS)
}

/// `schema` with the component it refers to in its place, when it is only a reference.
pub fn resolved<'a>(schema: &'a Value, doc: &'a Value) -> &'a Value {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(component)
    {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    }
}

fn collect_references(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child.as_str().and_then(component)) {
                    ("$ref", Some(name)) => names.push(name.to_owned()),
                    _ => collect_references(child, names),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, names)),
        _ => {}
    }
}

fn rewrite_references(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(text) if key == "$ref" => {
                        if let Some(name) = component(text) {
                            *text = format!("{DEFS}{name}");
                        }
                    }
                    _ => rewrite_references(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_references),
        _ => {}
    }
}

/// `root` as a schema of its own: every component it reaches, directly or through another, is
/// copied into its `$defs`, and the references point there.
pub fn standalone(root: Map<String, Value>, doc: &Value) -> Map<String, Value> {
    let mut root = Value::Object(root);
    let mut pending = Vec::new();
    collect_references(&root, &mut pending);
    let mut defs = Map::new();
    let mut seen = BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let definition = doc["components"]["schemas"][&name].clone();
        collect_references(&definition, &mut pending);
        defs.insert(name, definition);
    }
    if !defs.is_empty() {
        root["$defs"] = Value::Object(defs);
    }
    rewrite_references(&mut root);
    match root {
        Value::Object(map) => map,
        _ => unreachable!("built from an object"),
    }
}

/// An object schema with these properties, of which `required` must be given.
pub fn object(properties: Map<String, Value>, required: Vec<String>) -> Map<String, Value> {
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), json!(required));
    }
    schema.insert("additionalProperties".into(), json!(false));
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_defs_holding_only_what_is_reached() {
        let doc = json!({"components": {"schemas": {
            "Task": {"type": "object", "properties": {
                "attempts": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}}
            }},
            "Attempt": {"type": "object", "properties": {"vote": {"$ref": "#/components/schemas/Vote"}}},
            "Vote": {"type": "string"},
            "Unrelated": {"type": "integer"},
        }}});
        let root = resolved(&json!({"$ref": "#/components/schemas/Task"}), &doc)
            .as_object()
            .unwrap()
            .clone();
        let schema = Value::Object(standalone(root, &doc));
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["properties"]["attempts"]["items"]["$ref"],
            "#/$defs/Attempt"
        );
        assert_eq!(
            schema["$defs"]["Attempt"]["properties"]["vote"]["$ref"],
            "#/$defs/Vote"
        );
        assert_eq!(schema["$defs"]["Vote"]["type"], "string");
        assert!(schema["$defs"].get("Unrelated").is_none());
        assert!(schema["$defs"].get("Task").is_none());
    }
}
