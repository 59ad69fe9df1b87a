//! Who may do what: API tokens with roles ([`tokens`]), the check every request passes
//! ([`require`]), per-token rate limits ([`rate`]), and the defences against a hostile web page
//! ([`browser`]), which hold even on loopback.
//!
//! Roles: `admin` (everything, token management, drains), `client` (submit, read, cancel, wait,
//! broadcast), `agent` (`/ws/agent` only, optionally limited to listed capabilities and swarms),
//! `read` (the dashboard's data, metrics, lists). `/healthz`, `/readyz`, the OpenAPI document and
//! the dashboard's static files are open; `/metrics` is open when `auth.open_metrics` says so.
//!
//! A token travels in `Authorization: Bearer <token>`. A browser cannot set that header on a
//! WebSocket, so there it may come as the subprotocol `bearer.<token>` next to `hive` (the hub
//! answers with `hive`). Never in a query string, which ends up in logs.

pub mod browser;
pub mod rate;
pub mod tokens;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};

use crate::error::ApiError;
use crate::state::AppState;

pub use hive_proto::enums::Role;

/// Whether a token of `role` may do what a route needs.
fn allows(role: Role, needed: Permission) -> bool {
    match role {
        Role::Admin => true,
        Role::Client => matches!(needed, Permission::Read | Permission::Submit),
        Role::Read => needed == Permission::Read,
        Role::Agent => needed == Permission::Work,
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Lists, reads, the live streams, metrics.
    Read,
    /// Submit, cancel, broadcast.
    Submit,
    /// Connect as an agent.
    Work,
    /// Tokens, drains.
    Admin,
}

/// The holder of a verified token, handed to the handlers as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's id (the part of its text before the secret), to look it up again.
    pub token_id: Arc<str>,
    /// The token's name: recorded as a task's `submitted_by`.
    pub name: Arc<str>,
    pub role: Role,
    pub capabilities: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
}

/// The permission `method` on `path` needs; `None`: open to anyone.
pub fn required(method: &Method, path: &str, open_metrics: bool) -> Option<Permission> {
    let api = path.strip_prefix("/api/v1");
    match (method, path, api) {
        (_, "/healthz" | "/readyz" | "/" | "/api/openapi.json", _) => None,
        (_, p, _) if p.starts_with("/assets/") => None,
        (_, "/metrics", _) if open_metrics => None,
        (_, "/metrics" | "/ws/events" | "/ws/performance", _) => Some(Permission::Read),
        (_, "/ws/agent", _) => Some(Permission::Work),
        (_, _, Some(rest)) if rest == "/tokens" || rest.starts_with("/tokens/") => {
            Some(Permission::Admin)
        }
        (&Method::POST, _, Some(rest)) if rest.starts_with("/agents/") => Some(Permission::Admin),
        (&Method::GET | &Method::HEAD, _, Some(_)) => Some(Permission::Read),
        (_, _, Some(_)) => Some(Permission::Submit),
        // Routes outside /api/v1 not named above: read access. (Unknown routes and methods
        // never get here: `require` is a route layer, and the router answers them 404 or 405.)
        _ => Some(Permission::Read),
    }
}

/// The token a request carries: `Authorization: Bearer`, or a WebSocket subprotocol
/// `bearer.<token>`.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer.or_else(|| {
        headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())?
            .split(',')
            .find_map(|p| p.trim().strip_prefix("bearer."))
    })
}

/// With authentication on, a request reaches its handler only with a token whose role allows
/// the route; the handler finds the [`Principal`] in the request's extensions. `Err`: the
/// answer instead (401, 403, 429). One of the route checks (`crate::routes::checks`).
pub fn authorize(state: &AppState, request: &mut Request) -> Result<(), ApiError> {
    let Some(tokens) = &state.tokens else {
        return Ok(());
    };
    let path = request.uri().path();
    let Some(needed) = required(request.method(), path, state.config.auth.open_metrics) else {
        return Ok(());
    };
    // A call the hub makes to itself for a caller whose token `/mcp` checked: its role decides
    // again, for this route, but the rate limit counted the caller's request already.
    if let Some(Delegated(who)) = request.extensions().get::<Delegated>().cloned() {
        if !allows(who.role, needed) {
            return Err(role_forbids(&who));
        }
        request.extensions_mut().insert(who);
        return Ok(());
    }
    let now = state.clock.now();
    let principal = presented(request.headers())
        .ok_or(tokens::Refused::Invalid)
        .and_then(|t| tokens.verify(t, now));
    match principal {
        Err(tokens::Refused::Invalid) => Err(ApiError::Unauthorized),
        Err(tokens::Refused::Expired { name, at }) => Err(ApiError::TokenExpired {
            name,
            at: crate::views::rfc3339(at),
        }),
        Ok(who) if !allows(who.role, needed) => Err(role_forbids(&who)),
        Ok(who) => {
            if let Err(wait_ms) = state.rate_limiter.take(&who, now.0) {
                return Err(ApiError::RateLimited {
                    name: who.name.to_string(),
                    retry_after_s: wait_ms.div_ceil(1000).max(1),
                });
            }
            request.extensions_mut().insert(who);
            Ok(())
        }
    }
}

/// A request the hub makes to itself on behalf of `0`, whose token was verified on the request
/// that caused it (an `/mcp` tool's REST call). Only the hub can set it: a request extension
/// never comes from the network.
#[derive(Debug, Clone)]
pub struct Delegated(pub Principal);

fn role_forbids(who: &Principal) -> ApiError {
    ApiError::Forbidden {
        code: "forbidden_role",
        message: format!(
            "the token {:?} has the role {}, which may not do this",
            who.name,
            who.role.as_str()
        ),
    }
}

/// How the token a connection was opened with stopped being good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEnd {
    Revoked,
    Expired,
}

impl TokenEnd {
    /// The `error` frame's code a worker gets (docs/protocol.md).
    pub fn code(self) -> &'static str {
        match self {
            TokenEnd::Revoked => "token_revoked",
            TokenEnd::Expired => "token_expired",
        }
    }

    /// What happened to the token, for a sentence: "the token ... {how}".
    pub fn how(self) -> &'static str {
        match self {
            TokenEnd::Revoked => "was revoked",
            TokenEnd::Expired => "expired",
        }
    }

    /// The close frame's reason.
    pub fn reason(self) -> &'static str {
        match self {
            TokenEnd::Revoked => "token revoked",
            TokenEnd::Expired => "token expired",
        }
    }
}

/// The longest single wait for an expiry: the timer runs on the monotonic clock, so the wall
/// clock is looked at again at least this often (after a suspend or a clock step a connection
/// outlives its token by at most this), and a lifetime of years is never one far-future timer.
const EXPIRY_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Completes when the token `who` connected with is revoked or expires, so that a WebSocket
/// opened with it is closed then, as the token's next request would be refused. Never completes
/// for a connection made without a token (authentication off).
pub async fn token_ended(state: &AppState, who: Option<&Principal>) -> TokenEnd {
    let (Some(tokens), Some(who)) = (&state.tokens, who) else {
        return std::future::pending().await;
    };
    // Subscribed before the first look, so a revocation in between is not missed.
    let mut revocations = tokens.revocations();
    loop {
        let now = state.clock.now();
        let expires_at = match tokens.standing(&who.token_id, now) {
            Ok(expires_at) => expires_at,
            Err(end) => return end,
        };
        let expiry = async {
            match expires_at {
                Some(at) => {
                    let left = std::time::Duration::from_millis(at.ms_since(now));
                    tokio::time::sleep(left.min(EXPIRY_WAIT_MAX)).await
                }
                None => std::future::pending().await,
            }
        };
        let revocation = async {
            if revocations.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        };
        tokio::select! {
            () = revocation => {}
            () = expiry => {}
        }
    }
}

/// Authentication settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthConfig {
    /// Tokens required (always on a non-loopback address).
    pub enabled: bool,
    /// `/metrics` readable without a token (for a scraper without one).
    pub open_metrics: bool,
    /// Requests per second per token, by role and by name (none by default).
    pub rate_limits: rate::RateLimits,
}

/// The file, in the data directory, that the first admin token is written to.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// With no live admin token, mints one and writes it to [`ADMIN_TOKEN_FILE`] in `dir`, readable
/// only by its owner; returns the file's path when it did.
pub fn bootstrap_admin(
    tokens: &tokens::Tokens,
    dir: &std::path::Path,
    now: hive_core::Timestamp,
) -> Result<Option<std::path::PathBuf>, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if tokens.has_admin(now) {
        return Ok(None);
    }
    let name = format!("admin-{}", now.0);
    let grant = tokens::Grant {
        name,
        role: Role::Admin,
        capabilities: None,
        groups: None,
        expires_in_s: None,
    };
    let (text, _) = tokens.create(grant, now).map_err(|e| e.to_string())?;
    let path = dir.join(ADMIN_TOKEN_FILE);
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    writeln!(file, "{text}").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_their_role_may_do() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(required(&get, "/healthz", false), None);
        assert_eq!(required(&get, "/assets/index.js", false), None);
        assert_eq!(required(&get, "/metrics", true), None);
        assert_eq!(required(&get, "/metrics", false), Some(Permission::Read));
        assert_eq!(
            required(&get, "/api/v1/tasks", false),
            Some(Permission::Read)
        );
        assert_eq!(
            required(&post, "/api/v1/tasks", false),
            Some(Permission::Submit)
        );
        assert_eq!(
            required(&post, "/api/v1/tasks/x/cancel", false),
            Some(Permission::Submit)
        );
        assert_eq!(
            required(&post, "/api/v1/agents/x/drain", false),
            Some(Permission::Admin)
        );
        assert_eq!(
            required(&get, "/api/v1/tokens", false),
            Some(Permission::Admin)
        );
        assert_eq!(required(&get, "/ws/agent", false), Some(Permission::Work));
        assert!(
            allows(Role::Client, Permission::Submit) && !allows(Role::Client, Permission::Work)
        );
        assert!(!allows(Role::Read, Permission::Submit) && !allows(Role::Agent, Permission::Read));
    }

    #[test]
    fn a_token_comes_from_the_header_or_a_websocket_subprotocol() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer hive_a_b".parse().unwrap());
        assert_eq!(presented(&headers), Some("hive_a_b"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "hive, bearer.hive_c_d".parse().unwrap(),
        );
        assert_eq!(presented(&headers), Some("hive_c_d"));
        assert_eq!(presented(&HeaderMap::new()), None);
    }
}
