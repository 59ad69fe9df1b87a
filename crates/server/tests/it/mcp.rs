//! `/mcp` spoken raw (JSON-RPC over streamable HTTP, as any MCP client sends it) on a hub without
//! authentication: the tools are listed with their schemas, and a task submitted through them
//! runs on a worker. The official SDK's tests, over both transports and with tokens, are in
//! crates/mcp/python (run by .ci/python).

use serde_json::{Value, json};

use crate::util::{echo, http, spawn_worker, start_hub};

async fn rpc(url: &str, method: &str, params: Value) -> reqwest::Response {
    rpc_as(url, None, method, params).await
}

async fn rpc_as(url: &str, token: Option<&str>, method: &str, params: Value) -> reqwest::Response {
    let mut request = http().post(format!("{url}/mcp"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("the hub answers")
}

async fn result(url: &str, method: &str, params: Value) -> Value {
    let answer = rpc(url, method, params).await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("a JSON answer");
    assert!(body.get("error").is_none(), "{body}");
    body["result"].clone()
}

#[tokio::test]
async fn tools_are_listed_and_a_task_runs_through_them() {
    let t = start_hub().await;
    let _worker = spawn_worker(&t.url, &["echo"], 1, echo());

    let init = result(
        &t.url,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "test", "version": "0"}}),
    )
    .await;
    assert_eq!(init["serverInfo"]["name"], "hive");
    assert!(init["capabilities"]["tools"].is_object());

    let tools = result(&t.url, "tools/list", json!({})).await["tools"].clone();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "submit_task",
            "get_task",
            "wait_task",
            "list_tasks",
            "cancel_task",
            "list_agents",
            "hub_status",
            "broadcast"
        ]
    );
    let submit = &tools[0];
    // The schema is the API's: NewTask's fields with their bounds, and references resolved.
    assert_eq!(
        submit["inputSchema"]["properties"]["priority"]["maximum"],
        9
    );
    assert_eq!(submit["outputSchema"]["type"], "object");
    assert!(submit["outputSchema"]["$defs"]["Attempt"].is_object());

    let done = result(
        &t.url,
        "tools/call",
        json!({"name": "submit_task",
               "arguments": {"capability": "echo", "payload": [1, 2], "wait_ms": 30000}}),
    )
    .await;
    assert_eq!(done["isError"], false, "{done}");
    assert_eq!(done["structuredContent"]["status"], "succeeded");
    assert_eq!(done["structuredContent"]["result"], json!([1, 2]));

    // A refusal by the API is the tool's error, with the API's body.
    let missing = result(
        &t.url,
        "tools/call",
        json!({"name": "get_task", "arguments": {"id": "not-an-id"}}),
    )
    .await;
    assert_eq!(missing["isError"], true);
    assert_eq!(missing["structuredContent"]["status"], 400);
    assert_eq!(missing["structuredContent"]["error"]["field"], "id");
}

#[tokio::test]
async fn the_browser_defences_guard_mcp_too() {
    let t = start_hub().await;
    let forged = http()
        .post(format!("{}/mcp", t.url))
        .header("Origin", "http://evil.example")
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let rebound = http()
        .post(format!("{}/mcp", t.url))
        .header("Host", "evil.example")
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
}

#[tokio::test]
async fn the_transport_refuses_with_the_api_error_body() {
    let t = start_hub().await;
    let get = http().get(format!("{}/mcp", t.url)).send().await.unwrap();
    assert_eq!(get.status(), 405);
    let body: Value = get.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    let unknown_version = http()
        .post(format!("{}/mcp", t.url))
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "1999-01-01")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_version.status(), 400);
    let body: Value = unknown_version.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1999-01-01"),
        "{body}"
    );
}

#[tokio::test]
async fn tools_take_the_callers_token_and_role() {
    let t = crate::util::start_hub_with(|c| c.auth.enabled = true).await;
    let admin_token = std::fs::read_to_string(t.dir.path().join("admin.token")).unwrap();
    let admin = hive_client::HubClient::new(&t.url).with_token(Some(admin_token.trim().into()));
    let token = |role: &'static str| {
        let admin = admin.clone();
        async move {
            let grant = hive_proto::api::NewToken {
                name: format!("mcp-{role}"),
                role: role.parse().unwrap(),
                capabilities: None,
                groups: None,
                expires_in_s: None,
            };
            admin.create_token(&grant).await.unwrap().token
        }
    };
    let (read, agent, client) = (
        token("read").await,
        token("agent").await,
        token("client").await,
    );
    let list = json!({});
    assert_eq!(
        rpc_as(&t.url, None, "tools/list", list.clone())
            .await
            .status(),
        401
    );
    assert_eq!(
        rpc_as(&t.url, Some(&agent), "tools/list", list.clone())
            .await
            .status(),
        403
    );

    let call = |token: String, name: &'static str, arguments: Value| {
        let url = t.url.clone();
        async move {
            let params = json!({"name": name, "arguments": arguments});
            let answer = rpc_as(&url, Some(&token), "tools/call", params).await;
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.unwrap()["result"].clone()
        }
    };
    let status = call(read.clone(), "hub_status", json!({})).await;
    assert_eq!(status["isError"], false, "{status}");
    let refused = call(read, "submit_task", json!({"capability": "x"})).await;
    assert_eq!(refused["isError"], true);
    assert_eq!(refused["structuredContent"]["status"], 403);
    assert_eq!(
        refused["structuredContent"]["error"]["code"],
        "forbidden_role"
    );
    let submitted = call(client, "submit_task", json!({"capability": "x"})).await;
    assert_eq!(submitted["isError"], false, "{submitted}");
    // The task records who submitted it: the token of the /mcp request.
    assert_eq!(submitted["structuredContent"]["submitted_by"], "mcp-client");
}
