//! Alert rules and the state machine of one rule. Pure: values in, transitions out; the engine
//! ([`super::Alerts`]) feeds them from snapshots and carries the transitions out.
//!
//! A rule breaches when its metric is past the threshold (above it, or below it) while its gate,
//! if any, holds; it fires once it has breached for `for_ms`; it resolves only once the metric
//! is back past the `clear` level (hysteresis: between the two it keeps firing) or the gate no
//! longer holds.

use std::sync::Arc;

use hive_proto::metrics::MetricsSnapshot;

/// What a rule can watch, by the name used in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    ApiP95Ms,
    TaskOpsPerSec,
    QueuedTasks,
    MemoryGrowthMbPerHour,
    ErrorRatePercent,
    TimeoutRatePercent,
    LoadAvg,
    QueueWaitP95Ms,
    AgentsOffline5m,
    AgentsLost5m,
    AgentsOnline,
}

/// Memory growth is judged over up to an hour of per-minute RSS samples, and not before half an
/// hour of them: over minutes, a hub warming its caches would read as gigabytes per hour.
const MIN_GROWTH_WINDOW_S: f64 = 1800.0;

/// What a metric is read from: the latest snapshot, the snapshots kept (oldest first, ending
/// with the latest), and the hub's RSS sampled once a minute (uptime in seconds, bytes).
pub struct Inputs<'a> {
    pub latest: &'a MetricsSnapshot,
    pub history: &'a [Arc<MetricsSnapshot>],
    pub rss_by_minute: &'a [(f64, u64)],
}

impl Metric {
    pub const ALL: [Metric; 11] = [
        Metric::ApiP95Ms,
        Metric::TaskOpsPerSec,
        Metric::QueuedTasks,
        Metric::MemoryGrowthMbPerHour,
        Metric::ErrorRatePercent,
        Metric::TimeoutRatePercent,
        Metric::LoadAvg,
        Metric::QueueWaitP95Ms,
        Metric::AgentsOffline5m,
        Metric::AgentsLost5m,
        Metric::AgentsOnline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::ApiP95Ms => "api_p95_ms",
            Metric::TaskOpsPerSec => "task_ops_per_sec",
            Metric::QueuedTasks => "queued_tasks",
            Metric::MemoryGrowthMbPerHour => "memory_growth_mb_per_hour",
            Metric::ErrorRatePercent => "error_rate_percent",
            Metric::TimeoutRatePercent => "timeout_rate_percent",
            Metric::LoadAvg => "load_avg",
            Metric::QueueWaitP95Ms => "queue_wait_p95_ms",
            Metric::AgentsOffline5m => "agents_offline_5m",
            Metric::AgentsLost5m => "agents_lost_5m",
            Metric::AgentsOnline => "agents_online",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The metric now. `None` when it cannot be known yet (no load average on this system, too
    /// short a history for a growth rate).
    pub fn read(self, inputs: &Inputs<'_>) -> Option<f64> {
        let (latest, history) = (inputs.latest, inputs.history);
        let uptime = latest.process.uptime_s;
        // The oldest snapshot within `window_s` of the latest.
        let since = |window_s: f64| {
            history
                .iter()
                .find(|s| uptime - s.process.uptime_s <= window_s)
                .map(|s| s.as_ref())
        };
        Some(match self {
            Metric::ApiP95Ms => latest.p95_latency_ms,
            Metric::TaskOpsPerSec => latest.task_ops_per_sec,
            Metric::QueuedTasks => latest.queue_depth.values().sum::<u64>() as f64,
            Metric::MemoryGrowthMbPerHour => {
                let (&(first_s, first), &(last_s, last)) =
                    (inputs.rss_by_minute.first()?, inputs.rss_by_minute.last()?);
                let span = last_s - first_s;
                if span < MIN_GROWTH_WINDOW_S {
                    return None;
                }
                (last as f64 - first as f64) / 1e6 / (span / 3600.0)
            }
            Metric::ErrorRatePercent => latest.error_rate_percent,
            Metric::TimeoutRatePercent => latest.timeout_rate_percent,
            Metric::LoadAvg => latest.load_avg?,
            Metric::QueueWaitP95Ms => latest.latency_ms.get("task_queue_wait")?.p95,
            Metric::AgentsOffline5m | Metric::AgentsLost5m => {
                let total = match self {
                    Metric::AgentsLost5m => "agents_lost",
                    _ => "agents_disconnected",
                };
                let gone = |s: &MetricsSnapshot| s.totals.get(total).copied();
                let then = since(300.0).and_then(gone).unwrap_or(0);
                gone(latest)?.saturating_sub(then) as f64
            }
            Metric::AgentsOnline => latest
                .agents
                .iter()
                .filter(|(state, _)| *state != "offline")
                .map(|(_, n)| *n)
                .sum::<u64>() as f64,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Above,
    Below,
}

impl Direction {
    fn past(self, value: f64, level: f64) -> bool {
        match self {
            Direction::Above => value > level,
            Direction::Below => value < level,
        }
    }

    /// Back on the good side of `clear` (reaching it is enough).
    fn cleared(self, value: f64, clear: f64) -> bool {
        match self {
            Direction::Above => value <= clear,
            Direction::Below => value >= clear,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Above => "above",
            Direction::Below => "below",
        }
    }
}

/// A condition that must hold for a rule to breach, e.g. "while tasks are queued".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    pub metric: Metric,
    pub direction: Direction,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub metric: Metric,
    pub direction: Direction,
    pub threshold: f64,
    /// Where a firing alert resolves; on the good side of `threshold` or equal to it.
    pub clear: f64,
    pub for_ms: u64,
    pub severity: String,
    pub when: Option<Gate>,
}

impl Rule {
    /// Checks what the config file cannot: the clear level on the right side of the threshold.
    pub fn validate(&self) -> Result<(), String> {
        let wrong_side = match self.direction {
            Direction::Above => self.clear > self.threshold,
            Direction::Below => self.clear < self.threshold,
        };
        if wrong_side {
            return Err(format!(
                "clear ({}) must not be {} the threshold ({}): a rule must be able to resolve",
                self.clear,
                self.direction.as_str(),
                self.threshold
            ));
        }
        if self.name.is_empty() {
            return Err("name must not be empty".into());
        }
        Ok(())
    }

    pub fn describe(&self, value: f64) -> String {
        format!(
            "{} is {:.2}, {} {} (rule {})",
            self.metric.name(),
            value,
            self.direction.as_str(),
            self.threshold,
            self.name
        )
    }
}

/// The plan's thresholds, plus queue wait and lost agents.
pub fn defaults() -> Vec<Rule> {
    let rule = |name: &str, metric, direction, threshold, clear, for_s: u64, severity: &str| Rule {
        name: name.into(),
        metric,
        direction,
        threshold,
        clear,
        for_ms: for_s * 1000,
        severity: severity.into(),
        when: None,
    };
    use Direction::{Above, Below};
    vec![
        rule(
            "api_latency_p95",
            Metric::ApiP95Ms,
            Above,
            200.0,
            150.0,
            30,
            "warning",
        ),
        // Low throughput matters only with a real backlog: a few slow tasks waiting for a busy
        // agent on a quiet hub are not an operator's problem.
        Rule {
            when: Some(Gate {
                metric: Metric::QueuedTasks,
                direction: Above,
                threshold: 1000.0,
            }),
            ..rule(
                "throughput_low",
                Metric::TaskOpsPerSec,
                Below,
                400.0,
                500.0,
                60,
                "warning",
            )
        },
        rule(
            "memory_growth",
            Metric::MemoryGrowthMbPerHour,
            Above,
            5.0,
            2.5,
            60,
            "warning",
        ),
        rule(
            "error_rate",
            Metric::ErrorRatePercent,
            Above,
            1.0,
            0.5,
            30,
            "critical",
        ),
        rule(
            "load_average",
            Metric::LoadAvg,
            Above,
            6.0,
            5.0,
            60,
            "warning",
        ),
        rule(
            "queue_wait_p95",
            Metric::QueueWaitP95Ms,
            Above,
            5000.0,
            2500.0,
            60,
            "warning",
        ),
        // Agents that vanished (no close, or missed heartbeats), not those that stopped cleanly.
        rule(
            "agents_lost",
            Metric::AgentsLost5m,
            Above,
            0.0,
            0.0,
            0,
            "warning",
        ),
    ]
}

/// Whether a gate holds at `value`.
pub fn step_gate(gate: Gate, value: f64) -> bool {
    gate.direction.past(value, gate.threshold)
}

/// Where one rule stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Inactive,
    /// Breaching since `since` (ms), not yet for long enough.
    Pending {
        since: u64,
    },
    Firing {
        since: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Fired,
    Resolved,
}

/// One evaluation: the rule's new phase, and whether it started or stopped firing. `value` is
/// `None` when the metric is unknown: nothing changes then.
pub fn step(
    rule: &Rule,
    phase: Phase,
    value: Option<f64>,
    gate: bool,
    now_ms: u64,
) -> (Phase, Option<Transition>) {
    let Some(value) = value else {
        return (phase, None);
    };
    let breach = gate && rule.direction.past(value, rule.threshold);
    match phase {
        Phase::Inactive | Phase::Pending { .. } if !breach => (Phase::Inactive, None),
        Phase::Inactive | Phase::Pending { .. } => {
            let since = match phase {
                Phase::Pending { since } => since,
                _ => now_ms,
            };
            if now_ms.saturating_sub(since) >= rule.for_ms {
                (Phase::Firing { since: now_ms }, Some(Transition::Fired))
            } else {
                (Phase::Pending { since }, None)
            }
        }
        Phase::Firing { .. } if !gate || rule.direction.cleared(value, rule.clear) => {
            (Phase::Inactive, Some(Transition::Resolved))
        }
        Phase::Firing { .. } => (phase, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency_rule() -> Rule {
        defaults()
            .into_iter()
            .find(|r| r.name == "api_latency_p95")
            .unwrap()
    }

    #[test]
    fn a_breach_fires_after_its_duration_and_resolves_only_past_the_clear_level() {
        let rule = latency_rule(); // above 200 for 30 s, clear at 150
        let mut phase = Phase::Inactive;
        let at = |p: Phase, v: f64, t_s: u64| step(&rule, p, Some(v), true, t_s * 1000);
        let (p, t) = at(phase, 250.0, 0);
        assert_eq!((p, t), (Phase::Pending { since: 0 }, None));
        let (p, t) = at(p, 300.0, 29);
        assert_eq!((p, t), (Phase::Pending { since: 0 }, None));
        let (p, t) = at(p, 201.0, 30);
        assert_eq!(
            (p, t),
            (Phase::Firing { since: 30_000 }, Some(Transition::Fired))
        );
        phase = p;
        // Between clear and threshold: still firing (hysteresis).
        let (p, t) = at(phase, 180.0, 40);
        assert_eq!((p, t), (phase, None));
        let (p, t) = at(p, 150.0, 50);
        assert_eq!((p, t), (Phase::Inactive, Some(Transition::Resolved)));
        // A dip below the threshold while pending starts the wait over.
        let (p, _) = at(Phase::Inactive, 250.0, 100);
        let (p, _) = at(p, 100.0, 110);
        let (p, _) = at(p, 250.0, 120);
        assert_eq!(p, Phase::Pending { since: 120_000 });
        // An unknown value changes nothing.
        assert_eq!(step(&rule, p, None, true, 999_000), (p, None));
    }

    #[test]
    fn a_gated_rule_needs_its_gate_and_resolves_when_it_closes() {
        let rule = defaults()
            .into_iter()
            .find(|r| r.name == "throughput_low")
            .unwrap();
        let no_for = Rule { for_ms: 0, ..rule };
        assert_eq!(
            step(&no_for, Phase::Inactive, Some(10.0), false, 0),
            (Phase::Inactive, None)
        );
        let (p, t) = step(&no_for, Phase::Inactive, Some(10.0), true, 0);
        assert_eq!(t, Some(Transition::Fired));
        assert_eq!(
            step(&no_for, p, Some(10.0), false, 1).1,
            Some(Transition::Resolved)
        );
    }

    fn snapshot(uptime_s: f64, disconnected: u64) -> Arc<MetricsSnapshot> {
        let json = serde_json::json!({
            "at": "2026-01-01T00:00:00Z", "interval_ms": 1000, "p50_latency_ms": 0.0,
            "p95_latency_ms": 0.0, "p99_latency_ms": 0.0, "agent_ops_per_sec": 0.0,
            "task_ops_per_sec": 0.0, "swarm_ops_per_sec": 0.0, "cpu_core_usage": [],
            "memory_by_component": {}, "cache_hit_rates": {}, "error_rate_percent": 0.0,
            "timeout_rate_percent": 0.0, "latency_ms": {}, "throughput": {}, "routes": {},
            "queue_depth": {"a": 2, "b": 3}, "agents": {"idle": 1, "offline": 4},
            "totals": {"agents_disconnected": disconnected, "agents_lost": disconnected / 2},
            "process": {"cpu_percent": 0.0, "rss_bytes": 0, "peak_rss_bytes": 0, "uptime_s": uptime_s},
            "load_avg": null
        });
        Arc::new(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn metrics_read_windows_of_history_and_memory_waits_for_half_an_hour() {
        let history: Vec<_> = [(0.0, 1), (100.0, 2), (400.0, 7)]
            .into_iter()
            .map(|(t, d)| snapshot(t, d))
            .collect();
        let latest = history.last().unwrap();
        let minutes: Vec<(f64, u64)> = (0..=20)
            .map(|m| (m as f64 * 60.0, 10_000_000 + m * 100_000))
            .collect();
        let inputs = Inputs {
            latest,
            history: &history,
            rss_by_minute: &minutes,
        };
        assert_eq!(Metric::QueuedTasks.read(&inputs), Some(5.0));
        assert_eq!(Metric::AgentsOnline.read(&inputs), Some(1.0));
        // Disconnects within the last 5 minutes: since the snapshot at 100 s.
        assert_eq!(Metric::AgentsOffline5m.read(&inputs), Some(5.0));
        assert_eq!(Metric::AgentsLost5m.read(&inputs), Some(2.0));
        assert_eq!(Metric::LoadAvg.read(&inputs), None);
        assert_eq!(
            Metric::MemoryGrowthMbPerHour.read(&inputs),
            None,
            "20 minutes is too short"
        );
        let hour: Vec<(f64, u64)> = (0..=40)
            .map(|m| (m as f64 * 60.0, 10_000_000 + m * 100_000))
            .collect();
        let inputs = Inputs {
            rss_by_minute: &hour,
            ..inputs
        };
        // 0.1 MB a minute is 6 MB an hour.
        let growth = Metric::MemoryGrowthMbPerHour.read(&inputs).unwrap();
        assert!((growth - 6.0).abs() < 1e-9, "{growth}");
    }

    #[test]
    fn defaults_are_valid_and_a_clear_level_on_the_wrong_side_is_not() {
        for rule in defaults() {
            rule.validate().unwrap();
            assert!(Metric::parse(rule.metric.name()).is_some());
        }
        let bad = Rule {
            clear: 250.0,
            ..latency_rule()
        };
        assert!(bad.validate().unwrap_err().contains("clear"));
    }
}
