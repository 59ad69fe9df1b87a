//! Times every API request by its route template (`GET /api/v1/tasks/{id}`), and counts its
//! response class. Run by the route checks (`crate::routes::checks`), so only requests that
//! matched a route are timed (a 404 for an unknown path is not a route's latency). The time is
//! until the handler's response is ready, which for these JSON answers is all of the hub's work.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use super::{Count, HubMetrics};

/// A request being timed: started when it passed the route checks before it.
pub struct Timing {
    started: Instant,
    route: Option<String>,
}

impl Timing {
    pub fn start(request: &Request) -> Timing {
        Timing {
            started: Instant::now(),
            route: request
                .extensions()
                .get::<MatchedPath>()
                .map(|p| format!("{} {}", request.method(), p.as_str())),
        }
    }

    /// Records the request's time and its response's class.
    pub fn record(self, metrics: &HubMetrics, response: &Response) {
        let us = self.started.elapsed().as_micros() as u64;
        let Some(route) = self.route else {
            return;
        };
        let stats = metrics.route(&route);
        stats.latency.record_us(us);
        metrics.add(Count::ApiRequests, 1);
        let counter = match response.status().as_u16() {
            500.. => {
                metrics.add(Count::ApiServerErrors, 1);
                &stats.server_errors
            }
            400..=499 => {
                metrics.add(Count::ApiClientErrors, 1);
                &stats.client_errors
            }
            _ => &stats.ok,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A long-poll lasts as long as the client asked, a WebSocket or an event stream as long
        // as it is open, an MCP call as long as its tool waits (`wait_ms`, a broadcast).
        let waits =
            route.ends_with("/wait") || route.ends_with("/events") || route.ends_with(" /mcp");
        if !waits && !route.contains(" /ws/") {
            metrics.api.record_us(us);
        }
    }
}
