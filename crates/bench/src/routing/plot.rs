//! `--plot`: the routing run's share of traffic per agent over time, one panel per policy, as a
//! self-contained SVG (written beside the main plot as `<name>-routing.svg`).

use super::RoutingRun;
use super::adaptation::WINDOW;
use super::pool::BUCKET_MS;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 160.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 30.0;
const GAP: f64 = 45.0;
const LEGEND: f64 = 150.0;

/// One colour per kind of agent: fast, medium, slow, flaky; the slowed agent in red.
fn colour(name: &str) -> &'static str {
    match name {
        "fast-1" => "#d1242f",
        n if n.starts_with("fast") => "#1f6feb",
        n if n.starts_with("medium") => "#8c959f",
        n if n.starts_with("slow") => "#9a6700",
        _ => "#8250df",
    }
}

pub fn svg(run: &RoutingRun) -> String {
    let panels = run.policies.len() as f64;
    let height = TOP + panels * (PANEL + GAP) + 20.0;
    let plot_width = WIDTH - LEFT - LEGEND;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let buckets = run
        .policies
        .iter()
        .map(|p| p.shares.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let x = |b: f64| LEFT + b / buckets as f64 * plot_width;
    for (i, policy) in run.policies.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        let y = |share: f64| top + PANEL - share * PANEL;
        out.push_str(&format!(
            r##"<text x="{LEFT}" y="{}" font-weight="bold">{}: share of assignments per agent ({} ms moving average)</text><rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL}" fill="none" stroke="#999"/>"##,
            top - 8.0,
            policy.policy,
            WINDOW as u64 * BUCKET_MS
        ));
        for k in 0..=2 {
            let share = k as f64 / 2.0;
            out.push_str(&format!(
                r#"<text x="{}" y="{}" text-anchor="end">{:.0}%</text>"#,
                LEFT - 6.0,
                y(share) + 4.0,
                share * 100.0
            ));
        }
        for (agent, profile) in run.pool.iter().enumerate() {
            let points: Vec<String> = (0..policy.shares.len().saturating_sub(WINDOW - 1))
                .map(|b| {
                    let share = policy.shares[b..b + WINDOW]
                        .iter()
                        .map(|s| s[agent])
                        .sum::<f64>()
                        / WINDOW as f64;
                    format!("{:.1},{:.1}", x(b as f64 + WINDOW as f64 / 2.0), y(share))
                })
                .collect();
            out.push_str(&format!(
                r#"<polyline fill="none" stroke="{}" stroke-width="1.2" points="{}"/>"#,
                colour(&profile.name),
                points.join(" ")
            ));
        }
    }
    for (k, (label, name)) in [
        ("fast (1 ms)", "fast-2"),
        ("fast-1, slowed 20x", "fast-1"),
        ("medium (5 ms)", "medium-1"),
        ("slow (25 ms)", "slow-1"),
        ("flaky (5 ms, 20%)", "flaky-1"),
    ]
    .iter()
    .enumerate()
    {
        let ly = TOP + 10.0 + k as f64 * 18.0;
        out.push_str(&format!(
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{label}</text>"#,
            WIDTH - LEGEND + 10.0,
            WIDTH - LEGEND + 30.0,
            colour(name),
            WIDTH - LEGEND + 36.0,
            ly + 4.0
        ));
    }
    out.push_str(&format!(
        r#"<text x="{}" y="{}" text-anchor="end">seconds: {:.0}; slowed at 1/2, recovered at 3/4 of the offered period</text></svg>"#,
        WIDTH - LEGEND,
        height - 6.0,
        buckets as f64 * BUCKET_MS as f64 / 1e3
    ));
    out
}
