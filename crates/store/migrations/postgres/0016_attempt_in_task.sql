-- What the SQLite store did in its version 12 (../0012_attempt_in_task.sql), for PostgreSQL:
-- a plain task's attempt was a row of `attempts` inserted at its start and updated at its end,
-- two of a task's five statements and 28% of the five's time in the database under load
-- (BENCHMARKS.md). Now the task row keeps its latest attempt's agent and start
-- (`attempt_agent`, `attempt_started_at`; NULL for a consensus task, whose replicas keep their
-- rows), and `attempts` gets a plain task's attempt once, at its end, only when it ends
-- otherwise than by succeeding. A reader shows the latest attempt from the task row when
-- `attempts` has no row of its number, ended at the task's `updated_at` when it succeeded.
--
-- Unlike SQLite's version, open attempts stay where they are: hubs of the older version may
-- still be running them against this schema (docs/scaling.md, a rolling upgrade), and end them
-- by updating their row. A newer hub that ends one of those upserts the row; a reader that
-- finds it open on a task that succeeded ends it at the task's end. The other way round is not
-- covered: an older hub that takes over a newer hub's running task ends its attempt by an
-- update that finds no row, so an attempt of it that fails is missing from its log (and one
-- given back unstarted counts toward its `max_attempts` at a later reload), and an older hub's
-- reader shows no attempt of a newer hub's that succeeded or runs. The columns have no default
-- and no index: adding them rewrites nothing, and the tasks' updates stay HOT.
ALTER TABLE tasks ADD COLUMN attempt_agent uuid, ADD COLUMN attempt_started_at bigint;

-- A task's update is HOT (no index entry rewritten) only when its new version fits on its page.
-- Tasks inserted together share pages and start together, in one statement of one transaction,
-- which cannot prune the versions it just replaced: with a fifth of each page kept free (0001),
-- most starts went to other pages, with new entries in every index (44% of the updates HOT in a
-- batched bench). Half a page keeps room for a second version of every row inserted into it
-- (91% HOT, and a start's update 3.3 us a row instead of 5.9: BENCHMARKS.md, "PostgreSQL: a
-- task's attempt in its row"). The cost: inserts fill a page to half instead of four fifths, so
-- the table of past tasks takes up to 1.6 times the pages. Pages already written keep theirs.
ALTER TABLE tasks SET (fillfactor = 50);
