//! Configuration in two stages: [`RawConfig`] is what a TOML file says, only parsed (unknown
//! keys and wrong types are errors that name the key and line); [`resolve`] merges it with the
//! flags and checks the values, giving the hub's [`HubConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hive_server::alerts::AlertConfig;
use hive_server::alerts::rules::{Direction, Gate, Metric, Rule};
use hive_server::{Durability, HubConfig, HubIdentity, PoolBounds, PostgresConfig, ReplicaConfig};
use serde::Deserialize;

use crate::args::ServeArgs;

mod llm;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    tasks: TasksSection,
    #[serde(default)]
    scheduler: SchedulerSection,
    #[serde(default)]
    routing: RoutingSection,
    #[serde(default)]
    executors: ExecutorsSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    alerts: AlertsSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    llm: llm::LlmSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthSection {
    enabled: Option<bool>,
    open_metrics: Option<bool>,
    #[serde(default)]
    rate_limits: RateLimitsSection,
}

/// Requests per second: per role, and per token name under `tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitsSection {
    admin: Option<f64>,
    client: Option<f64>,
    agent: Option<f64>,
    read: Option<f64>,
    #[serde(default)]
    tokens: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_connections: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    write_stall_timeout_ms: Option<u64>,
    max_submits_in_flight: Option<usize>,
    max_tasks_in_flight: Option<usize>,
    max_body_bytes_in_flight: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    max_message_bytes: Option<usize>,
    max_wait_ms: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    durability: Option<String>,
    url: Option<String>,
    pool_min: Option<usize>,
    pool_max: Option<usize>,
    hub_name: Option<String>,
    hub_lease_s: Option<u64>,
    drain_grace_s: Option<u64>,
    replicas: Option<Vec<String>>,
    replica_max_lag_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksSection {
    max_payload_bytes: Option<usize>,
    max_output_bytes: Option<usize>,
    max_inputs_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedulerSection {
    aging_ms: Option<u64>,
    heartbeat_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingSection {
    policy: Option<String>,
    exploration: Option<f64>,
    decay_ms: Option<u64>,
    memory_ms: Option<u64>,
    seed: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutorsSection {
    threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    interval_ms: Option<u64>,
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsSection {
    webhook_url: Option<String>,
    /// PEM certificates to trust for an `https://` webhook, besides the system's.
    webhook_ca_file: Option<PathBuf>,
    /// Keep the built-in rules (default true); a rule of the same name replaces one.
    defaults: Option<bool>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    metric: String,
    above: Option<f64>,
    below: Option<f64>,
    clear: Option<f64>,
    #[serde(default)]
    for_s: u64,
    severity: Option<String>,
    when_metric: Option<String>,
    when_above: Option<f64>,
    when_below: Option<f64>,
}

fn metric(name: &str, key: &str) -> anyhow::Result<Metric> {
    Metric::parse(name).with_context(|| {
        let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        format!(
            "{key}: unknown metric {name:?}; one of {}",
            known.join(", ")
        )
    })
}

fn side(above: Option<f64>, below: Option<f64>, key: &str) -> anyhow::Result<(Direction, f64)> {
    match (above, below) {
        (Some(t), None) => Ok((Direction::Above, t)),
        (None, Some(t)) => Ok((Direction::Below, t)),
        _ => bail!("{key}: give exactly one of above and below"),
    }
}

fn alert_rule(raw: RawRule, i: usize) -> anyhow::Result<Rule> {
    let key = format!("alerts.rules[{i}]");
    let (direction, threshold) = side(raw.above, raw.below, &key)?;
    let when = match raw.when_metric {
        Some(name) => {
            let (direction, threshold) = side(
                raw.when_above,
                raw.when_below,
                &format!("{key}.when_metric"),
            )?;
            Some(Gate {
                metric: metric(&name, &format!("{key}.when_metric"))?,
                direction,
                threshold,
            })
        }
        None if raw.when_above.is_some() || raw.when_below.is_some() => {
            bail!("{key}: when_above and when_below need when_metric")
        }
        None => None,
    };
    let rule = Rule {
        metric: metric(&raw.metric, &format!("{key}.metric"))?,
        name: raw.name,
        direction,
        threshold,
        clear: raw.clear.unwrap_or(threshold),
        for_ms: raw.for_s.saturating_mul(1000),
        severity: raw.severity.unwrap_or_else(|| "warning".into()),
        when,
    };
    rule.validate().map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    Ok(rule)
}

fn alerts(section: AlertsSection) -> anyhow::Result<AlertConfig> {
    let mut config = AlertConfig::default();
    if !section.defaults.unwrap_or(true) {
        config.rules.clear();
    }
    for (i, raw) in section.rules.into_iter().enumerate() {
        let rule = alert_rule(raw, i)?;
        config.rules.retain(|r| r.name != rule.name);
        config.rules.push(rule);
    }
    if let Some(url) = section.webhook_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("alerts.webhook_url: {url:?} must be an http:// or https:// URL");
        }
        config.webhook_url = Some(url);
    }
    if let Some(path) = section.webhook_ca_file {
        if !config
            .webhook_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
        {
            bail!("alerts.webhook_ca_file: set only with an https:// alerts.webhook_url");
        }
        config.webhook_ca_file = Some(path);
    }
    Ok(config)
}

impl RawConfig {
    /// `[store] url`: the PostgreSQL database the file puts the hub on, if any.
    pub fn store_url(&self) -> Option<&str> {
        self.store.url.as_deref()
    }

    /// Whether the file gives the hub read replicas (`store.replicas`, `replica_max_lag_ms`).
    pub fn has_replicas(&self) -> bool {
        self.store.replicas.is_some() || self.store.replica_max_lag_ms.is_some()
    }
}

pub fn load(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse(&text).with_context(|| format!("in config file {}", path.display()))
}

pub fn parse(text: &str) -> anyhow::Result<RawConfig> {
    // toml's message names the line, the column and the key.
    Ok(toml::from_str(text)?)
}

/// What `server.max_message_bytes` holds besides the largest output: the result message around
/// it, and a hello with its capabilities and groups.
const MESSAGE_HEADROOM: usize = 64 * 1024;

/// How long a stopping hub among several waits for its running tasks (`store.drain_grace_s`).
const DEFAULT_DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// `--store` / `[store] url`, the pool's bounds and the hub's name and lease among the hubs of
/// the database: PostgreSQL, or `None` for SQLite.
fn postgres(
    flag: Option<String>,
    hub_name: Option<String>,
    replica_flags: &[String],
    store: &StoreSection,
) -> anyhow::Result<Option<PostgresConfig>> {
    let hub_name = hub_name.or(store.hub_name.clone());
    let replica_urls = if replica_flags.is_empty() {
        store.replicas.clone().unwrap_or_default()
    } else {
        replica_flags.to_vec()
    };
    let Some(url) = flag.or(store.url.clone()) else {
        if !replica_urls.is_empty() || store.replica_max_lag_ms.is_some() {
            bail!(
                "--replica / store.replicas / store.replica_max_lag_ms: replicas are PostgreSQL's; set --store (store.url) too"
            );
        }
        if store.pool_min.is_some() || store.pool_max.is_some() {
            bail!("store.pool_min / store.pool_max: the pool is PostgreSQL's; set store.url too");
        }
        if hub_name.is_some() || store.hub_lease_s.is_some() || store.drain_grace_s.is_some() {
            bail!(
                "--hub-name / store.hub_name / store.hub_lease_s / store.drain_grace_s: several hubs share a PostgreSQL database; set --store (store.url) too"
            );
        }
        return Ok(None);
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!(
            "--store / store.url: {:?} is not a postgres:// URL (SQLite, the default, needs none)",
            hive_server::redact_url(&url)
        );
    }
    let defaults = PoolBounds::default();
    let pool = PoolBounds {
        min: store.pool_min.unwrap_or(defaults.min),
        max: store.pool_max.unwrap_or(defaults.max),
    };
    if pool.max == 0 || pool.min > pool.max {
        bail!(
            "store.pool_min / store.pool_max: need 0 <= pool_min <= pool_max and pool_max >= 1 (got {} and {})",
            pool.min,
            pool.max
        );
    }
    let mut hub = HubIdentity::default();
    if let Some(name) = hub_name {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            bail!(
                "--hub-name / store.hub_name: {name:?} must be 1-64 letters, digits, '-', '_' or '.'"
            );
        }
        hub.name = Some(name);
    }
    if let Some(seconds) = store.hub_lease_s {
        if !(2..=3_600).contains(&seconds) {
            bail!("store.hub_lease_s: {seconds} must be between 2 and 3600 seconds");
        }
        hub.lease = std::time::Duration::from_secs(seconds);
    }
    let drain_grace = match store.drain_grace_s {
        Some(seconds) if seconds > 3_600 => {
            bail!("store.drain_grace_s: {seconds} must be at most 3600 seconds")
        }
        Some(seconds) => std::time::Duration::from_secs(seconds),
        None => DEFAULT_DRAIN_GRACE,
    };
    let mut replicas = ReplicaConfig::default();
    for replica in &replica_urls {
        if !(replica.starts_with("postgres://") || replica.starts_with("postgresql://")) {
            bail!(
                "--replica / store.replicas: {:?} is not a postgres:// URL",
                hive_server::redact_url(replica)
            );
        }
    }
    replicas.urls = replica_urls;
    if let Some(ms) = store.replica_max_lag_ms {
        if !(100..=600_000).contains(&ms) {
            bail!("store.replica_max_lag_ms: {ms} must be between 100 and 600000 milliseconds");
        }
        replicas.max_lag = std::time::Duration::from_millis(ms);
    }
    Ok(Some(PostgresConfig {
        url,
        pool,
        hub,
        drain_grace,
        replicas,
    }))
}

/// Flags win over the file, the file over the defaults.
pub fn resolve(args: &ServeArgs, file: RawConfig) -> anyhow::Result<HubConfig> {
    let listen_text = args
        .listen
        .clone()
        .or(file.server.listen)
        .unwrap_or_else(|| HubConfig::DEFAULT_LISTEN.to_string());
    let listen: SocketAddr = listen_text.parse().with_context(|| {
        format!("--listen / server.listen: {listen_text:?} is not an address like 127.0.0.1:7700")
    })?;
    let data_dir = args
        .data_dir
        .clone()
        .or(file.server.data_dir)
        .unwrap_or_else(|| PathBuf::from(HubConfig::DEFAULT_DATA_DIR));
    let mut config = HubConfig::new(listen, data_dir);
    config.browser = hive_server::auth::browser::BrowserPolicy::for_listen(
        listen,
        file.server.allowed_hosts,
        file.server.allowed_origins.unwrap_or_default(),
    );
    if let Some(text) = args.durability.clone().or(file.store.durability.clone()) {
        config.durability = Durability::parse(&text).with_context(|| {
            format!("--durability / store.durability: {text:?} is neither \"full\" nor \"normal\"")
        })?;
    }
    config.postgres = postgres(
        args.store.clone(),
        args.hub_name.clone(),
        &args.replica,
        &file.store,
    )?;
    if let Some(bytes) = file.tasks.max_payload_bytes {
        if bytes == 0 {
            bail!("tasks.max_payload_bytes must be at least 1");
        }
        config.limits.max_payload_bytes = bytes;
    }
    if let Some(bytes) = file.tasks.max_output_bytes {
        if bytes == 0 {
            bail!("tasks.max_output_bytes must be at least 1");
        }
        config.limits.max_output_bytes = bytes;
    }
    if let Some(bytes) = file.tasks.max_inputs_bytes {
        // An assignment is one frame, and the Rust worker reads frames up to 64 MiB.
        if !(1..=32 << 20).contains(&bytes) {
            bail!("tasks.max_inputs_bytes must be between 1 and 33554432 (32 MiB)");
        }
        config.scheduler.max_inputs_bytes = bytes;
    }
    if let Some(bytes) = file.server.max_body_bytes {
        config.max_body_bytes = bytes;
    }
    limits(&mut config, file.limits)?;
    let cert = args.tls_cert.clone().or(file.server.tls_cert);
    let key = args.tls_key.clone().or(file.server.tls_key);
    config.tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(hive_server::TlsFiles { cert, key }),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key (server.tls_cert, server.tls_key) go together"),
    };
    config.auth.enabled = args.auth || file.auth.enabled.unwrap_or(false);
    config.auth.open_metrics = file.auth.open_metrics.unwrap_or(false);
    config.auth.rate_limits = rate_limits(file.auth.rate_limits)?;
    if !config.auth.enabled && !listen.ip().is_loopback() {
        bail!(
            "--listen / server.listen: {listen} is not a loopback address, so authentication must be on (--auth or auth.enabled = true)"
        );
    }
    if config.max_body_bytes < config.limits.max_payload_bytes {
        bail!("server.max_body_bytes must be at least tasks.max_payload_bytes");
    }
    // A result's output travels in one message with the result around it: a smaller limit
    // would refuse, as too large a frame, an output the hub accepts. Unset, the limit follows
    // the request body limit, as it did when the two were one setting.
    let least = config
        .limits
        .max_output_bytes
        .saturating_add(MESSAGE_HEADROOM);
    config.max_message_bytes = match file.server.max_message_bytes {
        Some(bytes) if bytes < least => bail!(
            "server.max_message_bytes must be at least tasks.max_output_bytes + {MESSAGE_HEADROOM} (64 KiB), here {least}"
        ),
        Some(bytes) => bytes,
        None => config.max_body_bytes.max(least),
    };
    if let Some(ms) = file.server.max_wait_ms {
        // Zero, a waiting client would only poll: each wait answered at once.
        if ms < 100 {
            bail!("server.max_wait_ms must be at least 100");
        }
        config.max_wait = std::time::Duration::from_millis(ms);
    }
    if let Some(ms) = file.scheduler.aging_ms {
        config.scheduler.aging_ms = ms;
    }
    if let Some(ms) = file.scheduler.heartbeat_timeout_ms {
        if ms < 100 {
            bail!("scheduler.heartbeat_timeout_ms must be at least 100");
        }
        config.scheduler.heartbeat_timeout_ms = ms;
    }
    routing(&mut config, args.routing.clone(), file.routing)?;
    // Built-in executors on by default, one pool thread per core.
    config.builtin_threads = file
        .executors
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    if config.builtin_threads > 1024 {
        bail!("executors.threads must be at most 1024 (0 turns built-in executors off)");
    }
    config.llm = llm::providers(file.llm, |name| std::env::var(name).ok())?;
    if let Some(ms) = file.metrics.interval_ms {
        let min = hive_server::metrics::snapshot::MIN_INTERVAL;
        if ms < min.as_millis() as u64 {
            bail!("metrics.interval_ms must be at least {}", min.as_millis());
        }
        config.metrics_interval = std::time::Duration::from_millis(ms);
    }
    if let Some(enabled) = file.metrics.enabled {
        config.metrics_enabled = enabled;
    }
    config.alerts = alerts(file.alerts)?;
    Ok(config)
}

/// `[routing]` and `--routing`.
fn routing(
    config: &mut HubConfig,
    flag: Option<String>,
    file: RoutingSection,
) -> anyhow::Result<()> {
    use hive_server::PolicyKind;
    if let Some(name) = flag.or(file.policy) {
        let names: Vec<_> = PolicyKind::ALL.iter().map(|p| p.as_str()).collect();
        config.routing.policy = PolicyKind::parse(&name).with_context(|| {
            format!(
                "--routing / routing.policy: {name:?} is not one of {}",
                names.join(", ")
            )
        })?;
    }
    if let Some(share) = file.exploration {
        if !(0.0..=1.0).contains(&share) {
            bail!("routing.exploration must be a share between 0 and 1");
        }
        config.routing.exploration = share;
    }
    let learning = &mut config.scheduler.learning;
    for (key, value, target) in [
        ("decay_ms", file.decay_ms, &mut learning.decay_ms),
        ("memory_ms", file.memory_ms, &mut learning.memory_ms),
    ] {
        if let Some(ms) = value {
            if ms < 100 {
                bail!("routing.{key} must be at least 100");
            }
            *target = ms;
        }
    }
    config.routing.seed = file.seed;
    Ok(())
}

/// `[auth.rate_limits]`: requests per second, not negative (0: no limit).
fn rate_limits(file: RateLimitsSection) -> anyhow::Result<hive_server::auth::rate::RateLimits> {
    use hive_server::auth::Role;
    let check = |key: String, rate: f64| {
        if !(rate.is_finite() && rate >= 0.0) {
            bail!("auth.rate_limits.{key} must be a number of requests per second, 0 or more");
        }
        Ok(rate)
    };
    let mut limits = hive_server::auth::rate::RateLimits::default();
    for (role, rate) in [
        (Role::Admin, file.admin),
        (Role::Client, file.client),
        (Role::Agent, file.agent),
        (Role::Read, file.read),
    ] {
        if let Some(rate) = rate {
            limits
                .by_role
                .push((role, check(role.as_str().to_string(), rate)?));
        }
    }
    for (name, rate) in file.tokens {
        let rate = check(format!("tokens.{name}"), rate)?;
        limits.by_token.push((name, rate));
    }
    Ok(limits)
}

/// `[limits]`: each at least 1 (`max_connections` 0 means: from the open-file limit).
fn limits(config: &mut HubConfig, file: LimitsSection) -> anyhow::Result<()> {
    let at_least_one = |value: Option<usize>, key: &str| -> anyhow::Result<Option<usize>> {
        match value {
            Some(0) => bail!("limits.{key} must be at least 1"),
            other => Ok(other),
        }
    };
    if let Some(n) = file.max_connections {
        config.connections.max_connections = n;
    }
    if let Some(ms) = file.header_read_timeout_ms {
        if ms < 100 {
            bail!("limits.header_read_timeout_ms must be at least 100");
        }
        config.connections.header_read_timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(ms) = file.body_read_timeout_ms {
        if ms < 100 {
            bail!("limits.body_read_timeout_ms must be at least 100");
        }
        config.connections.body_read_timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(ms) = file.write_stall_timeout_ms {
        if ms < 100 {
            bail!("limits.write_stall_timeout_ms must be at least 100");
        }
        config.connections.write_stall_timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(n) = at_least_one(file.max_submits_in_flight, "max_submits_in_flight")? {
        config.admission.max_requests = n;
    }
    if let Some(n) = at_least_one(file.max_tasks_in_flight, "max_tasks_in_flight")? {
        config.admission.max_tasks = n;
    }
    if let Some(n) = at_least_one(file.max_body_bytes_in_flight, "max_body_bytes_in_flight")? {
        config.admission.max_body_bytes = n;
    }
    if config.admission.max_body_bytes < config.max_body_bytes {
        bail!("limits.max_body_bytes_in_flight must be at least server.max_body_bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            listen: None,
            data_dir: None,
            store: None,
            hub_name: None,
            replica: Vec::new(),
            config: None,
            durability: None,
            auth: false,
            tls_cert: None,
            tls_key: None,
            routing: None,
        }
    }

    #[test]
    fn routing_is_read_and_a_bad_policy_or_share_is_named() {
        let text =
            "[routing]\npolicy = \"p2c_ewma\"\nexploration = 0.2\ndecay_ms = 2000\nseed = 7\n";
        let config = resolve(&args(), parse(text).unwrap()).unwrap();
        assert_eq!(config.routing.policy, hive_server::PolicyKind::P2cEwma);
        assert_eq!(
            (config.routing.exploration, config.routing.seed),
            (0.2, Some(7))
        );
        assert_eq!(config.scheduler.learning.decay_ms, 2_000);
        let flag = ServeArgs {
            routing: Some("learned".into()),
            ..args()
        };
        let config = resolve(&flag, parse(text).unwrap()).unwrap();
        assert_eq!(
            config.routing.policy,
            hive_server::PolicyKind::Learned,
            "the flag wins"
        );
        let bad = ServeArgs {
            routing: Some("fastest".into()),
            ..args()
        };
        let err = resolve(&bad, RawConfig::default()).unwrap_err().to_string();
        assert!(
            err.contains("--routing") && err.contains("p2c_ewma"),
            "{err}"
        );
        let err = resolve(&args(), parse("[routing]\nexploration = 2\n").unwrap());
        assert!(err.unwrap_err().to_string().contains("routing.exploration"));
        let err = resolve(&args(), parse("[routing]\nmemory_ms = 5\n").unwrap());
        assert!(err.unwrap_err().to_string().contains("routing.memory_ms"));
    }

    #[test]
    fn the_inputs_limit_is_read_and_zero_is_named() {
        let config = resolve(
            &args(),
            parse("[tasks]\nmax_inputs_bytes = 4096\n").unwrap(),
        );
        assert_eq!(config.unwrap().scheduler.max_inputs_bytes, 4096);
        let err = resolve(&args(), parse("[tasks]\nmax_inputs_bytes = 0\n").unwrap());
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("tasks.max_inputs_bytes")
        );
    }

    #[test]
    fn the_message_limit_is_its_own_key_and_must_hold_an_output() {
        let config = resolve(&args(), RawConfig::default()).unwrap();
        assert_eq!(config.max_message_bytes, 32 << 20);
        // Set, it is its own; unset, it follows the body limit, or the output limit plus room.
        let text = "[server]\nmax_body_bytes = 2097152\nmax_message_bytes = 1114112\n";
        let config = resolve(&args(), parse(text).unwrap()).unwrap();
        assert_eq!(
            (config.max_body_bytes, config.max_message_bytes),
            (2 << 20, 1_114_112)
        );
        let text = "[server]\nmax_body_bytes = 50000000\n";
        let config = resolve(&args(), parse(text).unwrap()).unwrap();
        assert_eq!(config.max_message_bytes, 50_000_000);
        let text = "[tasks]\nmax_output_bytes = 40000000\n";
        let config = resolve(&args(), parse(text).unwrap()).unwrap();
        assert_eq!(config.max_message_bytes, 40_000_000 + 65_536);
        for text in [
            "[server]\nmax_message_bytes = 1000\n",
            "[server]\nmax_message_bytes = 1048576\n",
            "[server]\nmax_message_bytes = 2000000\n[tasks]\nmax_output_bytes = 2000000\n",
        ] {
            let err = resolve(&args(), parse(text).unwrap()).unwrap_err();
            assert!(
                err.to_string().contains("server.max_message_bytes"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn rate_limits_are_read_per_role_and_token() {
        let text = "[auth.rate_limits]\nclient = 50\n[auth.rate_limits.tokens]\nci = 5.5\n";
        let config = resolve(&args(), parse(text).unwrap()).unwrap();
        let limits = config.auth.rate_limits;
        assert_eq!(
            limits.by_role,
            vec![(hive_server::auth::Role::Client, 50.0)]
        );
        assert_eq!(limits.by_token, vec![("ci".to_string(), 5.5)]);
        let bad = parse("[auth.rate_limits]\nread = -1\n").unwrap();
        let err = resolve(&args(), bad).unwrap_err();
        assert!(err.to_string().contains("auth.rate_limits.read"), "{err}");
    }

    #[test]
    fn a_non_loopback_address_needs_authentication() {
        let text = "[server]\nlisten = \"0.0.0.0:7700\"\n";
        let err = resolve(&args(), parse(text).unwrap()).unwrap_err();
        assert!(err.to_string().contains("--auth or auth.enabled"), "{err}");
        let on = format!("{text}[auth]\nenabled = true\n");
        assert!(resolve(&args(), parse(&on).unwrap()).unwrap().auth.enabled);
    }

    #[test]
    fn limits_are_read_and_checked_by_key() {
        let text = "[limits]\nmax_connections = 7\nheader_read_timeout_ms = 500\n\
                    body_read_timeout_ms = 2500\nmax_submits_in_flight = 9\n\
                    write_stall_timeout_ms = 4000\n";
        let config = resolve(&args(), parse(text).unwrap()).unwrap();
        assert_eq!(config.connections.max_connections, 7);
        assert_eq!(
            config.connections.body_read_timeout,
            std::time::Duration::from_millis(2500)
        );
        assert_eq!(
            config.connections.write_stall_timeout,
            std::time::Duration::from_millis(4000)
        );
        assert_eq!(config.admission.max_requests, 9);
        let err = resolve(
            &args(),
            parse("[limits]\nmax_tasks_in_flight = 0\n").unwrap(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("limits.max_tasks_in_flight"),
            "{err}"
        );
        let err = resolve(
            &args(),
            parse("[limits]\nbody_read_timeout_ms = 5\n").unwrap(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("limits.body_read_timeout_ms"),
            "{err}"
        );
        let err = resolve(
            &args(),
            parse("[limits]\nwrite_stall_timeout_ms = 5\n").unwrap(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("limits.write_stall_timeout_ms"),
            "{err}"
        );
    }

    #[test]
    fn the_longest_wait_is_at_least_a_tenth_of_a_second() {
        let text = "[server]\nmax_wait_ms = 100\n";
        let config = resolve(&args(), parse(text).unwrap()).unwrap();
        assert_eq!(config.max_wait, std::time::Duration::from_millis(100));
        let err = resolve(&args(), parse("[server]\nmax_wait_ms = 0\n").unwrap()).unwrap_err();
        assert!(err.to_string().contains("server.max_wait_ms"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("line 3") && text.contains("lisen"), "{text}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let err = parse("[scheduler]\n\naging_ms = \"soon\"\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("line 3") && text.contains("aging_ms"),
            "{text}"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let file =
            parse("[server]\nlisten = \"127.0.0.1:9000\"\n[store]\ndurability = \"normal\"\n")
                .unwrap();
        let mut a = args();
        a.listen = Some("127.0.0.1:9001".into());
        let config = resolve(&a, file).unwrap();
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.durability, Durability::Normal);
    }

    #[test]
    fn a_postgres_store_is_read_from_the_flag_or_the_file_and_bad_ones_are_named() {
        let file = "[store]\nurl = \"postgres://hive@db:5432/hive\"\npool_max = 8\n";
        let config = resolve(&args(), parse(file).unwrap()).unwrap();
        let pg = config.postgres.unwrap();
        assert_eq!(pg.url, "postgres://hive@db:5432/hive");
        assert_eq!((pg.pool.min, pg.pool.max), (5, 8));
        let mut a = args();
        a.store = Some("postgresql://other@db/hive".into());
        let config = resolve(&a, parse(file).unwrap()).unwrap();
        assert_eq!(config.postgres.unwrap().url, "postgresql://other@db/hive");
        assert!(
            resolve(&args(), RawConfig::default())
                .unwrap()
                .postgres
                .is_none()
        );

        a.store = Some("mysql://root:pw@db/hive".into());
        let err = resolve(&a, RawConfig::default()).unwrap_err().to_string();
        assert!(err.contains("--store") && !err.contains("pw@"), "{err}");
        let err = resolve(&args(), parse("[store]\npool_min = 3\n").unwrap()).unwrap_err();
        assert!(err.to_string().contains("store.pool_min"), "{err}");
        let bad = "[store]\nurl = \"postgres://db/hive\"\npool_min = 9\npool_max = 4\n";
        let err = resolve(&args(), parse(bad).unwrap()).unwrap_err();
        assert!(err.to_string().contains("store.pool_max"), "{err}");
    }

    #[test]
    fn replicas_come_from_the_flags_or_the_file_and_bad_ones_are_named() {
        let file = "[store]\nurl = \"postgres://hive@db/hive\"\nreplicas = [\"postgres://hive@r1/hive\"]\nreplica_max_lag_ms = 500\n";
        let pg = resolve(&args(), parse(file).unwrap())
            .unwrap()
            .postgres
            .unwrap();
        assert_eq!(pg.replicas.urls, ["postgres://hive@r1/hive"]);
        assert_eq!(pg.replicas.max_lag, std::time::Duration::from_millis(500));
        let mut a = args();
        a.replica = vec![
            "postgres://hive@r2/hive".into(),
            "postgres://hive@r3/hive".into(),
        ];
        let pg = resolve(&a, parse(file).unwrap()).unwrap().postgres.unwrap();
        assert_eq!(
            pg.replicas.urls.len(),
            2,
            "the flags replace the file's list"
        );
        let plain = "[store]\nurl = \"postgres://hive@db/hive\"\n";
        let pg = resolve(&args(), parse(plain).unwrap())
            .unwrap()
            .postgres
            .unwrap();
        assert!(pg.replicas.urls.is_empty());
        assert_eq!(pg.replicas.max_lag, std::time::Duration::from_secs(2));

        let err = resolve(&a, RawConfig::default()).unwrap_err().to_string();
        assert!(
            err.contains("--replica") && err.contains("--store"),
            "{err}"
        );
        let mut bad = args();
        bad.store = Some("postgres://hive@db/hive".into());
        bad.replica = vec!["mysql://root:pw@r1/hive".into()];
        let err = resolve(&bad, RawConfig::default()).unwrap_err().to_string();
        assert!(err.contains("--replica") && !err.contains("pw@"), "{err}");
        let lag = "[store]\nurl = \"postgres://hive@db/hive\"\nreplica_max_lag_ms = 5\n";
        let err = resolve(&args(), parse(lag).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.replica_max_lag_ms"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = resolve(&args(), parse("[store]\ndurability = \"fast\"\n").unwrap()).unwrap_err();
        assert!(err.to_string().contains("store.durability"), "{err}");
        let err = resolve(&args(), parse("[metrics]\ninterval_ms = 10\n").unwrap()).unwrap_err();
        assert!(err.to_string().contains("metrics.interval_ms"), "{err}");
    }

    #[test]
    fn alert_rules_add_to_or_replace_the_defaults_and_bad_ones_are_named() {
        let file = parse(
            r#"
[alerts]
webhook_url = "http://127.0.0.1:9/hook"
[[alerts.rules]]
name = "api_latency_p95"
metric = "api_p95_ms"
above = 50.0
clear = 40.0
for_s = 5
[[alerts.rules]]
name = "backlog"
metric = "queued_tasks"
above = 1000.0
when_metric = "agents_online"
when_above = 0.0
"#,
        )
        .unwrap();
        let config = resolve(&args(), file).unwrap();
        let rules = &config.alerts.rules;
        let latency = rules.iter().find(|r| r.name == "api_latency_p95").unwrap();
        assert_eq!(
            (latency.threshold, latency.clear, latency.for_ms),
            (50.0, 40.0, 5000)
        );
        assert_eq!(
            rules.iter().filter(|r| r.name == "api_latency_p95").count(),
            1
        );
        assert!(
            rules
                .iter()
                .any(|r| r.name == "backlog" && r.when.is_some())
        );
        assert!(
            rules.iter().any(|r| r.name == "error_rate"),
            "defaults kept"
        );

        for (text, key) in [
            (
                "[[alerts.rules]]\nname = \"x\"\nmetric = \"nope\"\nabove = 1.0\n",
                "alerts.rules[0].metric",
            ),
            (
                "[[alerts.rules]]\nname = \"x\"\nmetric = \"load_avg\"\n",
                "alerts.rules[0]",
            ),
            (
                "[[alerts.rules]]\nname = \"x\"\nmetric = \"load_avg\"\nabove = 1.0\nclear = 2.0\n",
                "clear",
            ),
            (
                "[alerts]\nwebhook_url = \"ftp://x\"\n",
                "alerts.webhook_url",
            ),
            (
                "[alerts]\nwebhook_ca_file = \"ca.pem\"\n",
                "alerts.webhook_ca_file",
            ),
            (
                "[alerts]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_ca_file = \"ca.pem\"\n",
                "alerts.webhook_ca_file",
            ),
        ] {
            let err = resolve(&args(), parse(text).unwrap()).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        let none = resolve(&args(), parse("[alerts]\ndefaults = false\n").unwrap()).unwrap();
        assert!(none.alerts.rules.is_empty());
        let mut a = args();
        a.listen = Some("nowhere".into());
        let err = resolve(&a, RawConfig::default()).unwrap_err();
        assert!(err.to_string().contains("--listen"), "{err}");
    }
}
