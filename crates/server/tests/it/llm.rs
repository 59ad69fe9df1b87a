//! `hive.llm` against a chat-completions server the test starts on 127.0.0.1: plain and streamed
//! answers, tokens and cost in the result and in /metrics, a 429 with `Retry-After` retried no
//! sooner than it asked, a 400 failed without retries, a malformed answer retried, a bad payload
//! refused before any request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hive_proto::api::{NewTask, TaskStatus};
use hive_server::llm::{Price, Provider};
use serde_json::{Value, json};

use crate::util::{
    TestHub, eventually, finished, metrics_text, restart_with, snapshot, start_hub_with,
};

/// What the fake provider saw, and how often.
#[derive(Clone, Default)]
struct Seen {
    calls: Arc<AtomicU32>,
    keys: Arc<Mutex<Vec<Option<String>>>>,
    /// Requests whose client went away before the answer (a `hang` aborted).
    abandoned: Arc<AtomicU32>,
}

/// Counts a request abandoned when the handler is dropped before it answers.
struct Abandoned(Arc<AtomicU32>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Answers by the last message's text: `throttle-once` is a 429 (`Retry-After: 1`) the first
/// time, `bad` a 400, `malformed` a 200 that is not JSON, `json` a JSON object as text, `hang`
/// never; anything else is echoed. A request with `stream: true` gets server-sent events.
async fn completions(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let call = seen.calls.fetch_add(1, Ordering::SeqCst);
    let key = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    seen.keys.lock().unwrap().push(key);
    let messages = body["messages"].as_array().unwrap();
    let text = messages.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let model = body["model"].as_str().unwrap().to_owned();
    match text.as_str() {
        "throttle-once" if call == 0 => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response();
        }
        "bad" => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": "no such model, really"}})),
            )
                .into_response();
        }
        "malformed" => return (StatusCode::OK, "<html>oops</html>").into_response(),
        "hang" => {
            let _guard = Abandoned(seen.abandoned.clone());
            std::future::pending::<()>().await;
        }
        _ => {}
    }
    let answer = if text == "json" {
        r#"{"answer": 42}"#.to_owned()
    } else {
        format!("echo: {text}")
    };
    let (prompt_tokens, completion_tokens) = (text.len() as u64, answer.len() as u64);
    if body["stream"] == true {
        let mut events = String::new();
        for piece in answer.as_bytes().chunks(3) {
            let piece = String::from_utf8_lossy(piece);
            let chunk = json!({"model": model, "choices": [{"delta": {"content": piece}}]});
            events.push_str(&format!("data: {chunk}\n\n"));
        }
        let last = json!({"model": model, "choices": [{"delta": {}, "finish_reason": "stop"}]});
        let usage = json!({"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}});
        events.push_str(&format!(
            "data: {last}\n\ndata: {usage}\n\ndata: [DONE]\n\n"
        ));
        return ([("content-type", "text/event-stream")], events).into_response();
    }
    Json(json!({
        "model": model,
        "choices": [{"message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }))
    .into_response()
}

async fn fake_provider() -> (String, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn provider(name: &str, url: &str, stream: bool) -> Provider {
    Provider {
        name: name.into(),
        base_url: url.into(),
        api_key: Some("sk-test".into()),
        models: vec!["m1".into()],
        max_concurrent: 2,
        stream,
        prices: BTreeMap::from([(
            "m1".into(),
            Price {
                prompt_per_1k: 1.0,
                completion_per_1k: 2.0,
            },
        )]),
    }
}

async fn hub(url: &str) -> TestHub {
    let (plain, streamed) = (
        provider("plain", url, false),
        provider("streamed", url, true),
    );
    start_hub_with(|c| {
        c.llm = vec![plain, streamed];
        c.metrics_interval = Duration::from_millis(100);
    })
    .await
}

async fn run(
    t: &TestHub,
    capability: &str,
    payload: Value,
    max_attempts: u32,
) -> hive_proto::api::Task {
    let task = NewTask {
        payload: Some(serde_json::value::to_raw_value(&payload).unwrap()),
        max_attempts: Some(max_attempts),
        backoff_ms: Some(10),
        ..NewTask::new(capability)
    };
    let id = t.client.submit(&task).await.unwrap().id;
    finished(&t.client, &id).await
}

fn result(task: &hive_proto::api::Task) -> Value {
    serde_json::from_str(task.result.as_ref().expect("a result").get()).unwrap()
}

#[tokio::test]
async fn plain_and_streamed_answers_carry_text_tokens_and_cost() {
    let (url, seen) = fake_provider().await;
    let t = hub(&url).await;
    for capability in ["llm:plain/m1", "llm:streamed/m1"] {
        let task = run(&t, capability, json!({"prompt": "hello there"}), 1).await;
        assert_eq!(
            task.status,
            TaskStatus::Succeeded,
            "{capability}: {:?}",
            task.error
        );
        let r = result(&task);
        assert_eq!(r["output"], "echo: hello there", "{capability}");
        assert_eq!(r["finish_reason"], "stop");
        assert_eq!(r["model"], "m1");
        assert_eq!(
            r["usage"],
            json!({"prompt_tokens": 11, "completion_tokens": 17, "total_tokens": 28})
        );
        // 11 prompt tokens at 1.0 and 17 completion tokens at 2.0 per 1,000.
        assert!((r["cost"].as_f64().unwrap() - 0.045).abs() < 1e-9, "{r}");
    }
    assert!(
        seen.keys
            .lock()
            .unwrap()
            .iter()
            .all(|k| k.as_deref() == Some("Bearer sk-test"))
    );
    let json_task = run(
        &t,
        "llm:plain/m1",
        json!({"messages": [{"role": "user", "content": "json"}],
               "response_format": {"type": "json_object"}}),
        1,
    )
    .await;
    assert_eq!(result(&json_task)["output"], json!({"answer": 42}));

    let text = metrics_text(&t.url).await;
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle} in /metrics"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let plain = r#"provider="plain",model="m1",capability="llm:plain/m1""#;
    assert_eq!(
        line(&format!(
            r#"hive_llm_tokens_total{{{plain},kind="prompt"}}"#
        )),
        15.0
    );
    assert_eq!(
        line(&format!(
            r#"hive_llm_requests_total{{{plain},result="ok"}}"#
        )),
        2.0
    );
    assert!(line(&format!(r#"hive_llm_cost_total{{{plain}}}"#)) > 0.045);

    // The metrics JSON (and so the dashboard) has the same, once a snapshot is taken.
    let usage = eventually(
        "a snapshot with the tokens",
        Duration::from_secs(10),
        || async {
            let usage = snapshot(&t.url).await.llm.get("llm:streamed/m1")?.clone();
            (usage.requests == 1).then_some(usage)
        },
    )
    .await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (11, 17));
    assert_eq!(usage.provider, "streamed");
}

fn parse_time(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).unwrap()
}

#[tokio::test]
async fn a_throttled_request_is_retried_no_sooner_than_retry_after() {
    let (url, seen) = fake_provider().await;
    let t = hub(&url).await;
    let task = run(&t, "llm:plain/m1", json!({"prompt": "throttle-once"}), 3).await;
    assert_eq!(task.status, TaskStatus::Succeeded, "{:?}", task.error);
    assert_eq!(task.attempts.len(), 2);
    let first = &task.attempts[0];
    assert!(first.error.as_deref().unwrap().contains("429"), "{first:?}");
    let ended = parse_time(first.ended_at.as_deref().unwrap());
    let retried = parse_time(&task.attempts[1].started_at);
    // The provider asked for 1 s; the task's own backoff was 10 ms.
    assert!(
        retried.duration_since(ended).unwrap() >= Duration::from_millis(999),
        "retried {:?} after the 429",
        retried.duration_since(ended)
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refusals_malformed_answers_and_bad_payloads_fail_as_they_should() {
    let (url, seen) = fake_provider().await;
    let t = hub(&url).await;

    let bad = run(&t, "llm:plain/m1", json!({"prompt": "bad"}), 3).await;
    assert_eq!(bad.status, TaskStatus::Failed);
    assert_eq!(bad.attempts.len(), 1, "a 400 is not retried");
    assert!(
        bad.error
            .as_deref()
            .unwrap()
            .contains("no such model, really")
    );

    let malformed = run(&t, "llm:plain/m1", json!({"prompt": "malformed"}), 2).await;
    assert_eq!(malformed.status, TaskStatus::Failed);
    assert_eq!(malformed.attempts.len(), 2, "a malformed answer is retried");
    assert!(malformed.error.as_deref().unwrap().contains("malformed"));

    let calls = seen.calls.load(Ordering::SeqCst);
    let refused = run(&t, "llm:plain/m1", json!({"prompt": "x", "top_k": 1}), 3).await;
    assert_eq!(refused.status, TaskStatus::Failed);
    assert_eq!(refused.attempts.len(), 1);
    assert!(refused.error.as_deref().unwrap().contains("\"top_k\""));
    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        calls,
        "no request was made"
    );

    let text = metrics_text(&t.url).await;
    assert!(text.contains(
        r#"hive_llm_requests_total{provider="plain",model="m1",capability="llm:plain/m1",result="failed"} 3"#
    ));
}

#[tokio::test]
async fn each_provider_is_an_agent_with_its_models_and_slots() {
    let (url, _) = fake_provider().await;
    let t = hub(&url).await;
    let agents = t.client.agents().await.unwrap();
    let plain = agents.iter().find(|a| a.name == "llm:plain").unwrap();
    assert_eq!(plain.slots, 2);
    assert!(plain.capabilities.contains_key("llm:plain/m1"));
}

#[tokio::test]
async fn a_cancel_aborts_the_request_in_flight() {
    let (url, seen) = fake_provider().await;
    let t = hub(&url).await;
    let task = NewTask {
        payload: Some(serde_json::value::to_raw_value(&json!({"prompt": "hang"})).unwrap()),
        ..NewTask::new("llm:plain/m1")
    };
    let id = t.client.submit(&task).await.unwrap().id;
    eventually("the request to arrive", Duration::from_secs(10), || async {
        (seen.calls.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(
        t.client.cancel(&id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    eventually(
        "the request to be dropped",
        Duration::from_secs(10),
        || async { (seen.abandoned.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
}

/// A hub that stops with a request in flight aborts it and fails the attempt then, so that
/// after the restart the task is asked again at once, not after its ten-minute lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_the_hub_stops_is_retried_at_once_after_the_restart() {
    let (url, seen) = fake_provider().await;
    let t = hub(&url).await;
    let task = NewTask {
        payload: Some(serde_json::value::to_raw_value(&json!({"prompt": "hang"})).unwrap()),
        timeout_ms: Some(600_000),
        backoff_ms: Some(10),
        ..NewTask::new("llm:plain/m1")
    };
    let id = t.client.submit(&task).await.unwrap().id;
    eventually("the request to arrive", Duration::from_secs(10), || async {
        (seen.calls.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let plain = provider("plain", &url, false);
    let t = restart_with(t, |c| c.llm = vec![plain]).await;
    eventually("the request aborted", Duration::from_secs(10), || async {
        (seen.abandoned.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let first = t.client.task(&id).await.unwrap().attempts[0].clone();
    assert_eq!(first.outcome, Some(hive_proto::api::AttemptOutcome::Failed));
    assert!(first.error.unwrap().contains("the hub shut down"));
    eventually("the task asked again", Duration::from_secs(10), || async {
        (seen.calls.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    t.client.cancel(&id).await.unwrap();
}

#[tokio::test]
async fn a_streamed_answer_goes_out_as_progress_while_it_arrives() {
    let (url, _) = fake_provider().await;
    let t = hub(&url).await;
    let mut events = crate::util::ws(&t.url, "/ws/events").await;
    let task = NewTask {
        payload: Some(serde_json::value::to_raw_value(&json!({"prompt": "a long story"})).unwrap()),
        ..NewTask::new("llm:streamed/m1")
    };
    let id = t.client.submit(&task).await.unwrap().id;
    let mut streamed = String::new();
    'frames: loop {
        let frame = crate::util::next_json(&mut events).await;
        for event in frame["events"].as_array().into_iter().flatten() {
            if event["task_id"] != id.as_str() {
                continue;
            }
            match event["type"].as_str() {
                Some("progress") => streamed.push_str(event["output"].as_str().unwrap()),
                Some("task") if event["status"] == "succeeded" => break 'frames,
                _ => {}
            }
        }
    }
    assert_eq!(streamed, "echo: a long story");
}
