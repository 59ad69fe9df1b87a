//! The server settings around a commit, read for reports: `hive bench` prints them beside its
//! figures for a PostgreSQL store, as it prints the kernel's writeback settings. Two of them
//! (`wal_init_zero`, `min_wal_size`) changed the WAL stalls measured in BENCHMARKS.md ("The
//! stalls left at half capacity"); the others are printed for context.

use tokio_postgres::SimpleQueryMessage;

use super::scratch::simple_query_apart;
use crate::StoreError;

/// The settings read, in the order they are printed.
const NAMES: [&str; 5] = [
    "synchronous_commit",
    "wal_init_zero",
    "min_wal_size",
    "max_wal_size",
    "shared_buffers",
];

/// Each of [`NAMES`] and its value on the server at `url`, in their order, values with their
/// unit as `SHOW` gives them (`80MB`); `n/a` for a setting the server does not have (an older
/// PostgreSQL).
pub fn commit_settings(url: &str) -> Result<Vec<(String, String)>, StoreError> {
    let columns: Vec<String> = NAMES
        .iter()
        .map(|name| format!("current_setting('{name}', true)"))
        .collect();
    let sql = format!("SELECT {}", columns.join(", "));
    let answers = simple_query_apart(url, sql)?;
    let row = answers
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| StoreError::Database("the server answered no settings".into()))?;
    Ok(NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_string(), row.get(i).unwrap_or("n/a").to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::scratch::ScratchSchema;

    #[test]
    fn reads_the_commit_settings_in_order() {
        let Some(schema) = ScratchSchema::for_test("reads_the_commit_settings_in_order") else {
            return;
        };
        let settings = commit_settings(schema.url()).unwrap();
        let names: Vec<&str> = settings.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, NAMES);
        // `.ci/postgres` keeps the default, which a 2xx meaning committed relies on.
        assert_eq!(settings[0].1, "on");
        assert!(settings[2].1.ends_with("B"), "{settings:?}");
    }

    #[test]
    fn a_server_that_is_not_there_is_an_error() {
        let err = commit_settings("postgres://nobody@127.0.0.1:1/none").unwrap_err();
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }
}
