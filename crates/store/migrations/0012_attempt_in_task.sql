-- Issue 13: a plain task's attempt was written twice to `attempts` (inserted at its start,
-- updated at its end): two of a task's five statements. Now the task row keeps its latest
-- attempt's agent and start (`attempt_agent`, `attempt_started_at`; NULL for a consensus task),
-- and `attempts` gets a plain task's attempt once, at its end, only when it ends otherwise than
-- by succeeding (failed, lease expired, cancelled). A reader shows the latest attempt from the
-- task row when `attempts` has no row of its number, ended at `finished_at` when the task
-- succeeded. A consensus task's replicas keep their rows from their start, as before.
ALTER TABLE tasks ADD COLUMN attempt_agent BLOB;
ALTER TABLE tasks ADD COLUMN attempt_started_at INTEGER;
-- Plain tasks running now: their open attempt moves into the task row.
UPDATE tasks SET
    attempt_agent = (SELECT a.agent_id FROM attempts a
        WHERE a.task_id = tasks.id AND a.attempt = tasks.attempts),
    attempt_started_at = (SELECT a.started_at FROM attempts a
        WHERE a.task_id = tasks.id AND a.attempt = tasks.attempts)
WHERE status = 'running' AND replicas IS NULL AND EXISTS (SELECT 1 FROM attempts a
    WHERE a.task_id = tasks.id AND a.attempt = tasks.attempts AND a.ended_at IS NULL);
DELETE FROM attempts WHERE ended_at IS NULL AND EXISTS (SELECT 1 FROM tasks t
    WHERE t.id = attempts.task_id AND t.attempts = attempts.attempt AND t.status = 'running'
        AND t.replicas IS NULL AND t.attempt_started_at IS NOT NULL);
