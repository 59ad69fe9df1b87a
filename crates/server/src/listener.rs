//! Accepting connections: the HTTP/1.1 server loop, with the bounds `axum::serve` lacks.
//!
//! - **Open connections are bounded** (`max_connections`, WebSockets included: the count lives in
//!   the connection's IO, which an upgrade carries along). Past the bound a connection is still
//!   accepted, answered `503` with `Retry-After` in one write, and closed, so clients learn at once
//!   instead of timing out; the hub keeps file descriptors in reserve for that, for its store and
//!   for its workers' command pipes ([`raise_fd_limit`]). On a TLS port the refusal follows the
//!   handshake (a plain answer would only fail it), within the same second. `GET /healthz` is
//!   answered `200` there instead: the process is up, and a liveness probe that failed because
//!   the hub is busy would have an orchestrator restart it, which makes overload worse.
//! - **Request headers must arrive within `header_read_timeout`** (hyper's timer): a slowloris
//!   client sending a byte a second, or an idle keep-alive connection, is closed.
//! - **A write must make progress within `write_stall_timeout`**: a client that stops reading
//!   (a response, an event stream, a WebSocket) is cut off instead of holding its connection and
//!   the answer buffered for it for ever. A slow reader that keeps reading is not.
//! - A failed `accept` (out of descriptors after all) is retried after a short pause, not the
//!   second `axum::serve` waits.
//! - **TLS** when the hub has a certificate: the handshake, too, must finish within
//!   `header_read_timeout`.
//!
//! Shutdown: stop accepting, ask every connection to finish its request and close, and wait for
//! them (bounded).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::reads::ClientAddr;

use crate::metrics::{Count, HubMetrics};

/// Bounds on the connections one hub serves.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections served at once (HTTP and WebSocket); 0: derived from the descriptor
    /// limit (see [`raise_fd_limit`]).
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a JSON request body, once its headers are in (a body
    /// that trickles in would hold its connection, its room among the body bytes in flight and,
    /// for a submit, its place among the submits in flight).
    pub body_read_timeout: Duration,
    /// Longest a write to a client may wait without any of it going out: past it the connection
    /// is closed.
    pub write_stall_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 0,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            write_stall_timeout: Duration::from_secs(30),
        }
    }
}

/// Descriptors kept back from connections: the store's files, log and pipes, and the refusals.
const FD_RESERVE: u64 = 256;

/// Raises the soft limit on open files to the hard limit, and returns how many connections fit
/// under it with [`FD_RESERVE`] to spare.
pub fn raise_fd_limit() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            limit = getrlimit(Resource::Nofile);
        }
    }
    let files = limit.current.unwrap_or(1 << 20);
    files.saturating_sub(FD_RESERVE).clamp(16, 1 << 20) as usize
}

/// The answer to a connection over the bound: whole, so one write sends it.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 95\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the hub serves all the connections it can\"}}";

/// `/healthz`'s answer over the connection bound (its body as the route's).
const ALIVE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}";

/// How long a connection over the bound may take to send its request line before it is refused.
const PROBE_WAIT: Duration = Duration::from_millis(200);

/// Serves `app` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    metrics: Arc<HubMetrics>,
    shutdown: watch::Receiver<bool>,
) {
    // Raised in any case: a configured bound may be above the soft limit.
    let fitting = raise_fd_limit();
    let max = match limits.max_connections {
        0 => fitting,
        n => n,
    };
    let permits = Arc::new(Semaphore::new(max));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    // Every connection task holds a sender; all gone means all connections closed.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let stop = crate::state::stopped(shutdown.clone());
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.add(Count::ConnectionsRefused, 1);
            // Refusals are bounded too: past the bound a connection is just closed.
            if let Ok(refusing) = refusals.clone().try_acquire_owned() {
                let tls = tls.clone();
                tokio::spawn(async move {
                    refuse(stream, tls).await;
                    drop(refusing);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let counted = Counted {
            stream,
            _permit: permit,
            stall_limit: limits.write_stall_timeout,
            stalled: None,
        };
        let app = app.clone();
        let stopping = crate::state::stopped(shutdown.clone());
        let open = open.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(counted, peer, app, limits, stopping).await,
                Some(tls) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, tls.accept(counted));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, app, limits, stopping).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(open);
        });
    }
    drop(open);
    // Long-polls and streams end on shutdown by themselves; this only bounds a stuck client.
    let _ = tokio::time::timeout(Duration::from_secs(10), all_closed.recv()).await;
}

/// Serves HTTP/1.1 (and WebSocket upgrades) on one connection until it closes or the hub stops.
async fn serve_connection<S>(
    io: S,
    peer: std::net::SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    stopping: impl std::future::Future<Output = ()>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Each request carries the connection's peer (who a client is without a token, see
    // `crate::reads`). The router is always ready, so it is called without `poll_ready`.
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ClientAddr(peer));
        tower_service::Service::call(&mut app.clone(), request)
    });
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stopping => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Refusals answered at once; each holds a descriptor for up to a second (within the reserve).
const MAX_REFUSALS: usize = 64;

/// Answers a connection over the bound and closes it, all within a second: on a TLS port after
/// the handshake, so that the client can read the answer. The request is read (briefly) before
/// the close: closing with unread bytes makes the kernel reset the connection, which can destroy
/// the answer before the client reads it.
async fn refuse(stream: TcpStream, tls: Option<TlsAcceptor>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        match tls {
            None => answer_and_close(stream).await,
            Some(tls) => answer_and_close(tls.accept(stream).await?).await,
        }
    })
    .await;
}

async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    // The request line says whether this is a liveness probe. An HTTP client speaks first, at
    // once; one that has sent nothing within a moment is refused all the same.
    let mut head = [0u8; 64];
    let read = tokio::time::timeout(PROBE_WAIT, stream.read(&mut head)).await;
    let head = match read {
        Ok(read) => &head[..read?],
        Err(_) => &[][..],
    };
    let probe = head.starts_with(b"GET /healthz ") || head.starts_with(b"GET /healthz?");
    stream
        .write_all(if probe { ALIVE } else { REFUSAL })
        .await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

/// A connection's socket, holding its place under the bound for as long as it is open, and
/// failing a write that made no progress for `stall_limit` (the client stopped reading).
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    stall_limit: Duration,
    /// Set while writes wait on a full socket: when that began to count.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Counted {
    /// A write's outcome, with the stall clock: progress (or an error) stops it, waiting
    /// starts it, and waiting past it is an error that ends the connection.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.stall_limit;
        let clock = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match clock.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} ms (limits.write_stall_timeout_ms)",
                    limit.as_millis()
                ),
            ))),
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A TCP socket's flush is immediate: nothing to watch.
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::REFUSAL;

    /// The body of a canned answer, checked against the length it says.
    fn body(answer: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn the_refusal_and_the_probes_answer_are_whole_responses_with_the_length_they_say() {
        assert_eq!(body(REFUSAL)["error"]["code"], "too_many_connections");
        let alive = body(super::ALIVE);
        let route = serde_json::to_value(hive_proto::api::Health {
            status: hive_proto::api::HealthStatus::Ok,
        })
        .unwrap();
        assert_eq!(alive, route, "the same body as the route's");
    }
}
