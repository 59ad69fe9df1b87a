-- Issue 13: the secondary indexes of `tasks` end in `seq` instead of the 16-byte id. An index
-- entry holds its columns and then the row's key; `(capability, id)` held (capability, id, seq)
-- and `tasks_unfinished (id)` held (id, seq), so each insert walked them comparing blobs, the
-- slowest comparison SQLite has (key comparisons were a fifth of SQLite's instructions per
-- batched task end to end; this change saved 3.5% of the task's, BENCHMARKS.md). Indexed on `capability` alone, an entry is (capability, seq), compared as
-- integers after the name. Listings walk them by `seq`, newest first: the order the hub accepted
-- the tasks in, which is the ids' order but for submits that raced each other (PostgreSQL
-- lists by id). A cursor (a task's id) becomes its `seq`. The three indexes are rebuilt once,
-- at the first start after an upgrade (a walk of the table for each).
-- The writer's load of the unfinished tasks' numbers (`sqlite/rows.rs`) now reads each row's
-- id from the table instead of from the old `(id)` index.
DROP INDEX tasks_by_capability;
DROP INDEX tasks_unfinished;
DROP INDEX tasks_failed;
CREATE INDEX tasks_by_capability ON tasks (capability);
CREATE INDEX tasks_unfinished ON tasks (seq) WHERE finished_at IS NULL;
CREATE INDEX tasks_failed ON tasks (status) WHERE status IN ('failed', 'cancelled');
