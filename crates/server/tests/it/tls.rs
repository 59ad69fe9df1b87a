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
    // Its status changes came over the wss:// stream, up to the end.
    loop {
        let frame = next_json(&mut events).await;
        let ended = frame["events"].as_array().into_iter().flatten().any(|e| {
            e["type"] == "task" && e["task_id"] == task.id.as_str() && e["status"] == "succeeded"
        });
        if ended {
            break;
        }
    }
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
