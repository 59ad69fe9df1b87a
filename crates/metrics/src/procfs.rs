//! Readings of `/proc` (Linux): a process's resident memory, its peak and CPU time; the machine's
//! per-core CPU time and load average. `None` where `/proc` is not there.

/// Clock ticks per second in `/proc/<pid>/stat`: USER_HZ, 100 on every mainstream Linux.
const USER_HZ: u64 = 100;

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProcessSample {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// User plus system CPU time, in microseconds.
    pub cpu_us: u64,
}

/// The process `pid`.
pub fn sample(pid: u32) -> Option<ProcessSample> {
    sample_at(&pid.to_string())
}

/// This process.
pub fn sample_self() -> Option<ProcessSample> {
    sample_at("self")
}

fn sample_at(pid: &str) -> Option<ProcessSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v * 1024)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, hence the last ')').
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcessSample {
        rss_bytes: kib("VmRSS:")?,
        peak_rss_bytes: kib("VmHWM:")?,
        cpu_us: ticks * 1_000_000 / USER_HZ,
    })
}

/// The 1-minute load average.
pub fn load_avg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Busy and total CPU time of each core since boot, in clock ticks (from `/proc/stat`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoreTimes(pub Vec<(u64, u64)>);

impl CoreTimes {
    pub fn read() -> Option<CoreTimes> {
        parse_stat(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Each core's busy share (0.0-1.0) between `earlier` and `self`.
    pub fn usage_since(&self, earlier: &CoreTimes) -> Vec<f64> {
        self.0
            .iter()
            .zip(&earlier.0)
            .map(|(&(busy, total), &(busy0, total0))| {
                let total = total.saturating_sub(total0);
                if total == 0 {
                    0.0
                } else {
                    busy.saturating_sub(busy0) as f64 / total as f64
                }
            })
            .collect()
    }
}

/// The `cpuN` lines: user nice system idle iowait irq softirq steal ...; idle and iowait are the
/// time a core had nothing to run.
fn parse_stat(text: &str) -> Option<CoreTimes> {
    let mut cores = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            continue; // the "cpu" line is the sum of all cores
        }
        let ticks: Vec<u64> = rest
            .split_whitespace()
            .skip(1)
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()?;
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
        cores.push((total - idle, total));
    }
    (!cores.is_empty()).then_some(CoreTimes(cores))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).expect("/proc is readable");
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes);
        assert!(sample_self().is_some());
        assert!(load_avg().is_some());
    }

    #[test]
    fn core_usage_is_the_busy_share_of_each_core() {
        let before = parse_stat(
            "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 40 0 0 0 0 0 0\n",
        )
        .unwrap();
        let after = parse_stat(
            "cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 80 0 5 40 5 0 0 0 0 0\ncpu1 5 0 5 140 0 0 0 0 0 0\nintr 1\n",
        )
        .unwrap();
        assert_eq!(after.0.len(), 2);
        let usage = after.usage_since(&before);
        assert!((usage[0] - 75.0 / 80.0).abs() < 1e-9, "{usage:?}");
        assert_eq!(usage[1], 0.0);
        assert!(
            !CoreTimes::read()
                .expect("/proc/stat is readable")
                .0
                .is_empty()
        );
    }
}
