-- Issue 13: the writer updates a task by its place in the table instead of by its id. `tasks`
-- was a WITHOUT ROWID table keyed by the 16-byte id: every lookup walked the B-tree comparing
-- blob keys, the slowest comparison SQLite has, and a task's life took about eight of them (its
-- insert, and a lookup and a rewrite at each of its two updates). Now `seq`, an integer key
-- (an alias of the rowid), holds the row, and `tasks_by_id` finds it by id for the readers. The
-- writer keeps each unfinished task's `seq` from its insert (`sqlite/write.rs`) and updates by
-- it, checking the id as well, so a row is never updated by a stale number. A declared INTEGER
-- PRIMARY KEY keeps its values through a VACUUM, which a bare rowid does not.
CREATE TABLE tasks_new (
    seq                INTEGER PRIMARY KEY,
    id                 BLOB NOT NULL,
    capability         TEXT NOT NULL,
    payload            TEXT NOT NULL,
    priority           INTEGER NOT NULL,
    max_attempts       INTEGER NOT NULL,
    timeout_ms         INTEGER NOT NULL,
    backoff_base_ms    INTEGER NOT NULL,
    backoff_max_ms     INTEGER NOT NULL,
    idempotency_key    TEXT,
    depends_on         TEXT,            -- comma-separated task ids, NULL when none
    status             TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    result             TEXT,            -- JSON output of the successful attempt
    error              TEXT,
    lease_until        INTEGER,         -- ms since epoch, while running
    not_before         INTEGER,         -- ms since epoch, while backing off
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    submitted_by       TEXT,
    on_parent_failure  TEXT,
    replicas           INTEGER,
    quorum             INTEGER,
    vote               TEXT,
    features           TEXT,
    finished_at        INTEGER,
    attempt_agent      BLOB,
    attempt_started_at INTEGER
);
-- In id order, so that `seq` follows the ids as it does for tasks inserted from now on.
INSERT INTO tasks_new (id, capability, payload, priority, max_attempts, timeout_ms,
    backoff_base_ms, backoff_max_ms, idempotency_key, depends_on, status, attempts, result,
    error, lease_until, not_before, created_at, updated_at, submitted_by, on_parent_failure,
    replicas, quorum, vote, features, finished_at, attempt_agent, attempt_started_at)
SELECT id, capability, payload, priority, max_attempts, timeout_ms,
    backoff_base_ms, backoff_max_ms, idempotency_key, depends_on, status, attempts, result,
    error, lease_until, not_before, created_at, updated_at, submitted_by, on_parent_failure,
    replicas, quorum, vote, features, finished_at, attempt_agent, attempt_started_at
FROM tasks ORDER BY id;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE UNIQUE INDEX tasks_by_id ON tasks (id);
CREATE UNIQUE INDEX tasks_by_idempotency_key ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_by_capability ON tasks (capability, id);
CREATE INDEX tasks_unfinished ON tasks (id) WHERE finished_at IS NULL;
CREATE INDEX tasks_failed ON tasks (status, id) WHERE status IN ('failed', 'cancelled');
