//! One chat completion, as the OpenAI-compatible API defines it (`POST {base_url}/chat/completions`):
//! a task's payload checked and turned into the request ([`request`]), the provider's answer
//! turned into the task's result or into a failure that says whether and when to retry
//! ([`answer`], [`refusal`]), plain or streamed (server-sent events, [`Stream`]).

use std::time::Duration;

use hive_proto::sse::SseReader;
use serde_json::{Map, Value, json};

use crate::metrics::llm::Tokens;

/// A request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub body: Value,
    /// The task asked for JSON (`response_format`): the result is the parsed object.
    pub wants_json: bool,
}

const PAYLOAD_KEYS: &str = "messages, prompt, max_tokens, temperature, response_format";

/// The request for `model` from a task's `payload`: `messages` (as the API takes them) or a
/// `prompt` (one user message), and optionally `max_tokens`, `temperature`, `response_format`.
/// An error names what is wrong; retrying cannot help it.
pub fn request(model: &str, payload: &str, stream: bool) -> Result<Request, String> {
    let payload: Value =
        serde_json::from_str(payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let Value::Object(payload) = payload else {
        return Err(format!(
            "the payload must be an object with messages or prompt ({PAYLOAD_KEYS})"
        ));
    };
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    let mut wants_json = false;
    for (key, value) in &payload {
        match key.as_str() {
            "messages" => {
                let valid = value.as_array().is_some_and(|messages| {
                    !messages.is_empty()
                        && messages
                            .iter()
                            .all(|m| m["role"].is_string() && m.get("content").is_some())
                });
                if !valid {
                    return Err(
                        "messages must be a non-empty array of {\"role\", \"content\"} objects"
                            .into(),
                    );
                }
                body.insert("messages".into(), value.clone());
            }
            "prompt" => {
                let prompt = value.as_str().ok_or("prompt must be a string")?;
                body.insert(
                    "messages".into(),
                    json!([{"role": "user", "content": prompt}]),
                );
            }
            "max_tokens" => {
                if value.as_u64().is_none_or(|n| n == 0) {
                    return Err("max_tokens must be a whole number of at least 1".into());
                }
                body.insert(key.clone(), value.clone());
            }
            "temperature" => {
                if !value.as_f64().is_some_and(|t| (0.0..=2.0).contains(&t)) {
                    return Err("temperature must be a number from 0 to 2".into());
                }
                body.insert(key.clone(), value.clone());
            }
            "response_format" => {
                let kind = value["type"].as_str().ok_or(
                    "response_format must be an object with a type (text, json_object, json_schema)",
                )?;
                wants_json = kind != "text";
                body.insert(key.clone(), value.clone());
            }
            other => {
                return Err(format!(
                    "the payload has an unknown field {other:?}; it takes {PAYLOAD_KEYS}"
                ));
            }
        }
    }
    if payload.contains_key("messages") == payload.contains_key("prompt") {
        return Err("the payload needs messages or prompt (one of them)".into());
    }
    if stream {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Request {
        body: Value::Object(body),
        wants_json,
    })
}

/// Why an attempt produced no result.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub error: String,
    pub retry: Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The request itself is wrong: another attempt would get the same answer.
    No,
    /// After the task's backoff.
    Yes,
    /// Not before this long (the provider's `Retry-After`), or the backoff if that is longer.
    After(Duration),
}

/// A completion's parts, from either form of the answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub finish_reason: Option<String>,
    pub model: Option<String>,
    pub tokens: Option<Tokens>,
}

/// A provider's refusal: `status` and the answer's body. 429, 408 and 5xx are worth another
/// attempt (after `retry_after` when the provider gave one); any other 4xx is not.
pub fn refusal(status: u16, retry_after: Option<Duration>, body: &str) -> Failed {
    let reason = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(500).collect());
    let retry = match status {
        429 | 408 | 500..=599 => retry_after.map_or(Retry::Yes, Retry::After),
        _ => Retry::No,
    };
    Failed {
        error: format!("the provider answered {status}: {reason}"),
        retry,
    }
}

/// The `Retry-After` header's wait: seconds (an HTTP date is not read; the backoff applies).
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    let seconds: f64 = value?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

fn malformed(why: impl std::fmt::Display) -> Failed {
    Failed {
        error: format!("the provider's answer is malformed: {why}"),
        retry: Retry::Yes,
    }
}

fn tokens_of(usage: &Value) -> Option<Tokens> {
    Some(Tokens {
        prompt: usage["prompt_tokens"].as_u64()?,
        completion: usage["completion_tokens"].as_u64()?,
    })
}

/// A plain (not streamed) answer's body.
pub fn answer(body: &[u8]) -> Result<Completion, Failed> {
    let body: Value = serde_json::from_slice(body).map_err(malformed)?;
    let choice = &body["choices"][0];
    let text = choice["message"]["content"]
        .as_str()
        .ok_or_else(|| malformed("no choices[0].message.content"))?;
    Ok(Completion {
        text: text.to_owned(),
        finish_reason: choice["finish_reason"].as_str().map(str::to_owned),
        model: body["model"].as_str().map(str::to_owned),
        tokens: tokens_of(&body["usage"]),
    })
}

/// A streamed answer, read as its bytes arrive: `data: {chunk}` events, each adding
/// `choices[0].delta.content` to the text, ended by `data: [DONE]`.
#[derive(Debug, Default)]
pub struct Stream {
    events: SseReader,
    completion: Completion,
    done: bool,
}

impl Stream {
    /// Takes the next bytes; returns the text they added (for progress).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<String, Failed> {
        let events = self.events.feed(bytes);
        self.take(events)
    }

    fn take(&mut self, events: Vec<hive_proto::sse::SseEvent>) -> Result<String, Failed> {
        let mut added = String::new();
        for event in events {
            if event.data == "[DONE]" {
                self.done = true;
                continue;
            }
            let chunk: Value = serde_json::from_str(&event.data).map_err(malformed)?;
            if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
                added.push_str(piece);
            }
            if let Some(reason) = chunk["choices"][0]["finish_reason"].as_str() {
                self.completion.finish_reason = Some(reason.to_owned());
            }
            if let Some(model) = chunk["model"].as_str() {
                self.completion.model = Some(model.to_owned());
            }
            if let Some(tokens) = tokens_of(&chunk["usage"]) {
                self.completion.tokens = Some(tokens);
            }
        }
        self.completion.text.push_str(&added);
        Ok(added)
    }

    /// The completion, once the stream has ended with `[DONE]`.
    pub fn finish(mut self) -> Result<Completion, Failed> {
        // A last event the stream did not end with a blank line.
        let last = self.events.finish();
        self.take(last)?;
        if !self.done {
            return Err(malformed("the stream ended before [DONE]"));
        }
        Ok(self.completion)
    }
}

/// The task's result: the text (or the JSON it holds, when JSON was asked for), why the model
/// stopped, the model, the tokens and what they cost, and how long the provider took.
pub fn result(
    completion: Completion,
    wants_json: bool,
    latency: Duration,
    cost: Option<f64>,
) -> Result<Value, Failed> {
    let output = if wants_json {
        serde_json::from_str(&completion.text).map_err(|e| Failed {
            error: format!("JSON was asked for, and the model's answer is not JSON: {e}"),
            retry: Retry::Yes,
        })?
    } else {
        Value::String(completion.text)
    };
    let usage = completion.tokens.map(|t| {
        json!({
            "prompt_tokens": t.prompt,
            "completion_tokens": t.completion,
            "total_tokens": t.prompt + t.completion,
        })
    });
    let mut result = json!({
        "output": output,
        "finish_reason": completion.finish_reason,
        "model": completion.model,
        "usage": usage,
        "latency_ms": latency.as_millis() as u64,
    });
    if let Some(cost) = cost {
        result["cost"] = json!(cost);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_becomes_one_user_message_and_options_pass_through() {
        let r = request(
            "m",
            r#"{"prompt": "hi", "max_tokens": 5, "temperature": 0.5,
                "response_format": {"type": "json_object"}}"#,
            true,
        )
        .unwrap();
        assert!(r.wants_json);
        assert_eq!(
            r.body["messages"],
            json!([{"role": "user", "content": "hi"}])
        );
        assert_eq!(r.body["model"], "m");
        assert_eq!(r.body["max_tokens"], 5);
        assert_eq!(r.body["stream"], true);
        assert_eq!(r.body["stream_options"]["include_usage"], true);
    }

    #[test]
    fn a_bad_payload_says_what_is_wrong() {
        let err = |p: &str| request("m", p, false).unwrap_err();
        assert!(err("3").contains("must be an object"));
        assert!(err("{}").contains("messages or prompt"));
        assert!(
            err(r#"{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}"#)
                .contains("one of them")
        );
        assert!(err(r#"{"messages": []}"#).contains("non-empty"));
        assert!(err(r#"{"prompt": "a", "max_tokens": 0}"#).contains("max_tokens"));
        assert!(err(r#"{"prompt": "a", "temperature": 3}"#).contains("temperature"));
        assert!(err(r#"{"prompt": "a", "top_k": 3}"#).contains("\"top_k\""));
    }

    #[test]
    fn refusals_are_retried_or_not_by_status() {
        let wait = Some(Duration::from_secs(2));
        assert_eq!(
            refusal(429, wait, "").retry,
            Retry::After(Duration::from_secs(2))
        );
        assert_eq!(refusal(503, None, "").retry, Retry::Yes);
        let bad = refusal(400, wait, r#"{"error": {"message": "bad model"}}"#);
        assert_eq!(bad.retry, Retry::No);
        assert_eq!(bad.error, "the provider answered 400: bad model");
        assert_eq!(
            retry_after(Some(" 1.5 ")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }

    #[test]
    fn a_stream_is_assembled_across_chunk_boundaries() {
        let events = concat!(
            "data: {\"model\":\"m1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        let mut stream = Stream::default();
        let mut added = String::new();
        for piece in events.as_bytes().chunks(7) {
            added.push_str(&stream.feed(piece).unwrap());
        }
        assert_eq!(added, "Hello");
        let completion = stream.finish().unwrap();
        assert_eq!(completion.text, "Hello");
        assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
        assert_eq!(completion.model.as_deref(), Some("m1"));
        assert_eq!(
            completion.tokens,
            Some(Tokens {
                prompt: 3,
                completion: 2
            })
        );
        let mut cut = Stream::default();
        cut.feed(b"data: {\"choices\":[]}\n").unwrap();
        assert!(cut.finish().unwrap_err().error.contains("[DONE]"));
    }

    #[test]
    fn json_asked_for_is_parsed_or_the_attempt_fails() {
        let completion = |text: &str| Completion {
            text: text.into(),
            ..Completion::default()
        };
        let ok = result(completion("{\"a\": 1}"), true, Duration::ZERO, None).unwrap();
        assert_eq!(ok["output"], json!({"a": 1}));
        let text = result(completion("{\"a\": 1}"), false, Duration::ZERO, Some(0.5)).unwrap();
        assert_eq!(text["output"], "{\"a\": 1}");
        assert_eq!(text["cost"], 0.5);
        let not_json = result(completion("sure!"), true, Duration::ZERO, None).unwrap_err();
        assert_eq!(not_json.retry, Retry::Yes);
    }
}
