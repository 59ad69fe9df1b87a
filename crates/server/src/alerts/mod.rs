//! Alerting: after each metrics snapshot every rule ([`rules`]) is evaluated; a rule that starts
//! or stops firing is written to the alert history (the store's [`AlertLog`]), logged, posted to
//! the webhook if one is set ([`notify`]) and published on `/ws/events`. What is pending or
//! firing now is kept here, in memory, for `GET /api/v1/alerts`.

pub mod notify;
pub mod rules;

use std::sync::{Arc, Mutex};

use hive_core::Timestamp;
use hive_proto::alerts::{Alert, AlertEvent};
use hive_proto::enums::{AlertChange, AlertState};
use hive_proto::events::Event;
use hive_proto::metrics::MetricsSnapshot;
use hive_store::{AlertLog, AlertRecord};

use crate::events::Events;
use crate::views::rfc3339;
use notify::Webhook;
use rules::{Phase, Rule, Transition};

/// The alerting part of the hub's configuration.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    pub rules: Vec<Rule>,
    /// `http://` or `https://` URL the alert events are posted to.
    pub webhook_url: Option<String>,
    /// For an `https://` webhook: trust the certificates in this PEM file besides the system's
    /// (a receiver behind an internal CA).
    pub webhook_ca_file: Option<std::path::PathBuf>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            rules: rules::defaults(),
            webhook_url: None,
            webhook_ca_file: None,
        }
    }
}

/// RSS samples kept for the memory growth rule: an hour at one a minute.
const RSS_SAMPLES: usize = 61;

struct RuleState {
    phase: Phase,
    value: Option<f64>,
}

pub struct Alerts {
    rules: Vec<Rule>,
    states: Mutex<Vec<RuleState>>,
    rss_by_minute: Mutex<std::collections::VecDeque<(f64, u64)>>,
    log: Arc<dyn AlertLog>,
    webhook: Option<Webhook>,
    events: Arc<Events>,
}

impl Alerts {
    /// Fails only when the webhook's CA file cannot be read.
    pub fn new(
        config: &AlertConfig,
        log: Arc<dyn AlertLog>,
        events: Arc<Events>,
    ) -> Result<Alerts, hive_tls::TlsError> {
        let webhook = match &config.webhook_url {
            Some(url) => Some(Webhook::spawn(
                url.clone(),
                hive_tls::client_config(config.webhook_ca_file.as_deref())?,
            )),
            None => None,
        };
        Ok(Alerts {
            states: Mutex::new(
                config
                    .rules
                    .iter()
                    .map(|_| RuleState {
                        phase: Phase::Inactive,
                        value: None,
                    })
                    .collect(),
            ),
            rules: config.rules.clone(),
            rss_by_minute: Mutex::default(),
            log,
            webhook,
            events,
        })
    }

    /// Evaluates every rule against the latest snapshot (the last of `history`).
    pub async fn check(&self, history: &[Arc<MetricsSnapshot>], now: Timestamp) {
        let Some(latest) = history.last() else {
            return;
        };
        let rss_by_minute: Vec<(f64, u64)> = {
            let mut samples = self.rss_by_minute.lock().unwrap_or_else(|p| p.into_inner());
            let (uptime, rss) = (latest.process.uptime_s, latest.process.rss_bytes);
            if samples.back().is_none_or(|(at, _)| uptime - at >= 60.0) {
                if samples.len() == RSS_SAMPLES {
                    samples.pop_front();
                }
                samples.push_back((uptime, rss));
            }
            samples.iter().copied().collect()
        };
        let inputs = rules::Inputs {
            latest,
            history,
            rss_by_minute: &rss_by_minute,
        };
        let mut changed = Vec::new();
        let next: Vec<RuleState> = {
            let states = self.lock();
            self.rules
                .iter()
                .zip(states.iter())
                .map(|(rule, state)| {
                    let value = rule.metric.read(&inputs);
                    let gate = rule.when.is_none_or(|g| {
                        g.metric
                            .read(&inputs)
                            .is_some_and(|v| rules::step_gate(g, v))
                    });
                    let (phase, transition) = rules::step(rule, state.phase, value, gate, now.0);
                    let value = value.or(state.value);
                    if let Some(transition) = transition {
                        changed.push(self.event(rule, transition, value, now));
                    }
                    RuleState { phase, value }
                })
                .collect()
        };
        // The history first, then the state: whoever sees an alert firing (`GET /alerts`) finds
        // the event in the history beside it. Only this (periodic) check changes the states.
        for event in &changed {
            self.record(event, now).await;
        }
        *self.lock() = next;
        for event in changed {
            self.announce(event);
        }
    }

    fn event(
        &self,
        rule: &Rule,
        transition: Transition,
        value: Option<f64>,
        now: Timestamp,
    ) -> AlertEvent {
        let (state, message) = match transition {
            Transition::Fired => (
                AlertChange::Firing,
                rule.describe(value.unwrap_or(f64::NAN)),
            ),
            Transition::Resolved => (
                AlertChange::Resolved,
                format!(
                    "{} is back to {:.2} (rule {})",
                    rule.metric.name(),
                    value.unwrap_or(f64::NAN),
                    rule.name
                ),
            ),
        };
        AlertEvent {
            rule: rule.name.clone(),
            state,
            severity: rule.severity.clone(),
            value,
            threshold: rule.threshold,
            message,
            at: rfc3339(now),
        }
    }

    /// Writes `event` to the alert history.
    async fn record(&self, event: &AlertEvent, at: Timestamp) {
        let record = AlertRecord {
            rule: event.rule.clone(),
            state: event.state.to_string(),
            severity: event.severity.clone(),
            value: event.value.filter(|v| v.is_finite()),
            threshold: event.threshold,
            message: event.message.clone(),
            at,
        };
        let log = self.log.clone();
        match tokio::task::spawn_blocking(move || log.record(&record)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot store an alert event"),
            Err(e) => tracing::error!(error = %e, "cannot store an alert event"),
        }
    }

    /// Tells the log, the webhook and the event stream.
    fn announce(&self, event: AlertEvent) {
        notify::log(&event);
        if let Some(webhook) = &self.webhook {
            webhook.send(event.clone());
        }
        self.events.publish_one(Event::Alert(event));
    }

    /// What is pending or firing now.
    pub fn active(&self) -> Vec<Alert> {
        let states = self.lock();
        self.rules
            .iter()
            .zip(states.iter())
            .filter_map(|(rule, state)| {
                let (phase, since) = match state.phase {
                    Phase::Inactive => return None,
                    Phase::Pending { since } => (AlertState::Pending, since),
                    Phase::Firing { since } => (AlertState::Firing, since),
                };
                Some(Alert {
                    rule: rule.name.clone(),
                    state: phase,
                    severity: rule.severity.clone(),
                    value: state.value,
                    threshold: rule.threshold,
                    since: rfc3339(Timestamp(since)),
                    message: rule.describe(state.value.unwrap_or(f64::NAN)),
                })
            })
            .collect()
    }

    pub fn history(&self, limit: usize) -> Result<Vec<AlertRecord>, hive_store::StoreError> {
        self.log.recent(limit)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RuleState>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }
}
