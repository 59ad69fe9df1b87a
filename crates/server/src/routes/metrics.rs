//! `GET /api/v1/metrics` (the latest snapshot as JSON), `GET /metrics` (Prometheus) and
//! `/ws/performance` (every snapshot as it is taken, after the recent history).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt};
use hive_proto::metrics::MetricsSnapshot;
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::metrics::exposition;
use crate::state::AppState;

/// The hub's measurements over the last interval (1 s by default).
#[utoipa::path(get, path = "/api/v1/metrics", tag = "system",
    responses((status = 200, body = MetricsSnapshot)))]
pub async fn snapshot(State(state): State<AppState>) -> Result<Json<MetricsSnapshot>, ApiError> {
    // The loop publishes its first snapshot as it starts, before the listener opens.
    let latest = state.snapshots.latest().ok_or_else(off)?;
    Ok(Json((*latest).clone()))
}

fn off() -> ApiError {
    ApiError::NotFound {
        what: "metrics: this hub runs with metrics.enabled = false".into(),
    }
}

pub async fn prometheus(State(state): State<AppState>) -> Response {
    if !state.metrics.enabled() {
        return off().into_response();
    }
    let latest = state.snapshots.latest();
    let text = exposition::render(&state.metrics, latest.as_deref());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub async fn performance(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| stream_snapshots(state, socket))
}

/// A write that takes longer than this means the client stopped reading: it is cut off.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

async fn stream_snapshots(state: AppState, mut socket: WebSocket) {
    let (history, receiver) = state.snapshots.subscribe();
    let history: Vec<&MetricsSnapshot> = history.iter().map(|s| &**s).collect();
    let first = serde_json::json!({ "type": "history", "snapshots": history });
    if send(&mut socket, first.to_string()).await.is_err() {
        return;
    }
    let stop = crate::state::stopped(state.shutdown.clone());
    tokio::select! {
        _ = forward(receiver, &mut socket) => {}
        _ = stop => {}
    }
    let _ = socket.send(Message::Close(None)).await;
}

#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The hub stopped taking snapshots.
    Closed,
    /// The client went away or stopped reading for [`SEND_TIMEOUT`].
    ClientGone,
}

/// Sends each snapshot as `{"type":"snapshot","snapshot":{...}}`. A client that falls more
/// than the channel's buffer behind gets `{"type":"skipped","count":N}` and the newest
/// snapshots: the hub never holds more for it than the buffer.
pub async fn forward<S>(
    mut receiver: broadcast::Receiver<std::sync::Arc<MetricsSnapshot>>,
    sink: &mut S,
) -> Ended
where
    S: Sink<Message> + Unpin,
{
    loop {
        let text = match receiver.recv().await {
            Ok(snapshot) => {
                serde_json::json!({ "type": "snapshot", "snapshot": &*snapshot }).to_string()
            }
            Err(broadcast::error::RecvError::Lagged(count)) => {
                serde_json::json!({ "type": "skipped", "count": count }).to_string()
            }
            Err(broadcast::error::RecvError::Closed) => return Ended::Closed,
        };
        if send(sink, text).await.is_err() {
            return Ended::ClientGone;
        }
    }
}

async fn send<S: Sink<Message> + Unpin>(sink: &mut S, text: String) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    fn snapshot(n: u64) -> Arc<MetricsSnapshot> {
        let json = serde_json::json!({
            "at": "2026-01-01T00:00:00Z", "interval_ms": n, "p50_latency_ms": 0.0,
            "p95_latency_ms": 0.0, "p99_latency_ms": 0.0, "agent_ops_per_sec": 0.0,
            "task_ops_per_sec": 0.0, "swarm_ops_per_sec": 0.0, "cpu_core_usage": [],
            "memory_by_component": {}, "cache_hit_rates": {}, "error_rate_percent": 0.0,
            "timeout_rate_percent": 0.0, "latency_ms": {}, "throughput": {}, "routes": {},
            "queue_depth": {}, "agents": {}, "totals": {},
            "process": {"cpu_percent": 0.0, "rss_bytes": 0, "peak_rss_bytes": 0, "uptime_s": 0.0},
            "load_avg": null
        });
        Arc::new(serde_json::from_value(json).unwrap())
    }

    /// A client that reads only when told to: `open` frames may be written, then writes hang.
    struct Client {
        open: usize,
        received: Vec<String>,
    }

    impl Sink<Message> for Client {
        type Error = ();
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            if self.open > 0 {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), ()> {
            self.open -= 1;
            if let Message::Text(t) = item {
                self.received.push(t.to_string());
            }
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_falls_behind_skips_snapshots_and_one_that_stops_is_cut_off() {
        let (sender, receiver) = broadcast::channel(4);
        // Ten snapshots while the client is not reading: only the last four are kept for it.
        for n in 0..10 {
            sender.send(snapshot(n)).unwrap();
        }
        drop(sender);
        let mut client = Client {
            open: 100,
            received: Vec::new(),
        };
        assert_eq!(forward(receiver, &mut client).await, Ended::Closed);
        let frames: Vec<serde_json::Value> = client
            .received
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        assert_eq!(
            (frames[0]["type"].as_str(), frames[0]["count"].as_u64()),
            (Some("skipped"), Some(6))
        );
        assert_eq!(frames.len(), 5);
        assert_eq!(frames[4]["type"], "snapshot");
        assert_eq!(frames[4]["snapshot"]["interval_ms"], 9);

        // A client that reads nothing more: cut off after SEND_TIMEOUT (time is paused, so the
        // test does not wait for it).
        let (sender, receiver) = broadcast::channel(4);
        sender.send(snapshot(1)).unwrap();
        let mut stuck = Client {
            open: 0,
            received: Vec::new(),
        };
        assert_eq!(forward(receiver, &mut stuck).await, Ended::ClientGone);
        assert!(stuck.received.is_empty());
    }
}
