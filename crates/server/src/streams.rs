//! Pushing a broadcast to WebSocket clients without ever buffering for a slow one: the shared
//! part of `/ws/performance` and `/ws/events`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};
use tokio::sync::broadcast;

/// The close frame for a stream whose token was revoked, or expired, while it was open.
pub fn token_ended(end: crate::auth::TokenEnd) -> axum::extract::ws::CloseFrame {
    axum::extract::ws::CloseFrame {
        code: 1008,
        reason: end.reason().into(),
    }
}

/// A write that takes longer than this means the client stopped reading: it is cut off.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The hub stopped publishing.
    Closed,
    /// The client went away or stopped reading for [`SEND_TIMEOUT`].
    ClientGone,
}

/// Sends what `render` makes of each item (nothing for `None`). A client that falls more than
/// the channel's buffer behind gets `{"type":"skipped","count":N}` and then the newest items: the
/// hub never holds more for it than the buffer.
pub async fn forward<T, S>(
    mut receiver: broadcast::Receiver<Arc<T>>,
    sink: &mut S,
    mut render: impl FnMut(&T) -> Option<String>,
) -> Ended
where
    S: Sink<Message> + Unpin,
{
    loop {
        let text = match receiver.recv().await {
            Ok(item) => match render(&item) {
                Some(text) => text,
                None => continue,
            },
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

/// Sends one text frame, giving up after [`SEND_TIMEOUT`].
pub async fn send<S: Sink<Message> + Unpin>(sink: &mut S, text: String) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Sends the closing frame (`None`: no code), bounded like every send: a client that stopped
/// reading must not hold the socket and its task forever.
pub async fn close<S: Sink<Message> + Unpin>(
    sink: &mut S,
    frame: Option<axum::extract::ws::CloseFrame>,
) {
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(frame))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    fn snapshot(n: u64) -> Arc<u64> {
        Arc::new(n)
    }

    fn render(n: &u64) -> Option<String> {
        Some(
            serde_json::json!({ "type": "snapshot", "snapshot": { "interval_ms": n } }).to_string(),
        )
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
        assert_eq!(forward(receiver, &mut client, render).await, Ended::Closed);
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
        assert_eq!(
            forward(receiver, &mut stuck, render).await,
            Ended::ClientGone
        );
        assert!(stuck.received.is_empty());
    }
}
