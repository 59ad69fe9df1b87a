//! Where an alert goes when it fires or resolves, besides the history and the event stream: the
//! log, and a webhook (an HTTP POST of the [`AlertEvent`] as JSON, with a Slack-compatible
//! `text`). Webhook calls go out in order from one task, each retried with backoff while the
//! receiver fails, so a slow or failing receiver never holds up the hub.

use std::time::Duration;

use hive_proto::alerts::AlertEvent;
use hive_proto::enums::AlertChange;
use tokio::sync::mpsc;

/// Waits between the tries of one call: four tries in about 3.5 s.
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
];
/// Calls waiting for the webhook before new ones are dropped (and logged).
const QUEUE: usize = 1024;

pub fn log(event: &AlertEvent) {
    match event.state.as_str() {
        "firing" => {
            tracing::warn!(rule = %event.rule, severity = %event.severity, "alert firing: {}", event.message)
        }
        _ => tracing::info!(rule = %event.rule, "alert resolved: {}", event.message),
    }
}

#[derive(Clone)]
pub struct Webhook {
    queue: mpsc::Sender<AlertEvent>,
}

impl Webhook {
    /// Starts the task that posts to `url`, trusting for `https://` the roots `tls` holds; it
    /// ends when the last `Webhook` is dropped.
    pub fn spawn(url: String, tls: tokio_rustls::rustls::ClientConfig) -> Webhook {
        let (queue, mut calls) = mpsc::channel::<AlertEvent>(QUEUE);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .tls_backend_preconfigured(tls)
            .build()
            .expect("an HTTP client builds");
        tokio::spawn(async move {
            while let Some(event) = calls.recv().await {
                deliver(&client, &url, &event).await;
            }
        });
        Webhook { queue }
    }

    pub fn send(&self, event: AlertEvent) {
        if let Err(e) = self.queue.try_send(event) {
            tracing::warn!(error = %e, "alert webhook queue full: call dropped");
        }
    }
}

fn body(event: &AlertEvent) -> serde_json::Value {
    let icon = if event.state == AlertChange::Firing {
        "🔥"
    } else {
        "✅"
    };
    let mut body = serde_json::to_value(event).expect("serialisable");
    body["text"] = format!(
        "{icon} [{}] {} {}: {}",
        event.severity, event.rule, event.state, event.message
    )
    .into();
    body
}

async fn deliver(client: &reqwest::Client, url: &str, event: &AlertEvent) {
    let body = body(event);
    for (attempt, delay) in std::iter::once(None)
        .chain(RETRY_DELAYS.iter().map(Some))
        .enumerate()
    {
        if let Some(delay) = delay {
            tokio::time::sleep(*delay).await;
        }
        match client.post(url).json(&body).send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(%url, attempt, status = %response.status(), "alert webhook refused the call")
            }
            Err(e) => tracing::warn!(%url, attempt, error = %e, "alert webhook unreachable"),
        }
    }
    tracing::error!(%url, rule = %event.rule, "alert webhook failed after every retry");
}
