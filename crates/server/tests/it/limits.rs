//! Bounds on what clients control: open connections, how long headers may take, and how much work
//! may wait inside the hub before new work is refused.

use hive_proto::api::{NewTask, TaskStatus};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::*;

async fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_connection_over_the_bound_is_answered_503_and_room_returns_when_one_closes() {
    let t = start_hub_with(|c| c.connections.max_connections = 2).await;
    let addr = t.hub.addr();
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    let answer = read_all(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // A liveness probe learns the process is up, however busy; other requests are refused.
    for (request, status) in [
        ("GET /healthz HTTP/1.1", "HTTP/1.1 200"),
        ("GET /readyz HTTP/1.1", "HTTP/1.1 503"),
        ("GET /api/v1/status HTTP/1.1", "HTTP/1.1 503"),
    ] {
        let mut over = TcpStream::connect(addr).await.unwrap();
        over.write_all(format!("{request}\r\nhost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let answer = read_all(&mut over).await;
        assert!(answer.starts_with(status), "{request}: {answer}");
    }

    drop(first);
    eventually(
        "room for a new connection",
        Duration::from_secs(10),
        || async {
            let mut stream = TcpStream::connect(addr).await.ok()?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            read_all(&mut stream)
                .await
                .starts_with("HTTP/1.1 200")
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_client_that_sends_its_headers_a_byte_at_a_time_is_cut_off() {
    let t =
        start_hub_with(|c| c.connections.header_read_timeout = Duration::from_millis(300)).await;
    let mut slow = TcpStream::connect(t.hub.addr()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut cut_off = false;
    // Up to 20 s of one header byte every 100 ms: far past the 300 ms allowed.
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"x").await.is_err() {
            cut_off = true;
            break;
        }
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(1), slow.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => {
                cut_off = true;
                break;
            }
            // A 408 answer before the close is fine too.
            Ok(Ok(_)) => {
                cut_off = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(cut_off, "the slow client was never disconnected");
    // Everyone else is served meanwhile.
    assert!(t.client.status().await.is_ok());
}

#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_cut_off() {
    let t =
        start_hub_with(|c| c.connections.write_stall_timeout = Duration::from_millis(300)).await;
    // 40 queued tasks of 200 KB: a page of them (8 MB) is far more than the sockets hold.
    let payload = format!(r#""{}""#, "x".repeat(200_000));
    let tasks = (0..40)
        .map(|_| hive_proto::api::NewTask {
            payload: Some(hive_proto::RawValue::from_string(payload.clone()).unwrap()),
            ..hive_proto::api::NewTask::new("nobody")
        })
        .collect();
    t.client.submit_batch(tasks).await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(t.hub.addr()).await.unwrap();
    stream
        .write_all(b"GET /api/v1/tasks?limit=40 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // The client reads nothing for ten times the bound, then all it can.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answer = read_all(&mut stream).await;
    let (head, body) = answer.split_once("\r\n\r\n").expect("the headers came");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a content-length");
    assert!(length > 8_000_000, "{head}");
    assert!(
        body.len() < length,
        "all {length} bytes came: the hub waited for the client instead of closing"
    );
    // Everyone else is served meanwhile.
    assert!(t.client.status().await.is_ok());
}

#[tokio::test]
async fn a_body_that_trickles_in_is_answered_408_and_frees_its_room() {
    let t = start_hub_with(|c| {
        c.connections.body_read_timeout = Duration::from_millis(300);
        // Room for one 1,000-byte body at a time.
        c.admission.max_body_bytes = 1500;
    })
    .await;
    let mut slow = TcpStream::connect(t.hub.addr()).await.unwrap();
    let head = "POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n{\"capability\": \"";
    slow.write_all(head.as_bytes()).await.unwrap();
    // One byte of the 1,000 every 100 ms, for up to 20 s; the answer must come long before.
    let mut answer = Vec::new();
    for _ in 0..200 {
        let mut buffer = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
            Err(_) => {
                let _ = slow.write_all(b"a").await;
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body_timeout\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // Its room is free again: a whole 1,000-byte body is taken.
    let padded = format!("{:<1000}", r#"{"capability": "x"}"#);
    let response = http()
        .post(format!("{}/api/v1/tasks", t.url))
        .header("content-type", "application/json")
        .body(padded)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(
        t.client.status().await.unwrap().tasks.values().sum::<u64>(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_past_the_bound_in_flight_are_refused_at_once_with_retry_after() {
    let t = start_hub_with(|c| c.admission.max_requests = 1).await;
    let http = http();
    let url = format!("{}/api/v1/tasks", t.url);
    let mut accepted = Vec::new();
    let mut shed = None;
    for _ in 0..50 {
        let requests = (0..64).map(|i| {
            http.post(&url)
                .json(&serde_json::json!({"capability": "x", "payload": i}))
                .send()
        });
        for response in futures_util::future::join_all(requests).await {
            let response = response.unwrap();
            match response.status().as_u16() {
                201 => accepted.push(response.json::<serde_json::Value>().await.unwrap()),
                503 => {
                    let retry_after = response.headers().get("retry-after").cloned();
                    let body: serde_json::Value = response.json().await.unwrap();
                    shed = Some((retry_after, body));
                }
                other => panic!("unexpected {other}"),
            }
        }
        if shed.is_some() {
            break;
        }
    }
    let (retry_after, body) = shed.expect("some submit was refused");
    assert_eq!(retry_after.unwrap(), "1");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    // What was accepted is there.
    for task in accepted {
        let id = task["id"].as_str().unwrap();
        assert_eq!(t.client.task(id).await.unwrap().status, TaskStatus::Queued);
    }
    let metrics = http
        .get(format!("{}/metrics", t.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("hive_submits_shed_total"), "{metrics}");
    // A shed submit is a 5xx answer of its route, and counts as one.
    let shed_5xx = metrics
        .lines()
        .find(|l| {
            l.starts_with("hive_http_requests_total{")
                && l.contains("route=\"/api/v1/tasks\"")
                && l.contains("method=\"POST\"")
                && l.contains("status=\"5xx\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(shed_5xx.is_some_and(|n| n >= 1.0), "{metrics}");
}

/// A client that stalls in the middle of its body holds only the room of the bytes it sent: not a
/// place among the submits in flight, nor room it has not used. A body whose stated length does
/// not fit beside it is refused before it is read (not JSON: 503, not 400).
#[tokio::test]
async fn a_stalled_body_holds_only_what_it_sent() {
    let t = start_hub_with(|c| {
        c.admission.max_requests = 1;
        c.admission.max_body_bytes = 4 * 1024;
    })
    .await;
    // Stated as 3,000 bytes, of which it sends 11: it holds 1 KiB of the 4, not 3.
    let head = "POST /api/v1/tasks/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 3000\r\n\r\n{\"tasks\": [";
    let mut slow = TcpStream::connect(t.hub.addr()).await.unwrap();
    slow.write_all(head.as_bytes()).await.unwrap();
    // Needs 4 KiB: it fits only until the slow body holds its KiB. Bounded per request, so that
    // the deadline below holds.
    let http = http();
    let not_json = |bytes: usize| {
        http.post(format!("{}/api/v1/tasks", t.url))
            .header("content-type", "application/json")
            .body("x".repeat(bytes))
            .timeout(Duration::from_secs(5))
            .send()
    };
    let refused = eventually(
        "the slow body holding its room",
        Duration::from_secs(10),
        || async {
            let response = not_json(3_500).await.ok()?;
            (response.status().as_u16() == 503).then_some(response)
        },
    )
    .await;
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(
        !stream_has_data(&slow),
        "the slow batch is still being read"
    );
    // 2 KiB fit beside the 1 it holds: read, and refused for what it is.
    let read = not_json(1_500).await.unwrap();
    assert_eq!(read.status().as_u16(), 400);

    // The one place among the submits in flight is free: a submit goes through.
    let task = t
        .client
        .submit(&hive_proto::api::NewTask::new("echo"))
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Queued);
    // When the slow client goes, its room returns: the same body is read, and refused for what
    // it is.
    drop(slow);
    eventually("the room returned", Duration::from_secs(10), || async {
        (not_json(3_500).await.ok()?.status().as_u16() == 400).then_some(())
    })
    .await;
}

/// True when the hub has answered on `stream` (or closed it), without waiting.
fn stream_has_data(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

async fn agent(t: &TestHub, hello: serde_json::Value) -> Socket {
    use futures_util::SinkExt;
    let mut socket = ws(&t.url, "/ws/agent").await;
    socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    socket
}

use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_hello_with_too_many_capabilities_or_groups_is_refused() {
    let t = start_hub().await;
    let capabilities: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
    let groups: Vec<String> = (0..100).map(|i| format!("g{i}")).collect();
    for (hello, expected) in [
        (
            serde_json::json!({"type": "hello", "name": "w", "capabilities": capabilities}),
            "at most 256",
        ),
        (
            serde_json::json!({"type": "hello", "name": "w", "capabilities": ["x"], "groups": groups}),
            "at most 64",
        ),
    ] {
        let mut socket = agent(&t, hello).await;
        let error = next_json(&mut socket).await;
        assert_eq!(error["code"], "invalid_hello");
        assert!(
            error["message"].as_str().unwrap().contains(expected),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_worker_flooding_invalid_frames_is_closed_with_1008() {
    use futures_util::SinkExt;
    let t = start_hub().await;
    let mut socket = agent(
        &t,
        serde_json::json!({"type": "hello", "name": "w", "capabilities": ["x"]}),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["type"], "welcome");
    for _ in 0..200 {
        if socket.send(Message::Text("{nope".into())).await.is_err() {
            break;
        }
    }
    let close = loop {
        match next_frame(&mut socket).await {
            Message::Close(frame) => break frame,
            _ => continue,
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 1008);
}

/// At a configured limit and at the default one (`server.max_message_bytes`, 32 MiB: above
/// tungstenite's own 16 MiB default, which reset the connection without a word).
#[tokio::test]
async fn a_frame_over_the_limit_is_answered_with_close_code_1009() {
    use futures_util::SinkExt;
    let default = hive_server::HubConfig::new("127.0.0.1:0".parse().unwrap(), "unused".into())
        .max_message_bytes;
    assert_eq!(
        default,
        32 * 1024 * 1024,
        "docs/security.md names this default"
    );
    // The request body limit does not govern frames: with it at 64 KiB, a 100 KiB frame is read
    // and answered as the bad message it is.
    let t = start_hub_with(|c| c.max_body_bytes = 64 * 1024).await;
    let hello = serde_json::json!({"type": "hello", "name": "w", "capabilities": ["x"]});
    let mut socket = agent(&t, hello).await;
    assert_eq!(next_json(&mut socket).await["type"], "welcome");
    let _ = socket
        .send(Message::Text("x".repeat(100 * 1024).into()))
        .await;
    assert_eq!(next_json(&mut socket).await["code"], "invalid_message");
    for (limit, sent) in [(Some(64 * 1024), 100 * 1024), (None, default + 1)] {
        let t = start_hub_with(|c| {
            if let Some(limit) = limit {
                // The request body limit stays at its 32 MiB: it does not govern frames.
                c.max_message_bytes = limit;
            }
        })
        .await;
        let mut socket = agent(
            &t,
            serde_json::json!({"type": "hello", "name": "w", "capabilities": ["x"]}),
        )
        .await;
        assert_eq!(next_json(&mut socket).await["type"], "welcome");
        if limit.is_none() {
            // One frame of 20 MiB, under the limit and over the library's default: read and
            // answered as the bad message it is, the connection kept.
            let _ = socket
                .send(Message::Text("x".repeat(20 << 20).into()))
                .await;
            assert_eq!(next_json(&mut socket).await["code"], "invalid_message");
        }
        let _ = socket.send(Message::Text("x".repeat(sent).into())).await;
        let mut saw_error = false;
        let close = loop {
            match next_frame(&mut socket).await {
                Message::Close(frame) => break frame,
                Message::Text(text) => {
                    saw_error |= text.contains("frame_too_large")
                        && text.contains("server.max_message_bytes")
                }
                _ => continue,
            }
        };
        assert!(saw_error, "an error frame says why ({sent} bytes)");
        assert_eq!(u16::from(close.unwrap().code), 1009, "{sent} bytes");
    }
}

#[tokio::test]
async fn an_output_over_the_limit_fails_the_attempt_at_once() {
    use hive_client::worker::Outcome;
    let t = start_hub_with(|c| c.limits.max_output_bytes = 1_000).await;
    let _w = spawn_worker(
        &t.url,
        &["big"],
        1,
        |_task: hive_proto::protocol::Assignment| async { Outcome::json(&"x".repeat(2_000)) },
    );
    let task = t
        .client
        .submit(&hive_proto::api::NewTask::new("big"))
        .await
        .unwrap();
    let done = finished(&t.client, &task.id).await;
    assert_eq!(done.status, TaskStatus::Failed);
    assert_eq!(
        done.attempts.len(),
        1,
        "not retried: the same output would come again"
    );
    assert!(done.error.unwrap().contains("over the limit of 1000 bytes"));
}

#[tokio::test]
async fn a_payload_nested_past_the_limit_is_refused_naming_the_field() {
    let t = start_hub().await;
    let deep = "[".repeat(100) + &"]".repeat(100);
    let body = format!(r#"{{"capability":"x","payload":{deep}}}"#);
    let response = http()
        .post(format!("{}/api/v1/tasks", t.url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["field"], "payload");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("levels deep")
    );
}

#[tokio::test]
async fn the_agent_list_is_paged() {
    let t = start_hub().await;
    let _workers: Vec<_> = (0..3)
        .map(|_| spawn_worker(&t.url, &["x"], 1, echo()))
        .collect();
    eventually("three agents", Duration::from_secs(10), || async {
        (t.client.agents().await.ok()?.len() == 3).then_some(())
    })
    .await;
    let http = http();
    let page = |query: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/agents?{query}", t.url);
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (_, first) = page("limit=2".into()).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = page(format!("limit=2&cursor={cursor}")).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert!(second.get("next_cursor").is_none());
    assert!(second["items"][0]["id"].as_str().unwrap() > cursor.as_str());
    let (status, error) = page("limit=0".into()).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["field"], "limit");
    // The Rust client (and `hive agents`) follows the pages to the end.
    let ids =
        |agents: Vec<hive_proto::api::Agent>| agents.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let whole = ids(t.client.agents().await.unwrap());
    assert_eq!(whole.len(), 3);
    assert_eq!(ids(t.client.agents_in_pages(2).await.unwrap()), whole);
    assert_eq!(ids(t.client.agents_in_pages(1).await.unwrap()), whole);
}

#[tokio::test]
async fn the_task_list_names_a_next_page_only_when_there_is_one() {
    let t = start_hub().await;
    for _ in 0..3 {
        t.client.submit(&NewTask::new("nobody")).await.unwrap();
    }
    let page = |limit: usize, cursor: Option<String>| {
        let client = t.client.clone();
        async move {
            let query = hive_client::http::ListQuery {
                limit: Some(limit),
                cursor,
                ..Default::default()
            };
            client.tasks(&query).await.unwrap()
        }
    };
    let whole = page(3, None).await;
    assert_eq!(whole.items.len(), 3);
    assert!(whole.next_cursor.is_none(), "exactly full, and the last");
    let first = page(2, None).await;
    let rest = page(2, first.next_cursor.clone()).await;
    assert_eq!(
        first.next_cursor.as_deref(),
        Some(first.items[1].id.as_str())
    );
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next_cursor.is_none());
    assert_eq!(rest.items[0].id, whole.items[2].id);
}

/// A worker that takes assignments and never reads them: once its socket's buffers are full the
/// hub's writes to it block, and past the write timeout (10 s) the hub lets go of it instead of
/// holding its frames for ever.
#[tokio::test]
async fn a_worker_that_stops_reading_is_let_go() {
    // Heartbeats would end the silent worker too (after 15 s by default): only the write timeout
    // may end it within the test's bound.
    let t = start_hub_with(|c| c.scheduler.heartbeat_timeout_ms = 600_000).await;
    let _socket = agent(
        &t,
        serde_json::json!({"type": "hello", "name": "deaf", "capabilities": ["big"], "slots": 64}),
    )
    .await;
    let deaf = eventually(
        "the worker is registered",
        Duration::from_secs(10),
        || async {
            let agents = t.client.agents().await.unwrap();
            agents.into_iter().find(|a| a.name == "deaf")
        },
    )
    .await;
    // 64 payloads of about 1 MB: far more than loopback's socket buffers hold.
    let text = "x".repeat(1_000_000);
    for _ in 0..64 {
        t.client
            .submit(&hive_proto::api::NewTask {
                payload: Some(hive_proto::RawValue::from_string(format!("\"{text}\"")).unwrap()),
                ..hive_proto::api::NewTask::new("big")
            })
            .await
            .unwrap();
    }
    // Bounded against hanging: the write timeout plus room for a slow machine.
    eventually(
        "the hub lets go of the worker",
        Duration::from_secs(60),
        || async {
            let agent = t.client.agent(&deaf.id).await.unwrap();
            (agent.state == hive_proto::api::AgentState::Offline).then_some(())
        },
    )
    .await;
}
