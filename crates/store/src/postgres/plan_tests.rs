//! The planner settings of the writer's and the claims' transactions ([`super::BY_INDEX`]): a
//! plan made from statistics that do not describe the table as it is (a plan kept from when the
//! table was empty, a table not yet analyzed) must still find its rows through an index.

use super::hubs::CLAIM;
use super::scratch::{ScratchSchema, query_on};
use super::write::Sql;
use super::{BY_INDEX, HubIdentity, PgStore, PoolBounds};

/// The plan `explain` shows (`EXPLAIN (FORMAT JSON)`, the one row it returns) after `setup`, in
/// a transaction begun with `settings`, on a store's new schema; `None` without a database (the
/// test is then skipped).
fn plan(test: &str, settings: &str, setup: &str, explain: &str) -> Option<String> {
    let database = ScratchSchema::for_test(test)?;
    let bounds = PoolBounds { min: 1, max: 1 };
    let store = PgStore::open_as(database.url(), bounds, &HubIdentity::default()).unwrap();
    // One transaction, setup included (statements before a BEGIN in one query join its
    // transaction): nothing of it is seen by autovacuum, and all of it is rolled back. The
    // planner's costs are pinned to PostgreSQL's defaults, whatever the server sets.
    let plan = query_on(
        database.url(),
        &format!(
            "{setup}; BEGIN; SET LOCAL seq_page_cost = 1; SET LOCAL random_page_cost = 4;
             {settings}; {explain}; ROLLBACK"
        ),
    );
    drop(store);
    Some(plan)
}

/// A commit's update of ended attempts as a connection plans it (a generic plan, which it then
/// keeps for every later commit) while `attempts` is known to be small: here empty and
/// analyzed; in the bench where this was found, about 1,600 rows. (Found on plain tasks'
/// attempts, which are no longer updated; consensus replicas' still are, by the same join.)
fn attempt_ended(test: &str, settings: &str) -> Option<String> {
    let explain = format!(
        "SET LOCAL plan_cache_mode = force_generic_plan;
         PREPARE kept(uuid[], int[], bigint[], text[], text[], text[]) AS {};
         EXPLAIN (FORMAT JSON) EXECUTE kept(ARRAY[gen_random_uuid()], ARRAY[1], ARRAY[5::bigint],
            ARRAY['succeeded'], ARRAY[NULL::text], ARRAY['{{}}'])",
        Sql::ReplicaEnded.text(),
    );
    plan(test, settings, "ANALYZE attempts", &explain)
}

/// A claim of 192 tasks from a pool of 60,000 of one capability that was never analyzed.
fn claim(test: &str, settings: &str) -> Option<String> {
    let setup = "INSERT INTO pool (task_id, capability, priority, created_at, rank)
        SELECT gen_random_uuid(), 'c', 0, g, g FROM generate_series(1, 60000) g";
    let explain = format!(
        "PREPARE claim(text, bigint) AS {CLAIM}; EXPLAIN (FORMAT JSON) EXECUTE claim('c', 192)"
    );
    plan(test, settings, setup, &explain)
}

#[test]
fn ending_attempts_by_a_plan_made_for_an_empty_table_finds_their_rows_by_key() {
    let Some(plan) = attempt_ended("plan_attempts", BY_INDEX) else {
        return;
    };
    assert!(plan.contains("\"Index Scan\""), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    // Without the settings, the plan kept scans the whole table at every commit, however large
    // it has grown.
    let plan = attempt_ended("plan_attempts_unset", "").unwrap();
    assert!(plan.contains("Seq Scan"), "{plan}");
}

#[test]
fn a_claim_on_a_pool_never_analyzed_reads_only_the_rows_it_takes() {
    let Some(plan) = claim("plan_claim", BY_INDEX) else {
        return;
    };
    assert!(plan.contains("pool_by_rank"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    // Without them, the claim sorts every pooled task of the capability (and scans the pool).
    let plan = claim("plan_claim_unset", "").unwrap();
    assert!(plan.contains("Sort"), "{plan}");
}

/// A commit's ends of attempts that failed, as a connection plans it while `tasks` is known to
/// be empty: each reads its task's row (for the attempt's agent and start) by the table's key.
/// (Whether the plan would scan without the settings is not checked: on an empty table either
/// plan may be chosen.)
#[test]
fn ending_attempts_that_failed_reads_their_tasks_rows_by_key() {
    let explain = format!(
        "SET LOCAL plan_cache_mode = force_generic_plan;
         PREPARE kept(uuid[], int[], bigint[], text[], text[], uuid[], bigint[]) AS {};
         EXPLAIN (FORMAT JSON) EXECUTE kept(ARRAY[gen_random_uuid()], ARRAY[1], ARRAY[5::bigint],
            ARRAY['failed'], ARRAY[NULL::text], ARRAY[NULL::uuid], ARRAY[3::bigint])",
        Sql::AttemptEndedOtherwise.text(),
    );
    let Some(plan) = plan("plan_attempt_failed", BY_INDEX, "ANALYZE tasks", &explain) else {
        return;
    };
    assert!(plan.contains("tasks_pkey"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}
