//! What requests waited for a PostgreSQL connection over a run: read from the first hub's
//! `/metrics` (`hive_store_pool_acquired_total`, `hive_store_pool_wait_seconds_total`) before
//! and after. Absent on SQLite, which has no pool.

use crate::target::Target;

/// Connections handed out during the run and the time waited for them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PoolWait {
    pub acquired: u64,
    pub waited_ms: f64,
    /// `waited_ms / acquired`.
    pub mean_wait_ms: f64,
}

/// The pool's counters now: (acquired, seconds waited); `None` without a pool.
pub async fn read(hub: &Target) -> Option<(f64, f64)> {
    let text = hub.client().prometheus().await.ok()?;
    let value = |name: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
    };
    Some((
        value("hive_store_pool_acquired_total")?,
        value("hive_store_pool_wait_seconds_total")?,
    ))
}

/// The wait between two readings.
pub fn between(before: Option<(f64, f64)>, after: Option<(f64, f64)>) -> Option<PoolWait> {
    let ((acquired_0, waited_0), (acquired_1, waited_1)) = (before?, after?);
    let acquired = (acquired_1 - acquired_0).max(0.0) as u64;
    let waited_ms = (waited_1 - waited_0).max(0.0) * 1e3;
    Some(PoolWait {
        acquired,
        waited_ms,
        mean_wait_ms: waited_ms / acquired.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_the_difference_per_connection() {
        let wait = between(Some((100.0, 0.5)), Some((1_100.0, 0.75))).unwrap();
        assert_eq!(wait.acquired, 1_000);
        assert!((wait.waited_ms - 250.0).abs() < 1e-9);
        assert!((wait.mean_wait_ms - 0.25).abs() < 1e-9);
        assert_eq!(between(None, Some((1.0, 1.0))), None, "SQLite: no pool");
    }
}
