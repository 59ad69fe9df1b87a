//! A hostile web page in the operator's browser: DNS rebinding (a foreign Host), cross-site
//! WebSocket handshakes (a foreign Origin), and forged form posts (not JSON).

use hive_proto::api::TaskStatus;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::util::*;

#[tokio::test]
async fn a_foreign_host_is_refused_on_every_route() {
    let t = start_hub().await;
    let http = http();
    for path in ["/api/v1/status", "/healthz", "/"] {
        let response = http
            .get(format!("{}{path}", t.url))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden_host");
    }
    let ok = http
        .get(format!("{}/api/v1/status", t.url))
        .header("host", format!("localhost:{}", t.hub.addr().port()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test]
async fn a_websocket_handshake_from_a_foreign_origin_is_refused() {
    let t = start_hub().await;
    for path in ["/ws/agent", "/ws/events", "/ws/performance"] {
        let address = t.url.replace("http://", "ws://") + path;
        let mut request = address.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", "http://evil.example".parse().unwrap());
        let refused = tokio_tungstenite::connect_async(request).await.unwrap_err();
        let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
            panic!("{path}: {refused}");
        };
        assert_eq!(response.status().as_u16(), 403, "{path}");
        // A page on another port of the same machine is another origin.
        let mut request = address.as_str().into_client_request().unwrap();
        let other_port = format!("http://127.0.0.1:{}", t.hub.addr().port() + 1);
        request
            .headers_mut()
            .insert("origin", other_port.parse().unwrap());
        assert!(
            tokio_tungstenite::connect_async(request).await.is_err(),
            "{path}"
        );
        // The hub's own page may connect.
        let mut request = address.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", t.url.parse().unwrap());
        assert!(
            tokio_tungstenite::connect_async(request).await.is_ok(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_post_that_is_not_json_is_refused_so_a_page_cannot_forge_one() {
    let t = start_hub().await;
    let task = t
        .client
        .submit(&hive_proto::api::NewTask::new("x"))
        .await
        .unwrap();
    let http = http();
    let cancel = format!("{}/api/v1/tasks/{}/cancel", t.url, task.id);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = http.post(&cancel);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type).body("x=1");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 415, "{content_type:?}");
    }
    assert_eq!(
        t.client.task(&task.id).await.unwrap().status,
        TaskStatus::Queued
    );
    // A POST to a route that takes none is told so (405), whatever its content type.
    let wrong_method = http.post(format!("{}/readyz", t.url)).send().await.unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    // A cross-site POST, even as JSON, is refused by its Origin.
    let forged = http
        .post(&cancel)
        .header("content-type", "application/json")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(
        t.client.cancel(&task.id).await.unwrap().status,
        TaskStatus::Cancelled
    );
}

#[tokio::test]
async fn an_origin_listed_in_allowed_origins_may_connect_and_post() {
    let dev_server = "http://127.0.0.1:5173";
    let t = start_hub_with(|c| c.browser.allowed_origins = vec![dev_server.into()]).await;
    let address = t.url.replace("http://", "ws://") + "/ws/events";
    let handshake = |origin: &str| {
        let mut request = address.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    assert!(handshake(dev_server).await.is_ok(), "a listed origin");
    assert!(
        handshake("http://127.0.0.1:5174").await.is_err(),
        "only the origin listed, not its neighbours"
    );
    let post = |origin: &'static str| {
        http()
            .post(format!("{}/api/v1/tasks", t.url))
            .header("content-type", "application/json")
            .header("origin", origin)
            .body(r#"{"capability":"x"}"#)
            .send()
    };
    assert_eq!(post(dev_server).await.unwrap().status().as_u16(), 201);
    assert_eq!(
        post("http://evil.example").await.unwrap().status().as_u16(),
        403
    );
}
