//! `ApiJson<T>`: the JSON body extractor. Unlike axum's `Json`, every rejection is an
//! [`ApiError`] with a JSON body that names the offending field (as a path such as
//! `tasks[3].priority`), found with `serde_path_to_error`. The body must arrive within
//! `limits.body_read_timeout_ms` (`408 body_timeout`), and find room as it arrives (`503
//! overloaded` otherwise, `admission::body`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !(mime == "application/json" || mime.ends_with("+json")) {
            return Err(ApiError::UnsupportedMediaType {
                message: format!("expected Content-Type: application/json, got {content_type:?}"),
            });
        }
        let limit = state.config.connections.body_read_timeout;
        let read = tokio::time::timeout(limit, Bytes::from_request(req, state))
            .await
            .map_err(|_| ApiError::BodyTimeout {
                ms: limit.as_millis() as u64,
            })?;
        let bytes = read.map_err(|rejection| {
            if crate::admission::body::found_no_room(&rejection) {
                ApiError::Overloaded {
                    what: "request bodies",
                    retry_after_s: 1,
                }
            } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    field: None,
                    message: format!(
                        "the request body is over the hub's limit of {} bytes \
                         (server.max_body_bytes)",
                        state.config.max_body_bytes
                    ),
                }
            } else {
                ApiError::MalformedJson {
                    message: format!("cannot read the request body: {rejection}"),
                }
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON document, naming the field at fault in the error (found by parsing again, with
/// the path tracked, once the plain parse failed).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would take `[..]` for a struct, field by position; every body here is an object.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(ApiError::InvalidField {
            field: None,
            message: "the request body must be a JSON object".into(),
        });
    }
    // The fast path: tracking the path costs on every field, and only an error needs it. A body
    // checked as UTF-8 once, whole, is parsed as text: from bytes serde_json checks each string
    // of it on its own (1,250 instructions a task in a batch, BENCHMARKS.md).
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    };
    if let Ok(value) = parsed {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        describe(inner, &path)
    })?;
    de.end().map_err(|e| describe(e, "."))?;
    Ok(value)
}

fn describe(e: serde_json::Error, path: &str) -> ApiError {
    use serde_json::error::Category;
    let message = e.to_string();
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::MalformedJson { message },
        Category::Data => {
            let mut field = (path != ".").then(|| path.to_string());
            // serde reports a missing field at its parent; name the field itself.
            if let Some(name) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                field = Some(match field {
                    Some(parent) => format!("{parent}.{name}"),
                    None => name.to_string(),
                });
            }
            ApiError::InvalidField { field, message }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_proto::api::{NewTask, NewTaskBatch};

    fn field_of(body: &str) -> (String, Option<String>) {
        match parse::<NewTaskBatch>(body.as_bytes()) {
            Err(ApiError::InvalidField { field, message }) => (message, field),
            Err(ApiError::MalformedJson { message }) => (message, Some("<malformed>".into())),
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field_of(r#"{"tasks":[{"capability":"a"},{"capability":"b","priority":"high"}]}"#)
                .1
                .as_deref(),
            Some("tasks[1].priority")
        );
        assert_eq!(
            field_of(r#"{"tasks":[{}]}"#).1.as_deref(),
            Some("tasks[0].capability")
        );
        assert_eq!(
            field_of(r#"{"tasks":[{"capability":"a","colour":1}]}"#)
                .1
                .as_deref(),
            Some("tasks[0].colour")
        );
        assert_eq!(
            field_of(r#"{"tasks":[{"capability":"a","priority":300}]}"#)
                .1
                .as_deref(),
            Some("tasks[0].priority")
        );
        assert_eq!(
            field_of(r#"{"tasks":[{"capab"#).1.as_deref(),
            Some("<malformed>")
        );
        assert_eq!(
            field_of(r#"{"tasks":[]} x"#).1.as_deref(),
            Some("<malformed>")
        );
    }

    #[test]
    fn a_raw_payload_survives_untouched() {
        let t: NewTask = parse(br#"{"capability":"a","payload":{"x": [1, 2.50]}}"#).unwrap();
        assert_eq!(t.payload.unwrap().get(), r#"{"x": [1, 2.50]}"#);
    }

    mod properties {
        use axum::response::IntoResponse;
        use hive_proto::api::{NewTask, NewTaskBatch};
        use proptest::prelude::*;

        use super::super::parse;

        /// A body is parsed, or refused with a 4xx naming what is wrong: never a panic, never
        /// a 5xx.
        fn client_error_or_ok<T: serde::de::DeserializeOwned>(
            bytes: &[u8],
        ) -> Result<(), TestCaseError> {
            if let Err(e) = parse::<T>(bytes) {
                let status = e.into_response().status();
                prop_assert!(
                    status.is_client_error(),
                    "{status} for {:?}",
                    String::from_utf8_lossy(bytes)
                );
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn arbitrary_bytes_are_parsed_or_refused_with_a_4xx(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                client_error_or_ok::<NewTask>(&bytes)?;
                client_error_or_ok::<NewTaskBatch>(&bytes)?;
            }

            #[test]
            fn task_shaped_objects_are_parsed_or_refused_with_a_4xx(
                capability in prop_oneof![Just(serde_json::json!("x")), Just(serde_json::json!(5)), Just(serde_json::json!(null))],
                priority in prop_oneof![Just(serde_json::json!(3)), Just(serde_json::json!(-1)), Just(serde_json::json!(1e40)), Just(serde_json::json!("high"))],
                extra in prop::option::of("[a-z]{1,8}"),
            ) {
                let mut body = serde_json::json!({"capability": capability, "priority": priority});
                if let Some(key) = extra {
                    body[key] = serde_json::json!(true);
                }
                let text = body.to_string();
                client_error_or_ok::<NewTask>(text.as_bytes())?;
                let batch = format!("{{\"tasks\":[{text},{text}]}}");
                client_error_or_ok::<NewTaskBatch>(batch.as_bytes())?;
            }
        }
    }
}
