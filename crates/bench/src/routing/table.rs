//! The routing run's rows in the bench table, with the targets beside them.

use super::{PolicyRun, RoutingRun};

fn ms(v: Option<f64>) -> String {
    v.map_or("not within the run".into(), |v| format!("{v:.0} ms"))
}

/// One row per policy, then how `learned` compares with the others.
pub fn rows(run: &RoutingRun) -> Vec<[String; 4]> {
    let mut rows = vec![[
        format!(
            "routing: pool of {} agents x {} slot(s), offered (Poisson, seed {})",
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
    ]];
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
