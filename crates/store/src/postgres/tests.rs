//! PostgreSQL under the shared suite (`crate::suite`), each test on a schema of its own
//! ([`ScratchSchema`]), and what only a server database has: a schema newer than the binary,
//! several stores opening one database at once.

use super::scratch::ScratchSchema;
use super::*;
use crate::suite::{Backend, created, store_suite};
use crate::{BatchWriter, TaskReader};

struct Postgres {
    database: ScratchSchema,
    store: PgStore,
}

fn postgres(test: &str) -> Option<Postgres> {
    let database = ScratchSchema::for_test(test)?;
    let store = PgStore::open_as(database.url(), small(), &named()).unwrap();
    Some(Postgres { database, store })
}

/// Reopened under the same name, a store is the same hub restarted: it takes its tasks over.
fn named() -> HubIdentity {
    HubIdentity {
        name: Some("suite".into()),
        ..HubIdentity::default()
    }
}

/// Tests run in parallel against one server: keep each store's pool small.
fn small() -> PoolBounds {
    PoolBounds { min: 1, max: 4 }
}

impl Backend for Postgres {
    fn writer(&self) -> impl BatchWriter {
        self.store.writer()
    }
    fn reader(&self) -> impl TaskReader {
        self.store.reader()
    }
    fn tokens(&self) -> impl crate::TokenStore {
        self.store.token_store()
    }
    fn alerts(&self) -> impl crate::AlertLog {
        self.store.alert_log()
    }
    fn models(&self) -> impl crate::ModelStore {
        self.store.model_store()
    }
    fn reopen(self) -> Self {
        let Postgres { database, store } = self;
        drop(store);
        let store = PgStore::open_as(database.url(), small(), &named()).unwrap();
        Postgres { database, store }
    }
    fn agent_rows(&self) -> Vec<uuid::Uuid> {
        let ids = super::scratch::query_on(
            self.database.url(),
            "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM agents",
        );
        ids.split(',')
            .filter(|id| !id.is_empty())
            .map(|id| id.parse().unwrap())
            .collect()
    }
}

store_suite!(postgres);

#[test]
fn a_database_newer_than_the_binary_is_refused() {
    let Some(pg) = postgres("a_database_newer_than_the_binary_is_refused") else {
        return;
    };
    pg.database.execute(&format!(
        "INSERT INTO {}.hive_schema_version (version) VALUES (999)",
        pg.database.schema()
    ));
    let refused = PgStore::open(pg.database.url(), small()).err().unwrap();
    assert!(
        refused.to_string().contains("newer than this hive"),
        "{refused}"
    );
}

#[test]
fn stores_opening_one_database_together_migrate_it_once() {
    let Some(database) = ScratchSchema::for_test("stores_opening_one_database_together") else {
        return;
    };
    let url = database.url().to_string();
    let opened: Vec<PgStore> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&url, small()).unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    opened[0].writer().apply(&[&[created(1)]]).unwrap();
    // Each store is a hub of its own: the task is the first one's to run.
    assert_eq!(opened[0].reader().load_active().unwrap().len(), 1);
    assert_eq!(opened[3].reader().load_active().unwrap().len(), 0);
    let stats = opened[0].stats();
    assert_eq!((stats.max, stats.waiting), (4, 0));
    assert!(stats.acquired >= 2, "{stats:?}");
}

#[test]
fn a_database_that_is_not_there_is_an_error_naming_it_without_its_password() {
    let refused = PgStore::open(
        "postgres://hive:s3cret@127.0.0.1:1/hive",
        PoolBounds { min: 1, max: 1 },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(refused.contains("no database connection"), "{refused}");
    assert!(!refused.contains("s3cret"), "{refused}");
    let unparsable = PgStore::open("postgres://hive:s3cret@[::1", small())
        .err()
        .unwrap()
        .to_string();
    assert!(unparsable.contains("not a PostgreSQL URL"), "{unparsable}");
    assert!(!unparsable.contains("s3cret"), "{unparsable}");
}

#[test]
fn a_password_is_never_shown() {
    assert_eq!(
        redact("postgres://hive:s3cret@db:5432/hive"),
        "postgres://hive:***@db:5432/hive"
    );
    assert_eq!(
        redact("postgres://hive@db:5432/hive"),
        "postgres://hive@db:5432/hive"
    );
    assert_eq!(
        redact("postgres://db/hive?user=hive&password=s3cret&sslmode=disable"),
        "postgres://db/hive?user=hive&password=***&sslmode=disable"
    );
    assert_eq!(
        redact("host=db user=hive password=s3cret dbname=hive"),
        "host=db user=hive password=*** dbname=hive"
    );
    assert_eq!(
        redact("host=db password = 's3 \\'cret' dbname=hive"),
        "host=db password = *** dbname=hive"
    );
    assert_eq!(redact("password="), "password=***");
    assert_eq!(redact("passwords"), "passwords");
}

#[test]
fn a_database_on_loopback_or_a_socket_is_on_this_machine() {
    for local in [
        "postgres://hive@127.0.0.1:54329/hive",
        "postgres://hive@localhost/hive",
        "postgres://hive@[::1]:5432/hive",
        "host=/var/run/postgresql user=hive",
        "host=127.0.0.1,localhost user=hive",
        "host=db hostaddr=127.0.0.1 user=hive",
    ] {
        assert_eq!(is_on_this_machine(local), Some(true), "{local}");
    }
    for remote in [
        "postgres://hive@db:5432/hive",
        "postgres://hive@10.0.0.5/hive",
        "host=127.0.0.1,db user=hive",
        "host=localhost hostaddr=10.0.0.5 user=hive",
    ] {
        assert_eq!(is_on_this_machine(remote), Some(false), "{remote}");
    }
    assert_eq!(is_on_this_machine("postgres://hive@db:notaport/hive"), None);
}

#[test]
fn learned_estimates_whose_write_failed_go_again_with_the_next_commit() {
    use hive_core::{Capability, Change, Estimate, LearnedEstimate};
    let Some(p) = postgres("estimates_again") else {
        return;
    };
    let estimate = LearnedEstimate {
        identity: "gpu-box".into(),
        capability: Capability::parse("echo", "capability").unwrap(),
        estimate: Estimate {
            samples: 3,
            ..Estimate::default()
        },
    };
    let url = p.database.url();
    let mut writer = p.store.writer();
    // The estimates' transaction fails; the tasks' commits do not depend on it.
    super::scratch::execute_on(
        url,
        "ALTER TABLE estimates ADD CONSTRAINT refused CHECK (samples > 10)",
    );
    writer
        .apply(&[&[created(1), Change::Learned(estimate.clone())]])
        .unwrap();
    assert!(p.store.reader().load_learned().unwrap().is_empty());
    let reader = p.store.reader();
    assert!(reader.get_task(crate::suite::spec(1).id).unwrap().is_some());
    // The estimate changes no more, but the next commit, of anything, writes it.
    super::scratch::execute_on(url, "ALTER TABLE estimates DROP CONSTRAINT refused");
    writer.apply(&[&[created(2)]]).unwrap();
    assert_eq!(p.store.reader().load_learned().unwrap(), vec![estimate]);
}

#[test]
fn learned_estimates_are_written_at_most_so_often_and_when_the_writer_stops() {
    use hive_core::{Capability, Change, Estimate, LearnedEstimate};
    let Some(p) = postgres("estimates_deferred") else {
        return;
    };
    let estimate = |samples| LearnedEstimate {
        identity: "gpu-box".into(),
        capability: Capability::parse("echo", "capability").unwrap(),
        estimate: Estimate {
            samples,
            ..Estimate::default()
        },
    };
    let learned = || p.store.reader().load_learned().unwrap();
    let mut writer = p
        .store
        .writer()
        .writing_estimates_every(std::time::Duration::from_secs(3600));
    writer
        .apply(&[&[created(1), Change::Learned(estimate(3))]])
        .unwrap();
    assert_eq!(
        learned(),
        vec![estimate(3)],
        "the first are written at once"
    );
    writer
        .apply(&[&[created(2), Change::Learned(estimate(4))]])
        .unwrap();
    let reader = p.store.reader();
    assert!(reader.get_task(crate::suite::spec(2).id).unwrap().is_some());
    assert_eq!(learned(), vec![estimate(3)], "the next wait for their time");
    writer
        .apply(&[&[created(3), Change::Learned(estimate(5))]])
        .unwrap();
    drop(writer);
    assert_eq!(
        learned(),
        vec![estimate(5)],
        "and are written, the latest of each, when the writer stops"
    );
}

/// A hub of a version before 16 (migrations/postgres/0016_attempt_in_task.sql) wrote an
/// `attempts` row at each start and ended it in place, and left in the task's row what a newer
/// hub wrote there for an earlier attempt. A newer hub that ends such an attempt without
/// knowing its agent (as after a restart) ends it in that row, its agent and start kept, and a
/// reader shows it ended when the task succeeded.
#[test]
fn attempts_an_older_hub_started_are_ended_by_a_newer_one() {
    use hive_core::{AgentId, AttemptOutcome, Change, NextStatus, TaskStatus, Timestamp};
    use uuid::Uuid;

    use crate::StoredAttempt;
    use crate::suite::spec;
    let Some(p) = postgres("older_hub_attempts") else {
        return;
    };
    let agent = AgentId(Uuid::from_u128(7));
    let mut writer = p.store.writer();
    let mut changes = Vec::new();
    for n in [1, 2] {
        changes.push(Change::TaskCreated {
            spec: spec(n),
            status: TaskStatus::Queued,
            error: None,
        });
        changes.push(Change::AttemptStarted {
            spec: spec(n),
            attempt: 1,
            agent,
            started_at: Timestamp(12),
            lease_until: Timestamp(1_012),
            queued_ms: 0,
            inputs: vec![],
            identity: None,
        });
    }
    writer.apply(&[&changes]).unwrap();
    // As the older hub left them: the attempt in its own row, and in the task's row an
    // earlier attempt's agent and start, which its start did not replace.
    super::scratch::execute_on(
        p.database.url(),
        "UPDATE tasks SET attempt_agent = '00000000-0000-0000-0000-000000000005',
            attempt_started_at = 3;
         INSERT INTO attempts (task_id, attempt, agent_id, started_at)
            SELECT id, 1, '00000000-0000-0000-0000-000000000007', 12 FROM tasks",
    );
    // Ended by a hub that reloaded the tasks: it knows neither the agent nor the start.
    let ended = |n: u128, outcome: AttemptOutcome, next| Change::AttemptEnded {
        task: spec(n).id,
        capability: spec(n).capability.clone(),
        attempt: 1,
        agent: None,
        created_at: Timestamp(10),
        started_at: Timestamp(19),
        ended_at: Timestamp(20),
        outcome,
        output: None,
        error: (outcome == AttemptOutcome::Failed).then(|| "boom".to_string()),
        next,
    };
    let failed = ended(1, AttemptOutcome::Failed, NextStatus::Failed);
    let succeeded = ended(2, AttemptOutcome::Succeeded, NextStatus::Succeeded);
    writer.apply(&[&[failed, succeeded]]).unwrap();
    let reader = p.store.reader();
    let log = |n: u128| reader.get_task(spec(n).id).unwrap().unwrap().attempt_log;
    let attempt = |outcome: AttemptOutcome| StoredAttempt {
        attempt: 1,
        agent: Some(agent),
        started_at: Timestamp(12),
        ended_at: Some(Timestamp(20)),
        outcome: Some(outcome),
        error: (outcome == AttemptOutcome::Failed).then(|| "boom".to_string()),
        output: None,
    };
    assert_eq!(log(1), [attempt(AttemptOutcome::Failed)]);
    assert_eq!(log(2), [attempt(AttemptOutcome::Succeeded)]);
}
