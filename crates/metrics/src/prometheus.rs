//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per metric
//! family, then its samples. Names and units follow Prometheus' conventions (`_total` for
//! counters, base units: seconds and bytes); checking them is `promtool check metrics`'s job,
//! which a test runs against the hub's `/metrics`.

use std::fmt::Write;

use crate::latency::{BUCKETS_S, Cumulative};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    /// The samples of one histogram series (its family must be started with `Kind::Histogram`).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], c: &Cumulative) -> &mut Self {
        let bucket = format!("{name}_bucket");
        for (bound, count) in BUCKETS_S.iter().zip(c.counts) {
            self.out.push_str(&bucket);
            write_labels(&mut self.out, labels, Some(&number(*bound)));
            let _ = writeln!(self.out, " {count}");
        }
        self.out.push_str(&bucket);
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", c.count);
        self.sample(&format!("{name}_sum"), labels, c.sum_s);
        self.sample(&format!("{name}_count"), labels, c.count as f64)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (key, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        let value = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{key}=\"{value}\"");
    }
    out.push('}');
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Latency;

    #[test]
    fn families_samples_and_histograms_in_text_format() {
        let l = Latency::default();
        l.record_us(300);
        let mut e = Exposition::default();
        e.family("hive_tasks_total", Kind::Counter, "Tasks by status.")
            .sample("hive_tasks_total", &[("status", "succeeded")], 3.0)
            .sample("hive_tasks_total", &[("status", "a \"quoted\"\nname")], 0.0);
        e.family("hive_wait_seconds", Kind::Histogram, "Waits.")
            .histogram("hive_wait_seconds", &[("route", "/x")], &l.cumulative());
        let text = e.finish();
        assert!(text.starts_with(
            "# HELP hive_tasks_total Tasks by status.\n# TYPE hive_tasks_total counter\n"
        ));
        assert!(
            text.contains("hive_tasks_total{status=\"succeeded\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"{status="a \"quoted\"\nname"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("hive_wait_seconds_bucket{route=\"/x\",le=\"0.00025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("hive_wait_seconds_bucket{route=\"/x\",le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hive_wait_seconds_bucket{route=\"/x\",le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hive_wait_seconds_count{route=\"/x\"} 1\n"),
            "{text}"
        );
    }
}
