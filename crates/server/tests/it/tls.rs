//! TLS: the API, the WebSockets and the worker over https:// and wss://, with a certificate the
//! test makes (rcgen) and a client that trusts it through a CA file.

use std::sync::Arc;

use hive_client::{HubClient, WorkerOptions};
use hive_proto::api::{NewTask, TaskStatus};

use crate::util::*;

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files in `dir`:
/// (certificate, key).
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).unwrap();
    let (cert_path, key_path) = (dir.join("hub.pem"), dir.join("hub.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_the_websockets_and_a_worker_run_over_tls() {
    let pki = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(pki.path());
    let t = start_hub_with(|c| {
        c.tls = Some(hive_server::TlsFiles {
            cert: cert.clone(),
            key,
        })
    })
    .await;
    let https = format!("https://127.0.0.1:{}", t.hub.addr().port());

    // A client that does not trust the certificate is refused; one with the CA file is served.
    assert!(HubClient::new(&https).status().await.is_err());
    let client = HubClient::with_ca_file(&https, Some(&cert)).unwrap();
    assert!(client.status().await.is_ok());
    // Plain HTTP to the TLS port gets nothing useful.
    assert!(HubClient::new(&t.url).status().await.is_err());

    // The dashboard's live stream over wss://, trusting the same CA file.
    let wss = https.replace("https://", "wss://") + "/ws/events";
    let tls = hive_tls::client_config(Some(&cert)).unwrap();
    let (mut events, _) = tokio_tungstenite::connect_async_tls_with_config(
        wss,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls))),
    )
    .await
    .unwrap();

    let mut options = WorkerOptions::new(&https, &["secure"], 2);
    options.ca_file = Some(cert.clone());
    let worker = tokio::spawn(hive_client::worker::run_worker(
        options,
        Arc::new(echo()),
        std::future::pending(),
    ));
    let task = client
        .submit(&NewTask {
            payload: Some(hive_proto::RawValue::from_string("\"sealed\"".into()).unwrap()),
            ..NewTask::new("secure")
        })
        .await
        .unwrap();
    let done = finished(&client, &task.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.result.unwrap().get(), "\"sealed\"");
    // Its status changes came over the wss:// stream, up to the end (bounded against hanging).
    let ended = async {
        loop {
            let frame = next_json(&mut events).await;
            let ended = frame["events"].as_array().into_iter().flatten().any(|e| {
                e["type"] == "task"
                    && e["task_id"] == task.id.as_str()
                    && e["status"] == "succeeded"
            });
            if ended {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), ended)
        .await
        .expect("the task's end came over wss://");
    worker.abort();
}

#[tokio::test]
async fn a_hub_with_an_unreadable_certificate_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        hive_server::HubConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    config.tls = Some(hive_server::TlsFiles {
        cert: dir.path().join("missing.pem"),
        key: dir.path().join("missing.key"),
    });
    let refused = hive_server::Hub::start(config).await.err().unwrap();
    assert!(refused.to_string().contains("missing.pem"), "{refused}");
}

#[tokio::test]
async fn a_hub_with_an_unreadable_webhook_ca_file_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        hive_server::HubConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    config.alerts.webhook_url = Some("https://127.0.0.1:9/hook".into());
    config.alerts.webhook_ca_file = Some(dir.path().join("missing-ca.pem"));
    let refused = hive_server::Hub::start(config).await.err().unwrap();
    let text = refused.to_string();
    assert!(
        text.contains("alerts.webhook_ca_file") && text.contains("missing-ca.pem"),
        "{text}"
    );
}

/// An HTTPS receiver on 127.0.0.1 serving `cert`: each request's body goes to the channel and
/// is answered 200 (one request per connection, as `connection: close` asks).
async fn https_receiver(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = hive_tls::server_config(cert, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let (bodies, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, bodies) = (acceptor.clone(), bodies.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate fails here: nothing to answer.
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the request ended early");
                    request.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break request[end + 4..end + 4 + length].to_vec();
                    }
                };
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let _ = stream.shutdown().await;
                let _ = bodies.send(serde_json::from_slice(&body).unwrap());
            });
        }
    });
    (url, received)
}

/// An alert reaches an `https://` webhook whose certificate only `alerts.webhook_ca_file`
/// vouches for.
#[tokio::test]
async fn an_alert_reaches_an_https_webhook_trusted_through_its_ca_file() {
    let pki = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(pki.path());
    let (hook, mut received) = https_receiver(&cert, &key).await;
    let t = start_hub_with(|c| {
        c.metrics_interval = std::time::Duration::from_millis(100);
        c.alerts = hive_server::alerts::AlertConfig {
            rules: vec![hive_server::alerts::rules::Rule {
                name: "backlog".into(),
                metric: hive_server::alerts::rules::Metric::QueuedTasks,
                direction: hive_server::alerts::rules::Direction::Above,
                threshold: 0.0,
                clear: 0.0,
                for_ms: 0,
                severity: "warning".into(),
                when: None,
            }],
            webhook_url: Some(hook),
            webhook_ca_file: Some(cert.clone()),
        };
    })
    .await;
    t.client.submit(&NewTask::new("nobody")).await.unwrap();
    let body = tokio::time::timeout(std::time::Duration::from_secs(20), received.recv())
        .await
        .expect("the webhook is called (bounded against hanging)")
        .unwrap();
    assert_eq!(body["rule"], "backlog");
    assert_eq!(body["state"], "firing");
}

/// Past `limits.max_connections` a TLS client is answered like a plain one (503,
/// `too_many_connections`), after the handshake, so it can read the answer.
#[tokio::test]
async fn a_tls_connection_over_the_bound_reads_a_503_it_can_act_on() {
    let pki = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(pki.path());
    let t = start_hub_with(|c| {
        c.connections.max_connections = 2;
        c.tls = Some(hive_server::TlsFiles {
            cert: cert.clone(),
            key,
        })
    })
    .await;
    let addr = t.hub.addr();
    let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let https = format!("https://127.0.0.1:{}", addr.port());
    let client = HubClient::with_ca_file(&https, Some(&cert))
        .unwrap()
        .with_busy_budget(std::time::Duration::ZERO);
    match client.status().await {
        Err(hive_client::ClientError::Api { status, code, .. }) => {
            assert_eq!(status.as_u16(), 503);
            assert_eq!(code, "too_many_connections");
        }
        other => panic!("expected a 503 over TLS, got {other:?}"),
    }
}
