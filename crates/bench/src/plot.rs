//! `--plot FILE.svg`: tasks executed per second and the p99 assignment latency over the run, as
//! a self-contained SVG (two panels, shared time axis, phases labelled).

use crate::timeline::Point;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 200.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 30.0;
const GAP: f64 = 50.0;

pub fn svg(points: &[Point]) -> String {
    let t_max = points.last().map_or(1.0, |p| p.seconds).max(1.0);
    let x = |t: f64| LEFT + t / t_max * (WIDTH - LEFT - 20.0);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{}" font-family="sans-serif" font-size="12">"#,
        TOP + 2.0 * PANEL + GAP + 40.0
    );
    out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    let series: [(&str, Vec<(f64, f64)>); 2] = [
        (
            "tasks executed per second",
            points
                .iter()
                .map(|p| (p.seconds, p.tasks_per_sec))
                .collect(),
        ),
        (
            "p99 submit-to-assign latency (ms)",
            points
                .iter()
                .filter_map(|p| Some((p.seconds, p.assign_p99_ms?)))
                .collect(),
        ),
    ];
    for (i, (title, data)) in series.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        let y_max = data.iter().map(|d| d.1).fold(0.0, f64::max).max(1e-9) * 1.1;
        let y = |v: f64| top + PANEL - v / y_max * PANEL;
        out.push_str(&format!(
            r#"<text x="{LEFT}" y="{}" font-weight="bold">{title}</text>"#,
            top - 8.0
        ));
        out.push_str(&format!(
            r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#999"/>"##,
            WIDTH - LEFT - 20.0
        ));
        for k in 0..=4 {
            let v = y_max * k as f64 / 4.0;
            out.push_str(&format!(
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y(v) + 4.0,
                short(v)
            ));
        }
        let path: Vec<String> = data
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        if !path.is_empty() {
            out.push_str(&format!(
                r##"<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{}"/>"##,
                path.join(" ")
            ));
        }
    }
    let mut last = "";
    for p in points {
        if p.phase != last {
            let px = x(p.seconds);
            out.push_str(&format!(
                r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{}" stroke="#ccc" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" fill="#555">{}</text>"##,
                TOP + 2.0 * PANEL + GAP,
                px + 3.0,
                TOP + 2.0 * PANEL + GAP + 16.0,
                p.phase
            ));
            last = &p.phase;
        }
    }
    out.push_str(&format!(
        r#"<text x="{}" y="{}" text-anchor="end">seconds: {t_max:.0}</text></svg>"#,
        WIDTH - 20.0,
        TOP + 2.0 * PANEL + GAP + 34.0
    ));
    out
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
