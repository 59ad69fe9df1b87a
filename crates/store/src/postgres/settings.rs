//! The server settings that decide how long a commit waits, read for reports: `hive bench`
//! prints them beside its figures for a PostgreSQL store, as it prints the kernel's writeback
//! settings, because they moved the latency tail more than any change to the hub
//! (BENCHMARKS.md, "The stalls left at half capacity").

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

/// `name = value` of each of [`NAMES`] on the server at `url`, in their order, values with
/// their unit as `SHOW` gives them (`80MB`).
pub fn commit_settings(url: &str) -> Result<Vec<(String, String)>, StoreError> {
    let sql = NAMES
        .iter()
        .map(|name| format!("SHOW {name};"))
        .collect::<String>();
    let answers = simple_query_apart(url, sql)?;
    let values: Vec<String> = answers
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    if values.len() != NAMES.len() {
        return Err(StoreError::Database(format!(
            "expected {} settings, the server answered {}",
            NAMES.len(),
            values.len()
        )));
    }
    Ok(NAMES.iter().map(|n| n.to_string()).zip(values).collect())
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
