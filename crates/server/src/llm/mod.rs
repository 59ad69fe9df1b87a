//! `hive.llm`: the hub calls OpenAI-compatible chat-completion endpoints itself. Each configured
//! provider is one [local agent](crate::local_agent) named `llm:<provider>`, whose capabilities
//! are its models (`llm:<provider>/<model>`) and whose slots are its `max_concurrent` requests,
//! so routing, leases, retries and cancels apply to it like to any worker. Its requests are
//! async I/O on the hub's runtime: a waiting request holds no thread.
//!
//! [`chat`] turns payloads into requests and answers into results; the tokens each answer
//! counted go to [`LlmMeter`](crate::metrics::llm::LlmMeter).

pub mod chat;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive_core::{AgentId, AgentSpec, Capability, Report, TaskId};
use hive_proto::protocol::{Assignment, Progress};
use tokio::task::{AbortHandle, JoinHandle};

use crate::local_agent::{self, HubStopped, LocalAgent, Work};
use crate::metrics::llm::Tokens;
use crate::state::AppState;
use chat::{Failed, Retry};

/// One provider, as configured (`[[llm.providers]]`). Its `Debug` leaves the key out.
#[derive(Clone, PartialEq)]
pub struct Provider {
    /// 1-64 of `A-Z a-z 0-9 _ . -`.
    pub name: String,
    /// The API's root, before `/chat/completions`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; read from the environment variable the config names.
    pub api_key: Option<String>,
    pub models: Vec<String>,
    /// Requests at once (the agent's slots).
    pub max_concurrent: u32,
    /// Ask for streamed answers (`stream: true`).
    pub stream: bool,
    /// Prices by model, for the cost of a task's tokens.
    pub prices: BTreeMap<String, Price>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("models", &self.models)
            .field("max_concurrent", &self.max_concurrent)
            .field("stream", &self.stream)
            .field("prices", &self.prices)
            .finish()
    }
}

/// What a model's tokens cost, per 1,000, in whatever currency the operator counts in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub prompt_per_1k: f64,
    pub completion_per_1k: f64,
}

impl Price {
    pub fn of(&self, tokens: Tokens) -> f64 {
        (tokens.prompt as f64 * self.prompt_per_1k
            + tokens.completion as f64 * self.completion_per_1k)
            / 1000.0
    }
}

/// The capability a provider's model is offered as.
pub fn capability(provider: &str, model: &str) -> String {
    format!("llm:{provider}/{model}")
}

impl Provider {
    /// The agent's name and capabilities; fails naming a model whose capability is invalid.
    pub fn spec(&self) -> Result<AgentSpec, String> {
        let capabilities = self
            .models
            .iter()
            .map(|model| {
                Capability::parse(&capability(&self.name, model), "models")
                    .map(|c| (c, 1.0))
                    .map_err(|e| format!("model {model:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(AgentSpec {
            name: format!("llm:{}", self.name),
            capabilities,
            slots: self.max_concurrent,
        })
    }
}

/// The least time between two progress frames of a streamed answer.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Requests in flight, to abort on a cancel.
type InFlight = Arc<Mutex<HashMap<(TaskId, u32), AbortHandle>>>;

/// Why the providers' agents did not start.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("provider {provider:?}: {reason}")]
    Provider { provider: String, reason: String },
    #[error("the hub stopped before the LLM providers' agents registered")]
    Stopped,
}

/// Registers each provider's agent; they run until the hub closes its connections, which
/// aborts the requests still in flight (reported as failures worth retrying). The tasks returned
/// end once each agent has left (the hub waits for them, see [`local_agent`]).
pub async fn start(
    state: &AppState,
    providers: &[Provider],
) -> Result<Vec<JoinHandle<()>>, LlmError> {
    let mut agents = Vec::new();
    if providers.is_empty() {
        return Ok(agents);
    }
    let tls = hive_tls::client_config(None).expect("a TLS client config with ring builds");
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("an HTTP client builds");
    // All checked before any registers: a bad one leaves no half-started set behind.
    let specs = providers
        .iter()
        .map(|provider| {
            provider.spec().map_err(|reason| LlmError::Provider {
                provider: provider.name.clone(),
                reason,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (provider, spec) in providers.iter().zip(specs) {
        let local = LocalAgent::register(state, spec)
            .await
            .map_err(|HubStopped| LlmError::Stopped)?;
        let agent = local.id;
        let executor = Arc::new(Executor {
            state: state.clone(),
            agent,
            provider: provider.clone(),
            http: http.clone(),
            in_flight: InFlight::default(),
        });
        let serving = executor.clone();
        let serve = local.serve(state.clone(), move |work| match work {
            Work::Assign(task) => serving.clone().dispatch(task),
            Work::Cancel { task, attempt } => {
                if let Some(abort) = lock(&serving.in_flight).remove(&(task, attempt)) {
                    abort.abort();
                }
            }
        });
        agents.push(tokio::spawn(async move {
            let leaving = serve.await;
            // The agent is gone (the hub is stopping, or let go of it): spend no more tokens on
            // what it held, and say so, so that it is retried at once rather than after its lease.
            let stopped: Vec<_> = lock(&executor.in_flight).drain().collect();
            for ((task, attempt), abort) in stopped {
                abort.abort();
                let report = local_agent::stopped_by_the_hub();
                leaving.report(task, attempt, report).await;
            }
            leaving.leave().await;
        }));
        tracing::info!(%agent, provider = %provider.name, models = provider.models.len(), "LLM provider ready");
    }
    Ok(agents)
}

struct Executor {
    state: AppState,
    agent: AgentId,
    provider: Provider,
    http: reqwest::Client,
    in_flight: InFlight,
}

impl Executor {
    fn dispatch(self: Arc<Self>, task: Assignment) {
        let Ok(id) = task.task_id.parse::<TaskId>() else {
            return;
        };
        let attempt = task.attempt;
        let requests = self.in_flight.clone();
        // Held while the attempt is registered, so that its end cannot be seen before it is.
        let mut in_flight = lock(&requests);
        let handle = tokio::spawn(async move {
            let report = self.attempt(&task).await;
            // Gone from the map means cancelled: the scheduler ended the attempt already.
            if lock(&self.in_flight).remove(&(id, attempt)).is_some() {
                let command = local_agent::report(self.agent, id, attempt, report);
                let _ = self.state.commands.send(command).await;
            }
        });
        in_flight.insert((id, attempt), handle.abort_handle());
    }

    async fn attempt(&self, task: &Assignment) -> Report {
        let provider = &self.provider;
        let model = task
            .capability
            .strip_prefix(&capability(&provider.name, ""))
            .unwrap_or_default();
        let request = match chat::request(model, task.payload.get(), provider.stream) {
            Ok(request) => request,
            Err(error) => {
                return Report::Failure {
                    error,
                    retryable: false,
                };
            }
        };
        let meter = &self.state.metrics.llm;
        let started = Instant::now();
        let answered = self
            .complete(&request, task, Duration::from_millis(task.timeout_ms))
            .await;
        let latency = started.elapsed();
        let completion = match answered {
            Ok(completion) => completion,
            Err(failed) => {
                meter.failed(&task.capability, &provider.name, model);
                return report_of(failed);
            }
        };
        let tokens = completion.tokens.unwrap_or_default();
        let cost = provider.prices.get(model).map(|p| p.of(tokens));
        meter.answered(&task.capability, &provider.name, model, tokens, cost);
        match chat::result(completion, request.wants_json, latency, cost) {
            Ok(result) => Report::Success {
                output: result.to_string(),
            },
            Err(failed) => report_of(failed),
        }
    }

    /// One request to the provider, bounded by the attempt's lease.
    async fn complete(
        &self,
        request: &chat::Request,
        task: &Assignment,
        lease: Duration,
    ) -> Result<chat::Completion, Failed> {
        let provider = &self.provider;
        let url = format!(
            "{}/chat/completions",
            provider.base_url.trim_end_matches('/')
        );
        let mut call = self.http.post(&url).json(&request.body).timeout(lease);
        if let Some(key) = &provider.api_key {
            call = call.bearer_auth(key);
        }
        let unreachable = |e: reqwest::Error| Failed {
            error: format!("cannot reach the provider {:?}: {e}", provider.name),
            retry: Retry::Yes,
        };
        let mut response = call.send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let wait = chat::retry_after(
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
            );
            let body = response.text().await.unwrap_or_default();
            return Err(chat::refusal(status.as_u16(), wait, &body));
        }
        if !provider.stream {
            let body = response.bytes().await.map_err(unreachable)?;
            return chat::answer(&body);
        }
        // The text as it arrives goes out as progress: the first piece at once, then gathered
        // into at most one frame per PROGRESS_EVERY (all of it is in the result too).
        let mut stream = chat::Stream::default();
        let mut unsent = String::new();
        let mut sent_at: Option<Instant> = None;
        while let Some(bytes) = response.chunk().await.map_err(unreachable)? {
            unsent.push_str(&stream.feed(&bytes)?);
            if !unsent.is_empty() && sent_at.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
                self.progress(task, std::mem::take(&mut unsent));
                sent_at = Some(Instant::now());
            }
        }
        if !unsent.is_empty() {
            self.progress(task, unsent);
        }
        stream.finish()
    }

    fn progress(&self, task: &Assignment, output: String) {
        let progress = Progress {
            task_id: task.task_id.clone(),
            attempt: task.attempt,
            fraction: None,
            message: None,
            output: Some(output),
        };
        // Too large a piece is left out of the stream: the result has all of it.
        let _ = crate::progress::pass_on(&self.state, self.agent, progress);
    }
}

/// The scheduler's report of a failed attempt: retried or not, and when.
fn report_of(Failed { error, retry }: Failed) -> Report {
    match retry {
        Retry::No => Report::Failure {
            error,
            retryable: false,
        },
        Retry::Yes => Report::Failure {
            error,
            retryable: true,
        },
        Retry::After(wait) => Report::Throttled {
            error,
            retry_after_ms: wait.as_millis() as u64,
        },
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
