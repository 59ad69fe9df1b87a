-- Issue 13: the secondary indexes of `tasks` end in `seq` instead of the 16-byte id. An index
-- entry holds its columns and then the row's key; `(capability, id)` held (capability, id, seq)
-- and `tasks_unfinished (id)` held (id, seq), so each insert walked them comparing blobs, the
-- slowest comparison SQLite has (a fifth of the store's instructions per task end to end,
-- BENCHMARKS.md). Indexed on `capability` alone, an entry is (capability, seq): the same tasks
-- in the same order (`seq` follows the ids, `0014_task_seq.sql`), compared as integers after
-- the name. Listings walk them by `seq`, newest first; a cursor (a task's id) becomes its `seq`.
DROP INDEX tasks_by_capability;
DROP INDEX tasks_unfinished;
DROP INDEX tasks_failed;
CREATE INDEX tasks_by_capability ON tasks (capability);
CREATE INDEX tasks_unfinished ON tasks (seq) WHERE finished_at IS NULL;
CREATE INDEX tasks_failed ON tasks (status) WHERE status IN ('failed', 'cancelled');
