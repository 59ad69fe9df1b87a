//! Readings of a process from `/proc` (Linux): resident memory, its peak, CPU time; and the
//! machine's load average. `None` where `/proc` is not there.

/// Clock ticks per second in `/proc/<pid>/stat`: USER_HZ, 100 on every mainstream Linux.
const USER_HZ: u64 = 100;

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProcessSample {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// User plus system CPU time, in microseconds.
    pub cpu_us: u64,
}

pub fn sample(pid: u32) -> Option<ProcessSample> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_can_be_sampled() {
        let s = super::sample(std::process::id()).expect("/proc is readable");
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes);
        assert!(super::load_avg().is_some());
    }
}
