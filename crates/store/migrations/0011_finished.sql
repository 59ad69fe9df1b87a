-- Issue 13: `tasks_by_status (status, id)` cost every task five B-tree writes (its entry moved at
-- each change of status: a quarter of the writer's instructions, BENCHMARKS.md). A task's end is
-- now recorded once, in `finished_at` (NULL while it is waiting, queued or running; a task never
-- leaves an end), and the two indexes that replace it change only when a task ends:
-- * `tasks_unfinished`: the tasks not yet ended, which a restarting hub loads and a listing of
--   waiting, queued or running tasks walks. Going from queued to running does not touch it.
-- * `tasks_failed`: failed and cancelled tasks by status, for listing them. A succeeded task
--   never enters it; succeeded tasks are listed by walking the table newest first.
ALTER TABLE tasks ADD COLUMN finished_at INTEGER;
UPDATE tasks SET finished_at = updated_at WHERE status IN ('succeeded', 'failed', 'cancelled');
DROP INDEX tasks_by_status;
CREATE INDEX tasks_unfinished ON tasks (id) WHERE finished_at IS NULL;
CREATE INDEX tasks_failed ON tasks (status, id) WHERE status IN ('failed', 'cancelled');
