//! Authentication on: tokens with roles, the first admin token, agent tokens limited to listed
//! capabilities, tokens on WebSockets, revocation, and who submitted what.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use futures_util::SinkExt;
use hive_client::{HubClient, WorkerOptions};
use hive_proto::api::{AgentState, NewTask, NewToken, TaskStatus};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::util::*;

async fn start_with_auth() -> (TestHub, HubClient) {
    start_with_auth_and(|_| {}).await
}

/// A hub with authentication on, configured further by `adjust`, and a client with its admin
/// token.
async fn start_with_auth_and(
    adjust: impl FnOnce(&mut hive_server::HubConfig),
) -> (TestHub, HubClient) {
    let t = start_hub_with(|c| {
        c.auth.enabled = true;
        adjust(c);
    })
    .await;
    let file = t.dir.path().join("admin.token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "only its owner may read the admin token"
    );
    let admin_token = std::fs::read_to_string(file).unwrap().trim().to_string();
    let admin = HubClient::new(&t.url).with_token(Some(admin_token));
    (t, admin)
}

fn new_token(name: &str, role: &str) -> NewToken {
    NewToken {
        name: name.into(),
        role: role.parse().unwrap(),
        capabilities: None,
        groups: None,
        expires_in_s: None,
    }
}

#[tokio::test]
async fn without_a_token_only_the_probes_and_the_page_answer() {
    let (t, admin) = start_with_auth().await;
    let http = http();
    for (path, expected) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/api/openapi.json", 200),
        ("/api/v1/status", 401),
        ("/api/v1/tasks", 401),
        ("/metrics", 401),
    ] {
        let response = http.get(format!("{}{path}", t.url)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{path}");
        if expected == 401 {
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // A method or route that does not exist is answered as such: nothing runs, nothing to guard.
    let trace = http
        .request(reqwest::Method::TRACE, format!("{}/api/v1/tasks", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(trace.status().as_u16(), 405);
    let nowhere = http
        .get(format!("{}/api/v1/nowhere", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status().as_u16(), 404);
    let wrong = HubClient::new(&t.url).with_token(Some("hive_abc_def".into()));
    assert!(wrong.status().await.is_err());
    assert!(admin.status().await.is_ok());
}

#[tokio::test]
async fn each_role_does_what_it_may_and_tasks_record_their_submitter() {
    let (t, admin) = start_with_auth().await;
    let client_token = admin
        .create_token(&new_token("ci", "client"))
        .await
        .unwrap();
    let read_token = admin
        .create_token(&new_token("viewer", "read"))
        .await
        .unwrap();
    assert!(client_token.token.starts_with("hive_"));
    let client = HubClient::new(&t.url).with_token(Some(client_token.token.clone()));
    let viewer = HubClient::new(&t.url).with_token(Some(read_token.token));

    let task = client.submit(&NewTask::new("x")).await.unwrap();
    assert_eq!(task.submitted_by.as_deref(), Some("ci"));
    assert_eq!(
        viewer.task(&task.id).await.unwrap().submitted_by.as_deref(),
        Some("ci")
    );
    let refused = viewer.submit(&NewTask::new("x")).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    assert!(
        client.tokens().await.is_err(),
        "only an admin manages tokens"
    );
    let names: Vec<_> = admin
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(names.contains(&"ci".to_string()) && names.contains(&"viewer".to_string()));
    let taken = admin
        .create_token(&new_token("ci", "read"))
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("409"), "{taken}");
    let admin_token = std::fs::read_to_string(t.dir.path().join("admin.token")).unwrap();
    let unknown_role = http()
        .post(format!("{}/api/v1/tokens", t.url))
        .bearer_auth(admin_token.trim())
        .json(&serde_json::json!({"name": "boss", "role": "boss"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_role.status(), 400);
    let body: serde_json::Value = unknown_role.json().await.unwrap();
    assert_eq!(body["error"]["field"], "role", "{body}");

    admin.revoke_token("ci").await.unwrap();
    assert!(
        client.status().await.is_err(),
        "a revoked token stops working"
    );
}

#[tokio::test]
async fn an_agent_token_connects_only_for_its_capabilities() {
    let (t, admin) = start_with_auth().await;
    let grant = NewToken {
        capabilities: Some(vec!["pay".into()]),
        groups: Some(vec!["billing".into()]),
        ..new_token("payments-worker", "agent")
    };
    let agent_token = admin.create_token(&grant).await.unwrap().token;
    let client_token = admin
        .create_token(&new_token("ci", "client"))
        .await
        .unwrap()
        .token;

    let hello = |capability: &str| {
        serde_json::json!({"type": "hello", "name": "w", "capabilities": [capability]}).to_string()
    };
    let connect = |token: String| {
        let address = t.url.replace("http://", "ws://") + "/ws/agent";
        async move {
            let mut request = address.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            tokio_tungstenite::connect_async(request).await
        }
    };
    // No token, or a client's: no handshake.
    assert!(ws_refused(&t.url, "/ws/agent").await);
    assert!(connect(client_token).await.is_err());
    // The agent token, asking for more than it may offer.
    let (mut socket, _) = connect(agent_token.clone()).await.unwrap();
    socket
        .send(Message::Text(hello("payroll").into()))
        .await
        .unwrap();
    let error = next_json(&mut socket).await;
    assert_eq!(error["code"], "invalid_hello");
    assert!(
        error["message"].as_str().unwrap().contains("may not offer"),
        "{error}"
    );
    // Its capability, but a swarm it may not join; then one it may.
    let joining = |group: &str| {
        serde_json::json!({"type": "hello", "name": "w", "capabilities": ["pay"], "groups": [group]})
            .to_string()
    };
    let (mut socket, _) = connect(agent_token.clone()).await.unwrap();
    socket
        .send(Message::Text(joining("payroll").into()))
        .await
        .unwrap();
    let error = next_json(&mut socket).await;
    assert_eq!(error["code"], "invalid_hello");
    assert!(
        error["message"].as_str().unwrap().contains("may not join"),
        "{error}"
    );
    let (mut socket, _) = connect(agent_token.clone()).await.unwrap();
    socket
        .send(Message::Text(joining("billing").into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "welcome");
    drop(socket);
    // And for what it may: a real worker with the token runs a task.
    let mut options = WorkerOptions::new(&t.url, &["pay"], 1);
    options.token = Some(agent_token);
    let worker = tokio::spawn(hive_client::worker::run_worker(
        options,
        Arc::new(echo()),
        std::future::pending(),
    ));
    let task = admin.submit(&NewTask::new("pay")).await.unwrap();
    assert_eq!(
        finished(&admin, &task.id).await.status,
        TaskStatus::Succeeded
    );
    worker.abort();
}

#[tokio::test]
async fn a_browser_sends_its_token_as_a_websocket_subprotocol() {
    let (t, admin) = start_with_auth().await;
    let token = admin
        .create_token(&new_token("dash", "read"))
        .await
        .unwrap()
        .token;
    let address = t.url.replace("http://", "ws://") + "/ws/events";
    let mut request = address.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("hive, bearer.{token}").parse().unwrap(),
    );
    let (_, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "hive");
    assert!(ws_refused(&t.url, "/ws/events").await);
}

#[tokio::test]
async fn a_hub_on_a_public_address_will_not_start_without_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let config = hive_server::HubConfig::new("0.0.0.0:0".parse().unwrap(), dir.path().into());
    let refused = hive_server::Hub::start(config).await.err().unwrap();
    assert!(refused.to_string().contains("auth.enabled"), "{refused}");
}

/// True when the WebSocket handshake without a token is refused with 401.
async fn ws_refused(url: &str, path: &str) -> bool {
    let address = url.replace("http://", "ws://") + path;
    match tokio_tungstenite::connect_async(address).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            response.status().as_u16() == 401
        }
        _ => false,
    }
}

#[tokio::test]
async fn a_token_over_its_rate_limit_is_answered_429_with_retry_after() {
    let (t, admin) = start_with_auth_and(|c| {
        // One request per 100 s: a burst of one, then refused however slow this machine is.
        c.auth.rate_limits.by_token = vec![("limited".into(), 0.01)];
    })
    .await;
    let token = admin
        .create_token(&new_token("limited", "read"))
        .await
        .unwrap()
        .token;
    let http = http();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        let response = http
            .get(format!("{}/api/v1/status", t.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        retry_after = response
            .headers()
            .get("retry-after")
            .cloned()
            .or(retry_after);
    }
    assert_eq!(statuses, vec![200, 429, 429]);
    let wait: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((2..=100).contains(&wait), "Retry-After {wait}");
    // Other tokens are not held back.
    assert!(admin.status().await.is_ok());
}

/// The Rust client waits as a `429`'s `Retry-After` asks, within its budget, and repeats the
/// call; with no budget it returns the refusal at once.
#[tokio::test]
async fn the_rust_client_waits_out_a_429_as_retry_after_asks() {
    let (t, admin) = start_with_auth_and(|c| {
        // A burst of one, then one request per ten seconds: the impatient second call finds the
        // bucket empty however slow this machine is, and the patient one waits inside its 30 s.
        c.auth.rate_limits.by_token = vec![("patient".into(), 0.1)];
    })
    .await;
    let token = admin
        .create_token(&new_token("patient", "read"))
        .await
        .unwrap()
        .token;
    let impatient = HubClient::new(&t.url)
        .with_token(Some(token.clone()))
        .with_busy_budget(std::time::Duration::ZERO);
    let patient = HubClient::new(&t.url).with_token(Some(token));

    impatient
        .status()
        .await
        .expect("the bucket's first request");
    match impatient.status().await {
        Err(hive_client::ClientError::Api { status, code, .. }) => {
            assert_eq!(status.as_u16(), 429);
            assert_eq!(code, "rate_limited");
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    // The bucket is still empty; the patient client is told to wait about ten seconds, does, and
    // is served.
    patient
        .status()
        .await
        .expect("served after waiting as Retry-After asked");
}

#[tokio::test]
async fn revoking_a_token_closes_the_websockets_opened_with_it() {
    let (t, admin) = start_with_auth().await;
    let agent_token = admin
        .create_token(&new_token("w1", "agent"))
        .await
        .unwrap()
        .token;
    let read_token = admin
        .create_token(&new_token("viewer", "read"))
        .await
        .unwrap()
        .token;
    let mut agent = ws_with_token(&t.url, "/ws/agent", &agent_token).await;
    let hello = serde_json::json!({"type": "hello", "name": "w1", "capabilities": ["x"]});
    send(&mut agent, hello).await;
    assert_eq!(next_json(&mut agent).await["type"], "welcome");
    let mut events = ws_with_token(&t.url, "/ws/events", &read_token).await;
    let mut performance = ws_with_token(&t.url, "/ws/performance", &read_token).await;

    admin.revoke_token("w1").await.unwrap();
    let error = next_json(&mut agent).await;
    assert_eq!(error["code"], "token_revoked", "{error}");
    assert_eq!(close_of(&mut agent).await, (1008, "token revoked".into()));
    // The other token's stream is untouched: it still gets the events of a task submitted now.
    let task = admin.submit(&NewTask::new("x")).await.unwrap();
    loop {
        match next_frame(&mut events).await {
            Message::Text(text) if text.contains(&task.id) => break,
            Message::Text(_) => continue,
            other => panic!("the events stream ended with the other token's revocation: {other:?}"),
        }
    }
    admin.revoke_token("viewer").await.unwrap();
    for stream in [&mut events, &mut performance] {
        assert_eq!(close_of(stream).await, (1008, "token revoked".into()));
    }
    // And the agent goes offline in the registry, not left behind as connected.
    for _ in 0..200 {
        let agents = admin.agents().await.unwrap();
        if agents
            .iter()
            .all(|a| a.name != "w1" || a.state == AgentState::Offline)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the revoked agent is still listed as connected");
}

#[tokio::test]
async fn a_token_with_a_lifetime_works_until_it_expires_and_then_ends_its_connections() {
    let (t, admin) = start_with_auth().await;
    // A lifetime out of bounds is refused naming the field.
    let too_short = NewToken {
        expires_in_s: Some(0),
        ..new_token("never", "read")
    };
    let admin_token = std::fs::read_to_string(t.dir.path().join("admin.token")).unwrap();
    let refused = http()
        .post(format!("{}/api/v1/tokens", t.url))
        .bearer_auth(admin_token.trim())
        .json(&too_short)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["field"], "expires_in_s", "{body}");

    // Long enough to connect with, even on a busy machine; the test waits for it to pass.
    let brief = |name: &str, role: &str| NewToken {
        expires_in_s: Some(5),
        ..new_token(name, role)
    };
    let agent = admin
        .create_token(&brief("w-brief", "agent"))
        .await
        .unwrap();
    let reader = admin.create_token(&brief("r-brief", "read")).await.unwrap();
    let listed = admin.tokens().await.unwrap();
    let expiry = listed
        .iter()
        .find(|t| t.name == "w-brief")
        .and_then(|t| t.expires_at.clone())
        .expect("the lifetime is listed");
    assert_eq!(Some(&expiry), agent.info.expires_at.as_ref());
    assert!(
        listed
            .iter()
            .filter(|t| t.name.starts_with("admin-"))
            .all(|t| t.expires_at.is_none()),
        "the first admin token never expires"
    );

    let mut worker = ws_with_token(&t.url, "/ws/agent", &agent.token).await;
    let hello = serde_json::json!({"type": "hello", "name": "w-brief", "capabilities": ["x"]});
    send(&mut worker, hello).await;
    assert_eq!(next_json(&mut worker).await["type"], "welcome");
    let mut events = ws_with_token(&t.url, "/ws/events", &reader.token).await;
    let as_reader = HubClient::new(&t.url).with_token(Some(reader.token.clone()));
    assert!(as_reader.status().await.is_ok(), "live before its expiry");

    // At the expiry the hub ends both connections itself, saying why.
    let error = next_json(&mut worker).await;
    assert_eq!(error["code"], "token_expired", "{error}");
    assert_eq!(close_of(&mut worker).await, (1008, "token expired".into()));
    assert_eq!(close_of(&mut events).await, (1008, "token expired".into()));
    // And a request with it is answered 401 naming the expiry, for any route.
    let answer = http()
        .get(format!("{}/api/v1/status", t.url))
        .bearer_auth(&agent.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    assert!(
        answer.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"),
        "{:?}",
        answer.headers()
    );
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_expired", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&expiry),
        "{body}"
    );
    assert!(as_reader.status().await.is_err());
    // The admin token, which has no lifetime, is untouched.
    assert!(admin.status().await.is_ok());
}

/// A WebSocket to `path` of the hub at `url`, opened with `token` in `Authorization`.
async fn ws_with_token(url: &str, path: &str, token: &str) -> Socket {
    let address = url.replace("http://", "ws://") + path;
    let mut request = address.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The code and reason of the close frame that ends `socket` (the frames before it skipped).
async fn close_of(socket: &mut Socket) -> (u16, String) {
    loop {
        match next_frame(socket).await {
            Message::Close(Some(close)) => {
                return (u16::from(close.code), close.reason.to_string());
            }
            Message::Close(None) => panic!("closed without a code"),
            _ => continue,
        }
    }
}
