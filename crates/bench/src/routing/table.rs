//! The routing run's rows in the bench table, with the targets beside them.

use super::{PolicyRun, RoutingRun};

fn ms(v: Option<f64>) -> String {
    v.map_or("not within the run".into(), |v| format!("{v:.0} ms"))
}

/// One row per policy, then how `learned` compares with the others.
pub fn rows(run: &RoutingRun) -> Vec<[String; 4]> {
    let mut rows = vec![header("shifting", run)];
    for p in &run.policies {
        rows.push([
            format!(
                "routing {}: completion mean / p50 / p99, failed attempts, throughput, \
                 traffic off the slowed agent / back",
                p.policy
            ),
            "-".into(),
            if p.policy == "learned" {
                "off within 2 s".into()
            } else {
                "-".into()
            },
            format!(
                "{:.2} / {:.2} / {:.1} ms, {}, {:.0}/s ({} of {} succeeded, {} refused), {} / {}",
                p.completion_mean_ms,
                p.completion_ms.p50,
                p.completion_ms.p99,
                p.failed_attempts,
                p.throughput_per_sec,
                p.succeeded,
                p.submitted,
                p.errors,
                ms(p.moved_away_ms),
                ms(p.moved_back_ms)
            ),
        ]);
    }
    let find = |name: &str| run.policies.iter().find(|p| p.policy == name);
    if let (Some(learned), Some(least), Some(p2c)) =
        (find("learned"), find("least_loaded"), find("p2c_ewma"))
    {
        rows.push([
            "routing learned vs least_loaded: mean, p99, failed attempts".into(),
            "-".into(),
            ">= 30% lower, >= 50% lower, >= 80% fewer".into(),
            format!(
                "{}, {}, {}",
                lower(learned.completion_mean_ms, least.completion_mean_ms),
                lower(learned.completion_ms.p99, least.completion_ms.p99),
                fewer(learned, least)
            ),
        ]);
        rows.push([
            "routing learned vs p2c_ewma: mean, p99".into(),
            "-".into(),
            "lower, lower".into(),
            format!(
                "{}, {}",
                lower(learned.completion_mean_ms, p2c.completion_mean_ms),
                lower(learned.completion_ms.p99, p2c.completion_ms.p99)
            ),
        ]);
    }
    rows
}

/// The crossover scenario's rows, then how `neural` compares with `learned` on it and on the
/// shifting scenario (`shifting`, when it ran).
pub fn crossover_rows(run: &RoutingRun, shifting: Option<&RoutingRun>) -> Vec<[String; 4]> {
    let mut rows = vec![header("crossover", run)];
    for p in &run.policies {
        rows.push([
            format!(
                "crossover {}: completion mean / p50 / p99, on the quick side, throughput",
                p.policy
            ),
            "-".into(),
            "-".into(),
            format!(
                "{:.2} / {:.2} / {:.1} ms, {:.0}%, {:.0}/s ({} of {} succeeded, {} refused)",
                p.completion_mean_ms,
                p.completion_ms.p50,
                p.completion_ms.p99,
                p.quick_side * 100.0,
                p.throughput_per_sec,
                p.succeeded,
                p.submitted,
                p.errors
            ),
        ]);
    }
    let find =
        |run: &RoutingRun, name: &str| run.policies.iter().find(|p| p.policy == name).cloned();
    if let (Some(neural), Some(learned)) = (find(run, "neural"), find(run, "learned")) {
        rows.push([
            "routing neural vs learned, crossover: mean".into(),
            "-".into(),
            ">= 25% lower".into(),
            lower(neural.completion_mean_ms, learned.completion_mean_ms),
        ]);
    }
    if let Some(shifting) = shifting
        && let (Some(neural), Some(learned)) = (find(shifting, "neural"), find(shifting, "learned"))
    {
        rows.push([
            "routing neural vs learned, shifting: mean".into(),
            "-".into(),
            "at most 5% higher".into(),
            lower(neural.completion_mean_ms, learned.completion_mean_ms),
        ]);
    }
    rows
}

/// The pool and the load offered to it.
fn header(pool: &str, run: &RoutingRun) -> [String; 4] {
    [
        format!(
            "routing, {pool} pool: {} agents x {} slot(s), offered (Poisson, seed {})",
            run.pool.len(),
            run.slots,
            run.seed
        ),
        "-".into(),
        "70% of capacity".into(),
        format!(
            "{:.0}/s of {:.0}/s measured ({:.0}/s nominal), {:.0} s per policy",
            run.offered_per_sec, run.capacity_per_sec, run.nominal_capacity_per_sec, run.duration_s
        ),
    ]
}

fn lower(ours: f64, theirs: f64) -> String {
    if theirs <= 0.0 {
        return "n/a".into();
    }
    let change = (theirs - ours) / theirs * 100.0;
    if change >= 0.0 {
        format!("{change:.0}% lower")
    } else {
        format!("{:.0}% higher", -change)
    }
}

fn fewer(ours: &PolicyRun, theirs: &PolicyRun) -> String {
    if theirs.failed_attempts == 0 {
        return format!("{} vs 0", ours.failed_attempts);
    }
    let change = (theirs.failed_attempts as f64 - ours.failed_attempts as f64)
        / theirs.failed_attempts as f64;
    format!("{:.0}% fewer", change * 100.0)
}
