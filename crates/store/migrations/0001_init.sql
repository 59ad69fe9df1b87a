-- Tasks, keyed by their 16-byte UUIDv7 id (time-ordered, so inserts append to the key order).
CREATE TABLE tasks (
    id              BLOB PRIMARY KEY NOT NULL,
    capability      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    max_attempts    INTEGER NOT NULL,
    timeout_ms      INTEGER NOT NULL,
    backoff_base_ms INTEGER NOT NULL,
    backoff_max_ms  INTEGER NOT NULL,
    idempotency_key TEXT,
    depends_on      TEXT,               -- comma-separated task ids, NULL when none
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    result          TEXT,               -- JSON output of the successful attempt
    error           TEXT,
    lease_until     INTEGER,            -- ms since epoch, while running
    not_before      INTEGER,            -- ms since epoch, while backing off
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE UNIQUE INDEX tasks_by_idempotency_key ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_by_status ON tasks (status, id);
CREATE INDEX tasks_by_capability ON tasks (capability, id);

-- One row per attempt; written when it starts, completed when it ends.
CREATE TABLE attempts (
    task_id    BLOB NOT NULL,
    attempt    INTEGER NOT NULL,
    agent_id   BLOB,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    outcome    TEXT,
    error      TEXT,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;

-- Agents as of their last lifecycle change (connect, drain, offline).
CREATE TABLE agents (
    id             BLOB PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    capabilities   TEXT NOT NULL,       -- JSON object: name -> level
    slots          INTEGER NOT NULL,
    state          TEXT NOT NULL,
    connected_at   INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    stats          TEXT NOT NULL        -- JSON object: capability -> counters
) WITHOUT ROWID;
