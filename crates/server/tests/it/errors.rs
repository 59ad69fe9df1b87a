//! Bad input: every mistake gets its 4xx and a JSON error naming the field; nothing gets a 5xx.

use hive_proto::api::NewTask;
use reqwest::StatusCode;
use serde_json::Value;

use crate::util::*;

async fn post(url: &str, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let response = http()
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text:?}"));
    (status, body)
}

async fn get(url: &str, path: &str) -> (StatusCode, Value) {
    let response = http().get(format!("{url}{path}")).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn code(body: &Value) -> (&str, Option<&str>) {
    (
        body["error"]["code"].as_str().unwrap(),
        body["error"]["field"].as_str(),
    )
}

#[tokio::test]
async fn each_bad_input_gets_its_status_and_names_the_field() {
    let t = start_hub_with(|c| c.limits.max_payload_bytes = 1024).await;
    let u = t.url.as_str();
    // (what, path, body, status, code, field)
    type Case<'a> = (&'a str, &'a str, String, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed JSON",
            "/api/v1/tasks",
            r#"{"capability": "a""#.into(),
            400,
            "malformed_json",
            None,
        ),
        (
            "wrong type",
            "/api/v1/tasks",
            r#"{"capability":"a","priority":"high"}"#.into(),
            400,
            "invalid_field",
            Some("priority"),
        ),
        (
            "unknown field",
            "/api/v1/tasks",
            r#"{"capability":"a","colour":"red"}"#.into(),
            400,
            "invalid_field",
            Some("colour"),
        ),
        (
            "missing capability",
            "/api/v1/tasks",
            r#"{"payload":{}}"#.into(),
            400,
            "invalid_field",
            Some("capability"),
        ),
        (
            "empty capability",
            "/api/v1/tasks",
            r#"{"capability":""}"#.into(),
            400,
            "invalid_field",
            Some("capability"),
        ),
        (
            "priority above 9",
            "/api/v1/tasks",
            r#"{"capability":"a","priority":10}"#.into(),
            400,
            "invalid_field",
            Some("priority"),
        ),
        (
            "negative priority",
            "/api/v1/tasks",
            r#"{"capability":"a","priority":-1}"#.into(),
            400,
            "invalid_field",
            Some("priority"),
        ),
        (
            "zero attempts",
            "/api/v1/tasks",
            r#"{"capability":"a","max_attempts":0}"#.into(),
            400,
            "invalid_field",
            Some("max_attempts"),
        ),
        (
            "a batch of one task too many (refused while parsing)",
            "/api/v1/tasks/batch",
            format!(
                r#"{{"tasks":[{}]}}"#,
                vec![r#"{"capability":"a"}"#; hive_proto::api::MAX_BATCH_TASKS + 1].join(",")
            ),
            400,
            "invalid_field",
            Some("tasks"),
        ),
        (
            "payload over the limit",
            "/api/v1/tasks",
            format!(r#"{{"capability":"a","payload":"{}"}}"#, "x".repeat(2000)),
            413,
            "payload_too_large",
            Some("payload"),
        ),
        (
            "bad dependency id",
            "/api/v1/tasks",
            r#"{"capability":"a","depends_on":["nope"]}"#.into(),
            400,
            "invalid_field",
            Some("depends_on[0]"),
        ),
        (
            "unknown dependency",
            "/api/v1/tasks",
            r#"{"capability":"a","depends_on":["01a21d96-9d53-7413-8f15-944528d17f3d"]}"#.into(),
            400,
            "unknown_dependency",
            Some("depends_on"),
        ),
        (
            "empty batch",
            "/api/v1/tasks/batch",
            r#"{"tasks":[]}"#.into(),
            400,
            "invalid_field",
            Some("tasks"),
        ),
        (
            "bad task in a batch",
            "/api/v1/tasks/batch",
            r#"{"tasks":[{"capability":"a"},{"capability":"b","priority":99}]}"#.into(),
            400,
            "invalid_field",
            Some("tasks[1].priority"),
        ),
        (
            "a hint that is not a number",
            "/api/v1/tasks",
            r#"{"capability":"a","features":{"tokens":"many"}}"#.into(),
            400,
            "invalid_field",
            Some("features.tokens"),
        ),
        (
            "too many hints",
            "/api/v1/tasks",
            format!(
                r#"{{"capability":"a","features":{{{}}}}}"#,
                (0..17)
                    .map(|i| format!(r#""f{i}":{i}"#))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            400,
            "invalid_field",
            Some("features"),
        ),
        (
            "a hint with an empty name",
            "/api/v1/tasks/batch",
            r#"{"tasks":[{"capability":"a","features":{"":1}}]}"#.into(),
            400,
            "invalid_field",
            Some("tasks[0].features"),
        ),
        (
            "not an object",
            "/api/v1/tasks",
            "[1,2,3]".into(),
            400,
            "invalid_field",
            None,
        ),
    ];
    for (what, path, body, status, expected_code, field) in cases {
        let (got, body) = post(u, path, body).await;
        assert_eq!(got.as_u16(), status, "{what}: {body}");
        assert_eq!(code(&body), (expected_code, field), "{what}: {body}");
        assert!(
            !body["error"]["message"].as_str().unwrap().is_empty(),
            "{what}"
        );
    }
    let nothing_stored = t.client.status().await.unwrap();
    assert_eq!(
        nothing_stored.tasks.values().sum::<u64>(),
        0,
        "no bad request stored anything"
    );

    let response = http()
        .post(format!("{u}/api/v1/tasks"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let (status, body) = get(u, "/api/v1/tasks/01a21d96-9d53-7413-8f15-944528d17f3d").await;
    assert_eq!((status.as_u16(), code(&body).0), (404, "not_found"));
    let (status, body) = get(u, "/api/v1/tasks/not-an-id").await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (400, ("invalid_field", Some("id")))
    );
    let (status, body) = get(u, "/api/v1/tasks?status=done").await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (400, ("invalid_field", Some("status")))
    );
    let (status, body) = get(u, "/api/v1/tasks?limit=5000").await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (400, ("invalid_field", Some("limit")))
    );
    let (status, _) = get(u, "/api/v1/nowhere").await;
    assert_eq!(status, 404);
    let (status, body) = post(
        u,
        "/api/v1/agents/01a21d96-9d53-7413-8f15-944528d17f3d/drain",
        "",
    )
    .await;
    assert_eq!((status.as_u16(), code(&body).0), (404, "not_found"));

    let task = t.client.submit(&NewTask::new("a")).await.unwrap();
    let (status, _) = post(u, &format!("/api/v1/tasks/{}/cancel", task.id), "").await;
    assert_eq!(status, 200);
    let (status, body) = post(u, &format!("/api/v1/tasks/{}/cancel", task.id), "").await;
    assert_eq!(
        (status.as_u16(), code(&body).0),
        (409, "conflict"),
        "cancelling a finished task"
    );
}

/// A tiny deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let t = start_hub_with(|c| c.max_body_bytes = 64 * 1024).await;
    let tasks = vec![r#"{"capability":"a"}"#; 5_000].join(",");
    let (status, body) = post(
        &t.url,
        "/api/v1/tasks/batch",
        format!(r#"{{"tasks":[{tasks}]}}"#),
    )
    .await;
    assert_eq!(status.as_u16(), 413, "{body}");
    assert_eq!(code(&body).0, "payload_too_large", "{body}");
    // The bound and the setting that raises it are named.
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("65536 bytes"), "{body}");
    assert!(message.contains("server.max_body_bytes"), "{body}");
    // Under the limit the same route takes a batch.
    let (status, body) = post(
        &t.url,
        "/api/v1/tasks/batch",
        r#"{"tasks":[{"capability":"a"}]}"#,
    )
    .await;
    assert_eq!(status.as_u16(), 201, "{body}");
}

#[tokio::test]
async fn a_thousand_random_or_truncated_bodies_never_get_a_5xx() {
    let t = start_hub().await;
    let valid = [
        r#"{"capability":"fuzz","payload":{"a":[1,2,{"b":null}]},"priority":3,"max_attempts":2}"#,
        r#"{"tasks":[{"capability":"fuzz"},{"capability":"fuzz","depends_on":[],"idempotency_key":"k"}]}"#,
        r#"{"capability":"fuzz","timeout_ms":10,"backoff_ms":0,"payload":"\u00e9\ud83d\ude00"}"#,
    ];
    let alphabet = br#"{}[]":,0123456789.-+eE truefalsnul\abcdefxyz"#;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let http = http();
    let mut accepted = 0;
    for i in 0..1_000 {
        let base = valid[rng.below(valid.len())].as_bytes();
        let body: Vec<u8> = match i % 4 {
            0 => base[..rng.below(base.len())].to_vec(),
            1 => {
                let mut b = base.to_vec();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(b.len());
                    b[at] = alphabet[rng.below(alphabet.len())];
                }
                b
            }
            2 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
            _ => {
                let mut b = base.to_vec();
                let at = rng.below(b.len());
                b.insert(at, alphabet[rng.below(alphabet.len())]);
                b
            }
        };
        let path = if body.starts_with(br#"{"tasks""#) && i % 2 == 0 {
            "/api/v1/tasks/batch"
        } else {
            "/api/v1/tasks"
        };
        let response = http
            .post(format!("{}{path}", t.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status.as_u16() < 500,
            "body {:?} got {status}",
            String::from_utf8_lossy(&body)
        );
        if status.is_success() {
            accepted += 1;
        } else {
            let error: Value = response.json().await.expect("a JSON error body");
            assert!(error["error"]["code"].is_string(), "{error}");
        }
    }
    assert!(accepted > 0, "some mutations stay valid and are accepted");
    assert!(t.client.status().await.is_ok(), "the hub still answers");
}
