//! Defences against a web page the operator visits: the browser is an attacker too, even when
//! the hub only listens on 127.0.0.1.
//!
//! - **Host** (DNS rebinding): a page on `evil.example` whose name then resolves to 127.0.0.1
//!   reaches the hub with `Host: evil.example`. On a loopback address only loopback names are
//!   answered (plus `server.allowed_hosts`); on another address any name is, unless
//!   `server.allowed_hosts` lists them. A request with no `Host` (not from a browser) passes.
//! - **Origin** on WebSocket upgrades and on every request that changes something: a browser
//!   always sends it there, and it must be the hub itself (its scheme, and the host and port the
//!   request was sent to), or listed in `server.allowed_origins`. A page on another port of the
//!   same machine is another origin. No `Origin` (not a browser) passes.
//! - **JSON on every POST**: a cross-site form can post `text/plain` or a form encoding without
//!   asking first, but not `application/json` (that needs a CORS preflight, which the hub never
//!   grants). So a POST must say `Content-Type: application/json`, with or without a body.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Which hosts and origins browsers may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserPolicy {
    /// Host names answered (lowercase, no port); `None`: any.
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins allowed besides the hub itself, e.g. `http://127.0.0.1:5173` for a dev server.
    pub allowed_origins: Vec<String>,
}

impl BrowserPolicy {
    /// The policy for a hub listening on `listen`, with the configured extra hosts (when any
    /// are configured, only those and the loopback names are answered).
    pub fn for_listen(
        listen: std::net::SocketAddr,
        hosts: Option<Vec<String>>,
        origins: Vec<String>,
    ) -> Self {
        let loopback = ["localhost", "127.0.0.1", "::1"].map(String::from);
        let allowed_hosts = match (listen.ip().is_loopback(), hosts) {
            (_, Some(extra)) => Some(
                loopback
                    .into_iter()
                    .chain(extra.into_iter().map(|h| h.to_ascii_lowercase()))
                    .collect(),
            ),
            (true, None) => Some(loopback.into()),
            (false, None) => None,
        };
        BrowserPolicy {
            allowed_hosts,
            allowed_origins: origins,
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allowed_hosts
            .as_ref()
            .is_none_or(|hosts| hosts.iter().any(|h| h == host))
    }
}

/// The host name of a `Host` header value or of an origin's authority: lowercase, no port, no
/// IPv6 brackets.
fn host_name(authority: &str) -> String {
    let authority = authority.trim().to_ascii_lowercase();
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    authority.split(':').next().unwrap_or_default().to_string()
}

fn forbidden(code: &'static str, message: String) -> Response {
    ApiError::Forbidden { code, message }.into_response()
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// Middleware applying the Host and Origin checks of the module's header (the JSON check is
/// [`json_post`], a route check).
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let policy = &state.config.browser;
    let headers = request.headers();
    let host = header_text(headers, header::HOST).map(host_name);
    if let Some(host) = &host
        && !policy.host_allowed(host)
    {
        return forbidden(
            "forbidden_host",
            format!("this hub does not answer to the host {host:?} (server.allowed_hosts)"),
        );
    }
    let method = request.method().clone();
    let upgrade = headers.contains_key(header::UPGRADE);
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if (upgrade || changes)
        && let Some(origin) = header_text(headers, header::ORIGIN)
    {
        let scheme = if state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let itself = header_text(headers, header::HOST).is_some_and(|authority| {
            origin.eq_ignore_ascii_case(&format!("{scheme}://{authority}"))
        });
        if !itself && !policy.allowed_origins.iter().any(|o| o == origin) {
            return forbidden(
                "forbidden_origin",
                format!(
                    "requests from the origin {origin:?} are not allowed (server.allowed_origins)"
                ),
            );
        }
    }
    next.run(request).await
}

/// A POST must say it is JSON (`Err`: 415). A route check (`crate::routes::checks`): after
/// routing, so that a POST to a route without one is answered 405.
pub fn json_post(request: &Request) -> Result<(), ApiError> {
    if request.method() == Method::POST {
        let json = header_text(request.headers(), header::CONTENT_TYPE).is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Err(ApiError::UnsupportedMediaType {
                message: "a POST must have Content-Type: application/json (even without a body)"
                    .into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port_and_brackets() {
        assert_eq!(host_name("LocalHost:7700"), "localhost");
        assert_eq!(host_name("[::1]:7700"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn loopback_answers_loopback_names_and_others_answer_any_unless_listed() {
        let local = BrowserPolicy::for_listen("127.0.0.1:7700".parse().unwrap(), None, vec![]);
        assert!(local.host_allowed("localhost") && local.host_allowed("::1"));
        assert!(!local.host_allowed("evil.example"));
        let open = BrowserPolicy::for_listen("0.0.0.0:7700".parse().unwrap(), None, vec![]);
        assert!(open.host_allowed("hive.example"));
        let listed = BrowserPolicy::for_listen(
            "0.0.0.0:7700".parse().unwrap(),
            Some(vec!["Hive.Example".into()]),
            vec![],
        );
        assert!(listed.host_allowed("hive.example") && !listed.host_allowed("evil.example"));
    }
}
