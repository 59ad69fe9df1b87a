//! `HubClient`: typed calls to the REST API under `/api/v1`.

use std::time::Duration;

use hive_proto::api::{
    Agent, AgentList, BatchCreated, ErrorBody, NewSwarmMessage, NewTask, NewTaskBatch, Status,
    SwarmList, SwarmMessageOutcome, Task, TaskList, TaskStatus,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The reason is the whole chain of causes in one line (`why_unreachable`), so the error
    /// has no `source`: a caller printing the chain (anyhow's `{:#}`) would repeat it.
    #[error("cannot reach the hub at {url}: {}", why_unreachable(cause))]
    Unreachable { url: String, cause: reqwest::Error },
    #[error("the hub answered {status}: {message}{}", field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("unexpected answer from the hub ({status}): {detail}")]
    Decode { status: StatusCode, detail: String },
}

/// How long an idle connection is kept for the next call: half the hub's default header time.
const IDLE_CONNECTION_KEPT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct HubClient {
    base: String,
    http: reqwest::Client,
    /// How long one call may spend waiting as `Retry-After` answers ask, in all.
    busy_budget: Duration,
    /// Sent as `Authorization: Bearer` when the hub wants tokens.
    token: Option<String>,
    /// The hub's bound on one long poll in milliseconds (`server.max_wait_ms`), once a refusal
    /// named it ([`NO_BOUND_KNOWN`] before); shared by the clones of this client.
    max_wait_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// `HubClient::max_wait_ms` before a hub named its bound on a wait.
const NO_BOUND_KNOWN: u64 = u64::MAX;

/// The least time between two polls of one wait: a hub whose bound on a wait is shorter (or 0)
/// answers at once, and asking again at once would only spin.
const LEAST_POLL: Duration = Duration::from_millis(100);

/// The wait a `429` or `503` answer asks for in its `Retry-After` header (seconds).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let status = response.status();
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let seconds: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// `path?name=value&...`, each value escaped as a query needs.
fn with_query(path: &str, params: &[(&str, String)]) -> String {
    let mut query = reqwest::Url::parse("http://hub/").expect("a valid URL");
    query.query_pairs_mut().extend_pairs(params);
    match query.query() {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

/// The hub's bound on a wait, from its refusal of a longer one (`timeout_ms`: "must be a number
/// from 0 to MAX").
fn hub_max_wait(refused: &ClientError) -> Option<Duration> {
    let ClientError::Api { field, message, .. } = refused else {
        return None;
    };
    if field.as_deref() != Some("timeout_ms") {
        return None;
    }
    let ms = message.rsplit("from 0 to ").next()?.trim().parse().ok()?;
    Some(Duration::from_millis(ms))
}

/// Why a request got no answer, as one line: the causes under reqwest's own message (which only
/// repeats the URL), e.g. `client error (Connect): tcp connect error: Connection refused`; the
/// message itself when there is nothing under it.
fn why_unreachable(cause: &reqwest::Error) -> String {
    let mut reasons: Vec<String> = Vec::new();
    let mut next = std::error::Error::source(cause);
    while let Some(reason) = next {
        let text = reason.to_string();
        if reasons.last() != Some(&text) {
            reasons.push(text);
        }
        next = reason.source();
    }
    if reasons.is_empty() {
        cause.to_string()
    } else {
        reasons.join(": ")
    }
}

/// The error of a refused call: the API's error body, or the body as text if it is not one.
pub(crate) fn refusal(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
            field: body.error.field,
        },
        Err(_) => ClientError::Decode {
            status,
            detail: String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

/// Filters of a task listing.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Option<TaskStatus>,
    pub capability: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

impl HubClient {
    /// `base` is the hub's URL, e.g. `http://127.0.0.1:7700`; an `https://` hub's certificate is
    /// checked against the system's trusted roots.
    pub fn new(base: &str) -> Self {
        let tls = if base.starts_with("https://") {
            hive_tls::client_config(None).expect("a TLS client config with ring builds")
        } else {
            hive_tls::plain_client_config()
        };
        Self::with_tls(base, tls)
    }

    /// For an `https://` hub whose certificate is signed by the CA in `ca_file` (PEM), e.g. a
    /// self-signed one, besides the system's trusted roots.
    pub fn with_ca_file(
        base: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, hive_tls::TlsError> {
        Ok(Self::with_tls(base, hive_tls::client_config(ca_file)?))
    }

    /// With a TLS configuration made once (`hive_tls::client_config`) for many clients: reading
    /// the system's roots for each would cost a client that makes many of them.
    pub fn with_tls(base: &str, tls: rustls::ClientConfig) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            // The hub closes a keep-alive connection idle for its header time (10 s by default,
            // `limits.header_read_timeout_ms`): a request sent on one as it closes fails with an
            // incomplete message (seen after a 10 s `Retry-After`). Let go of idle ones sooner.
            .pool_idle_timeout(IDLE_CONNECTION_KEPT)
            .tls_backend_preconfigured(tls)
            .build()
            .expect("an HTTP client builds");
        HubClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            busy_budget: Duration::from_secs(30),
            token: None,
            max_wait_ms: std::sync::Arc::new(NO_BOUND_KNOWN.into()),
        }
    }

    /// Authenticates every call with `token` (see the hub's docs/security.md).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// How long one call may wait, in all, when the hub answers `429` or `503` with
    /// `Retry-After` (default 30 s); zero returns those answers as errors at once.
    pub fn with_busy_budget(mut self, budget: Duration) -> Self {
        self.busy_budget = budget;
        self
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
        timeout: Option<Duration>,
    ) -> Result<(StatusCode, T), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut waited = Duration::ZERO;
        let response = loop {
            let mut request = self.authorized(self.http.request(method.clone(), &url));
            match body {
                Some(body) => request = request.json(body),
                // The hub takes a POST only as JSON, bodiless ones included (a browser defence).
                None if method == Method::POST => {
                    request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
                }
                None => {}
            }
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            let response = request
                .send()
                .await
                .map_err(|cause| ClientError::Unreachable {
                    url: url.clone(),
                    cause,
                })?;
            // 429 and 503 with `Retry-After` mean "not done, try again then": the hub accepted
            // nothing, so repeating even a submit is safe.
            // At least 100 ms: a `Retry-After: 0` must not turn into a busy loop.
            match retry_after(&response).map(|w| w.max(Duration::from_millis(100))) {
                Some(wait) if waited + wait <= self.busy_budget => {
                    tracing::debug!(%url, wait_ms = wait.as_millis() as u64, "the hub is busy; waiting as it asks");
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                _ => break response,
            }
        };
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|cause| ClientError::Unreachable { url, cause })?;
        if status.is_success() {
            let value = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                status,
                detail: e.to_string(),
            })?;
            return Ok((status, value));
        }
        Err(refusal(status, &bytes))
    }

    /// Follows a task (`GET /api/v1/tasks/{id}/events`, Server-Sent Events), calling `on_event`
    /// with each event's name (`task` for the unfinished task as the stream starts, `status`,
    /// `progress`, `skipped`) and data, until the stream ends:
    /// with the finished task, or `None` when the hub ended it first (after its `max_wait`; open
    /// it again).
    pub async fn follow(
        &self,
        id: &str,
        mut on_event: impl FnMut(&str, &serde_json::Value),
    ) -> Result<Option<Task>, ClientError> {
        let url = format!("{}/api/v1/tasks/{id}/events", self.base);
        let request = self.authorized(self.http.get(&url));
        let unreachable = |cause| ClientError::Unreachable {
            url: url.clone(),
            cause,
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(unreachable)?;
            return Err(refusal(status, &bytes));
        }
        let mut events = hive_proto::sse::SseReader::default();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            for event in events.feed(&chunk) {
                let Some(name) = event.event else {
                    continue;
                };
                let value: serde_json::Value =
                    serde_json::from_str(&event.data).map_err(|e| ClientError::Decode {
                        status,
                        detail: format!("event {name}: {e}"),
                    })?;
                if name == "task" {
                    let task: Task =
                        serde_json::from_value(value.clone()).map_err(|e| ClientError::Decode {
                            status,
                            detail: format!("event task: {e}"),
                        })?;
                    if task.status.is_finished() {
                        return Ok(Some(task));
                    }
                }
                on_event(&name, &value);
            }
        }
        Ok(None)
    }

    const NO_BODY: Option<&'static ()> = None;

    /// `request` with the token, when the client has one.
    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Any call by its method and path (with query), its body and answer as JSON; for callers
    /// that pass the API's values through (`hive mcp`). `timeout` bounds the whole call.
    pub async fn json(
        &self,
        method: Method,
        target: &str,
        body: Option<&serde_json::Value>,
        timeout: Option<Duration>,
    ) -> Result<serde_json::Value, ClientError> {
        Ok(self.call(method, target, body, timeout).await?.1)
    }

    /// Any `GET` by its path (with query), the answer parsed as `T`: a caller that needs only
    /// part of an answer, or none of it (`serde::de::IgnoredAny` reads it to the end and checks
    /// its JSON syntax, building nothing: `hive bench`'s listing of agents).
    pub async fn get<T: DeserializeOwned>(&self, target: &str) -> Result<T, ClientError> {
        Ok(self.call(Method::GET, target, Self::NO_BODY, None).await?.1)
    }

    /// The hub's OpenAPI document (`/api/openapi.json`, open to anyone).
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        Ok(self
            .call(Method::GET, "/api/openapi.json", Self::NO_BODY, None)
            .await?
            .1)
    }

    /// Submits one task; the answer is the task as accepted (or the earlier one with the same
    /// idempotency key).
    pub async fn submit(&self, task: &NewTask) -> Result<Task, ClientError> {
        Ok(self
            .call(Method::POST, "/api/v1/tasks", Some(task), None)
            .await?
            .1)
    }

    pub async fn submit_batch(&self, tasks: Vec<NewTask>) -> Result<Vec<String>, ClientError> {
        let body = NewTaskBatch { tasks };
        let (_, created): (_, BatchCreated) = self
            .call(Method::POST, "/api/v1/tasks/batch", Some(&body), None)
            .await?;
        Ok(created.ids)
    }

    pub async fn task(&self, id: &str) -> Result<Task, ClientError> {
        Ok(self
            .call(
                Method::GET,
                &format!("/api/v1/tasks/{id}"),
                Self::NO_BODY,
                None,
            )
            .await?
            .1)
    }

    /// Waits up to `timeout` for the task to finish; returns it as it then stands. A hub that
    /// holds a wait for less (`server.max_wait_ms`) names its bound when it refuses a longer
    /// one: the client then waits in polls of that length, and remembers it.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Task, ClientError> {
        use std::sync::atomic::Ordering;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let bound = self.max_wait_ms.load(Ordering::Relaxed);
            let poll = if bound == NO_BOUND_KNOWN {
                left
            } else {
                left.min(Duration::from_millis(bound))
            };
            match self.wait_once(id, poll).await {
                Ok(task) if task.status.is_finished() || poll == left => return Ok(task),
                Ok(_) if poll < LEAST_POLL => {
                    let pause = (LEAST_POLL - poll).min(left - poll);
                    tokio::time::sleep(pause).await;
                }
                Ok(_) => {}
                Err(refused) => match hub_max_wait(&refused) {
                    Some(max) if max < poll => self
                        .max_wait_ms
                        .store(max.as_millis() as u64, Ordering::Relaxed),
                    _ => return Err(refused),
                },
            }
        }
    }

    async fn wait_once(&self, id: &str, timeout: Duration) -> Result<Task, ClientError> {
        let path = format!("/api/v1/tasks/{id}/wait?timeout_ms={}", timeout.as_millis());
        let deadline = Some(timeout + Duration::from_secs(10));
        Ok(self
            .call(Method::GET, &path, Self::NO_BODY, deadline)
            .await?
            .1)
    }

    pub async fn tasks(&self, query: &ListQuery) -> Result<TaskList, ClientError> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(s) = &query.status {
            params.push(("status", s.to_string()));
        }
        if let Some(c) = &query.capability {
            params.push(("capability", c.clone()));
        }
        if let Some(l) = query.limit {
            params.push(("limit", l.to_string()));
        }
        if let Some(c) = &query.cursor {
            params.push(("cursor", c.clone()));
        }
        let path = with_query("/api/v1/tasks", &params);
        Ok(self.call(Method::GET, &path, Self::NO_BODY, None).await?.1)
    }

    pub async fn cancel(&self, id: &str) -> Result<Task, ClientError> {
        let path = format!("/api/v1/tasks/{id}/cancel");
        Ok(self.call(Method::POST, &path, Self::NO_BODY, None).await?.1)
    }

    /// Every agent the hub knows, by id, page after page (the hub's page: 1,000).
    pub async fn agents(&self) -> Result<Vec<Agent>, ClientError> {
        self.agent_pages(None).await
    }

    /// Every agent the hub knows, by id, asked for `page` (1 to 1,000: the hub refuses others
    /// with 400) at a time.
    pub async fn agents_in_pages(&self, page: usize) -> Result<Vec<Agent>, ClientError> {
        self.agent_pages(Some(page)).await
    }

    async fn agent_pages(&self, page: Option<usize>) -> Result<Vec<Agent>, ClientError> {
        let mut agents = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params: Vec<(&str, String)> =
                page.map(|n| ("limit", n.to_string())).into_iter().collect();
            params.extend(cursor.clone().map(|c| ("cursor", c)));
            let target = with_query("/api/v1/agents", &params);
            let (_, list): (_, AgentList) =
                self.call(Method::GET, &target, Self::NO_BODY, None).await?;
            agents.extend(list.items);
            // The same cursor again would read the same page for ever.
            if list.next_cursor.is_none() || list.next_cursor == cursor {
                return Ok(agents);
            }
            cursor = list.next_cursor;
        }
    }

    /// The hubs sharing the hub's store.
    pub async fn hubs(&self) -> Result<hive_proto::api::HubList, ClientError> {
        let (_, list) = self
            .call(Method::GET, "/api/v1/hubs", Self::NO_BODY, None)
            .await?;
        Ok(list)
    }

    pub async fn agent(&self, id: &str) -> Result<Agent, ClientError> {
        Ok(self
            .call(
                Method::GET,
                &format!("/api/v1/agents/{id}"),
                Self::NO_BODY,
                None,
            )
            .await?
            .1)
    }

    pub async fn drain(&self, id: &str) -> Result<Agent, ClientError> {
        let path = format!("/api/v1/agents/{id}/drain");
        Ok(self.call(Method::POST, &path, Self::NO_BODY, None).await?.1)
    }

    /// Undoes a drain (admin): the agent takes work again.
    pub async fn undrain(&self, id: &str) -> Result<Agent, ClientError> {
        let path = format!("/api/v1/agents/{id}/undrain");
        Ok(self.call(Method::POST, &path, Self::NO_BODY, None).await?.1)
    }

    /// Sends a message to every agent of a swarm; answers with the replies that came in time.
    pub async fn broadcast(
        &self,
        group: &str,
        message: &NewSwarmMessage,
    ) -> Result<SwarmMessageOutcome, ClientError> {
        let path = format!("/api/v1/swarms/{group}/messages");
        Ok(self.call(Method::POST, &path, Some(message), None).await?.1)
    }

    /// Alerts pending or firing, and the recent history.
    pub async fn alerts(&self) -> Result<hive_proto::alerts::AlertList, ClientError> {
        Ok(self
            .call(Method::GET, "/api/v1/alerts", Self::NO_BODY, None)
            .await?
            .1)
    }

    pub async fn swarms(&self) -> Result<SwarmList, ClientError> {
        Ok(self
            .call(Method::GET, "/api/v1/swarms", Self::NO_BODY, None)
            .await?
            .1)
    }

    /// Creates an API token (admin).
    pub async fn create_token(
        &self,
        token: &hive_proto::api::NewToken,
    ) -> Result<hive_proto::api::TokenCreated, ClientError> {
        Ok(self
            .call(Method::POST, "/api/v1/tokens", Some(token), None)
            .await?
            .1)
    }

    pub async fn tokens(&self) -> Result<Vec<hive_proto::api::TokenInfo>, ClientError> {
        let (_, list): (_, hive_proto::api::TokenList) = self
            .call(Method::GET, "/api/v1/tokens", Self::NO_BODY, None)
            .await?;
        Ok(list.items)
    }

    pub async fn revoke_token(
        &self,
        name: &str,
    ) -> Result<hive_proto::api::TokenInfo, ClientError> {
        let path = format!("/api/v1/tokens/{name}/revoke");
        Ok(self.call(Method::POST, &path, Self::NO_BODY, None).await?.1)
    }

    /// The hub's Prometheus exposition (`GET /metrics`), as text.
    pub async fn prometheus(&self) -> Result<String, ClientError> {
        let url = format!("{}/metrics", self.base);
        let request = self.authorized(self.http.get(&url));
        let unreachable = |cause| ClientError::Unreachable {
            url: url.clone(),
            cause,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(ClientError::Decode {
                status,
                detail: text,
            });
        }
        Ok(text)
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        Ok(self
            .call(Method::GET, "/api/v1/status", Self::NO_BODY, None)
            .await?
            .1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        let params = [("capability", "a b&c=d".to_string()), ("limit", "5".into())];
        assert_eq!(
            with_query("/api/v1/tasks", &params),
            "/api/v1/tasks?capability=a+b%26c%3Dd&limit=5"
        );
        assert_eq!(with_query("/api/v1/tasks", &[]), "/api/v1/tasks");
    }

    #[test]
    fn the_hubs_bound_on_a_wait_is_read_from_its_refusal() {
        let refusal = |field: &str, message: &str| ClientError::Api {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field".into(),
            message: message.into(),
            field: Some(field.into()),
        };
        let bound = hub_max_wait(&refusal("timeout_ms", "must be a number from 0 to 1500"));
        assert_eq!(bound, Some(Duration::from_millis(1500)));
        assert_eq!(
            hub_max_wait(&refusal("limit", "must be a number from 0 to 9")),
            None
        );
        assert_eq!(hub_max_wait(&refusal("timeout_ms", "something else")), None);
    }
}
