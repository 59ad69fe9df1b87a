//! A schema of its own in a PostgreSQL server, dropped when it goes: for tests, which run in
//! parallel on one server, and for `hive bench --store`, which starts a hub on an empty store.
//!
//! [`ScratchSchema::for_test`] uses the server named by `HIVE_TEST_POSTGRES` (`.ci/postgres
//! start` prints it); without the variable the PostgreSQL tests are skipped with a message,
//! unless `HIVE_REQUIRE_POSTGRES=1` (set by `.ci/run`), where a missing database is a failure.

use std::str::FromStr;

use super::{db_error, redact};
use crate::StoreError;

/// A schema of its own; [`url`](ScratchSchema::url) connects with it first on the search path.
pub struct ScratchSchema {
    admin: String,
    schema: String,
    url: String,
    /// A role of its own, when [`as_role`](ScratchSchema::as_role) made one.
    role: Option<String>,
}

impl ScratchSchema {
    /// `None` (after saying so) when no test database is configured and none is required.
    pub fn for_test(test: &str) -> Option<ScratchSchema> {
        let admin = match std::env::var("HIVE_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                if std::env::var("HIVE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                    panic!("HIVE_TEST_POSTGRES is not set: run `.ci/postgres start` and export it");
                }
                eprintln!(
                    "skipped {test}: no PostgreSQL (set HIVE_TEST_POSTGRES, see .ci/postgres)"
                );
                return None;
            }
        };
        let scratch = ScratchSchema::create(&admin, "hive_test")
            .unwrap_or_else(|e| panic!("HIVE_TEST_POSTGRES: {e}"));
        Some(scratch)
    }

    /// A new schema named `PREFIX_<uuid>` on the server at `admin` (a user that may create
    /// schemas).
    pub fn create(admin: &str, prefix: &str) -> Result<ScratchSchema, StoreError> {
        let schema = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        try_run(admin, format!("CREATE SCHEMA {schema}"))?;
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-c%20search_path%3D{schema}");
        Ok(ScratchSchema {
            admin: admin.to_string(),
            schema,
            url,
            role: None,
        })
    }

    /// Makes a login role of its own that owns the schema, and from now on [`url`] connects as
    /// it: a test can then take the database away from the hub (`ALTER ROLE ... NOLOGIN` and
    /// ending its sessions) without touching other tests.
    ///
    /// [`url`]: ScratchSchema::url
    pub fn as_role(&mut self) -> String {
        let role = format!("{}_role", self.schema);
        self.execute(&format!(
            "CREATE ROLE {role} LOGIN; ALTER SCHEMA {} OWNER TO {role}",
            self.schema
        ));
        let config = tokio_postgres::Config::from_str(&self.admin).expect("a URL");
        let (host, port) = host_port(&config);
        let db = config.get_dbname().unwrap_or("postgres");
        self.url = format!(
            "postgres://{role}@{host}:{port}/{db}?options=-c%20search_path%3D{}",
            self.schema
        );
        self.role = Some(role.clone());
        role
    }

    /// Refuses the role's logins and ends its sessions: the database is gone for the hub.
    pub fn take_away(&self) {
        let role = self.role.as_deref().expect("as_role first");
        self.execute(&format!(
            "ALTER ROLE {role} NOLOGIN;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        ));
    }

    /// Lets the role log in again.
    pub fn give_back(&self) {
        let role = self.role.as_deref().expect("as_role first");
        self.execute(&format!("ALTER ROLE {role} LOGIN"));
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// This schema on another server holding the same data (a streaming replica), at
    /// `host:port`, as the administrator's user.
    pub fn url_at(&self, host_port: &str) -> String {
        let config = tokio_postgres::Config::from_str(&self.admin).expect("a URL");
        let user = config.get_user().unwrap_or("postgres");
        let db = config.get_dbname().unwrap_or("postgres");
        format!(
            "postgres://{user}@{host_port}/{db}?options=-c%20search_path%3D{}",
            self.schema
        )
    }

    /// Runs SQL as the administrator (outside this schema).
    pub fn execute(&self, sql: &str) {
        run(&self.admin, sql.to_string());
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }
}

/// `host:port` of the streaming replica of the test server (`HIVE_TEST_POSTGRES_REPLICA`, which
/// `.ci/postgres start` prints); `None` (after saying so) when it is not set and not required.
pub fn replica_for_test(test: &str) -> Option<String> {
    let url = match std::env::var("HIVE_TEST_POSTGRES_REPLICA") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            if std::env::var("HIVE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!(
                    "HIVE_TEST_POSTGRES_REPLICA is not set: run `.ci/postgres start` and export it"
                );
            }
            eprintln!(
                "skipped {test}: no replica (set HIVE_TEST_POSTGRES_REPLICA, see .ci/postgres)"
            );
            return None;
        }
    };
    let config = tokio_postgres::Config::from_str(&url)
        .unwrap_or_else(|e| panic!("HIVE_TEST_POSTGRES_REPLICA: {e}"));
    let (host, port) = host_port(&config);
    Some(format!("{host}:{port}"))
}

/// The TCP host and port a test URL names (loopback and 5432 when it names none).
fn host_port(config: &tokio_postgres::Config) -> (String, u16) {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".into(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let mut sql = format!("DROP SCHEMA {} CASCADE", self.schema);
        if let Some(role) = &self.role {
            sql.push_str(&format!("; DROP ROLE {role}"));
        }
        if let Err(e) = try_run(&self.admin, sql) {
            eprintln!("could not drop the scratch schema {}: {e}", self.schema);
        }
    }
}

/// Runs SQL on the server at `url` (a replica, say); panics when it fails (tests).
pub fn execute_on(url: &str, sql: &str) {
    run(url, sql.to_string());
}

/// The first column of the first row `sql` returns on the server at `url`, as text (tests).
pub fn query_on(url: &str, sql: &str) -> String {
    let config = tokio_postgres::Config::from_str(url).expect("a URL");
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .expect("connects");
            tokio::spawn(connection);
            let rows = client.simple_query(&sql).await.expect("the query runs");
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                    _ => None,
                })
                .unwrap_or_default()
        })
    })
    .join()
    .expect("the query's thread")
}

/// Runs one statement; panics when it fails (tests).
fn run(url: &str, sql: String) {
    if let Err(e) = try_run(url, sql) {
        panic!("{e}");
    }
}

/// Runs one statement on a connection of its own, on a thread of its own (callable from
/// anywhere, an async test included).
fn try_run(url: &str, sql: String) -> Result<(), StoreError> {
    simple_query_apart(url, sql).map(drop)
}

/// Runs `sql` (one or more statements, text protocol) on a connection of its own, on a thread of
/// its own, and returns what the server answered.
pub(super) fn simple_query_apart(
    url: &str,
    sql: String,
) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, StoreError> {
    let config = tokio_postgres::Config::from_str(url).map_err(|e| {
        StoreError::Database(format!("not a PostgreSQL URL ({}): {e}", redact(url)))
    })?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("cannot start a runtime: {e}")))?;
        runtime.block_on(async move {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| StoreError::Database(format!("cannot connect: {e}")))?;
            tokio::spawn(connection);
            client
                .simple_query(&sql)
                .await
                .map_err(|e| StoreError::Database(format!("{sql}: {}", db_error(e))))
        })
    })
    .join()
    .map_err(|_| StoreError::Database("the statement's thread panicked".into()))?
}
