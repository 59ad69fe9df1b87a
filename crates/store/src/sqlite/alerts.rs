//! The alert history in SQLite (`alert_events`), on a connection of its own: a write waits for
//! the group commit's transaction at most `busy_timeout` (5 s), which alerts can afford.

use std::sync::Mutex;

use hive_core::Timestamp;
use rusqlite::{Connection, params};

use crate::{AlertLog, AlertRecord, StoreError};

pub struct SqliteAlertLog {
    conn: Mutex<Connection>,
}

impl SqliteAlertLog {
    pub(super) fn new(conn: Connection) -> Self {
        SqliteAlertLog {
            conn: Mutex::new(conn),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AlertLog for SqliteAlertLog {
    fn record(&self, r: &AlertRecord) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO alert_events (rule, state, severity, value, threshold, message, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                r.rule,
                r.state,
                r.severity,
                r.value,
                r.threshold,
                r.message,
                r.at.0 as i64
            ],
        )?;
        Ok(())
    }

    fn recent(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare_cached(
            "SELECT rule, state, severity, value, threshold, message, at FROM alert_events
             ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([limit as i64], |row| {
            Ok(AlertRecord {
                rule: row.get(0)?,
                state: row.get(1)?,
                severity: row.get(2)?,
                value: row.get(3)?,
                threshold: row.get(4)?,
                message: row.get(5)?,
                at: Timestamp(row.get::<_, i64>(6)?.max(0) as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{Durability, SqliteStore};

    #[test]
    fn the_history_keeps_every_record_newest_first_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let record = |n: u64, state: &str| AlertRecord {
            rule: format!("rule-{n}"),
            state: state.into(),
            severity: "warning".into(),
            value: Some(n as f64),
            threshold: 1.0,
            message: "m".into(),
            at: Timestamp(n),
        };
        {
            let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
            let log = store.alert_log().unwrap();
            log.record(&record(1, "firing")).unwrap();
            log.record(&record(2, "resolved")).unwrap();
        }
        let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        let log = store.alert_log().unwrap();
        log.record(&record(3, "firing")).unwrap();
        let recent = log.recent(10).unwrap();
        assert_eq!(
            recent,
            vec![
                record(3, "firing"),
                record(2, "resolved"),
                record(1, "firing")
            ]
        );
        assert_eq!(log.recent(1).unwrap().len(), 1);
    }
}
