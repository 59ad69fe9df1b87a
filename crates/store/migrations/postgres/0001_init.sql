-- PostgreSQL's schema follows SQLite's (../0001_init.sql), version for version: the same columns,
-- ids as uuid, times as milliseconds since the Unix epoch in bigint, JSON kept as text (returned
-- byte for byte as it was written).
--
-- Two differences, both so that a task's updates (status, attempts, lease, result) are HOT
-- updates, which rewrite no index entry: no index holds `status` (PostgreSQL would have to add
-- an entry to every index for each status change), and pages keep a fifth free for the new row
-- versions (fillfactor). Listing by status walks the primary key instead (docs/scaling.md).
CREATE TABLE tasks (
    id              uuid PRIMARY KEY,
    capability      text NOT NULL,
    payload         text NOT NULL,
    priority        integer NOT NULL,
    max_attempts    integer NOT NULL,
    timeout_ms      bigint NOT NULL,
    backoff_base_ms bigint NOT NULL,
    backoff_max_ms  bigint NOT NULL,
    idempotency_key text,
    depends_on      text,
    status          text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    result          text,
    error           text,
    lease_until     bigint,
    not_before      bigint,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
) WITH (fillfactor = 80);

CREATE UNIQUE INDEX tasks_by_idempotency_key ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_by_capability ON tasks (capability, id);

CREATE TABLE attempts (
    task_id    uuid NOT NULL,
    attempt    integer NOT NULL,
    agent_id   uuid,
    started_at bigint NOT NULL,
    ended_at   bigint,
    outcome    text,
    error      text,
    PRIMARY KEY (task_id, attempt)
) WITH (fillfactor = 80);

CREATE TABLE agents (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    capabilities   text NOT NULL,
    slots          integer NOT NULL,
    state          text NOT NULL,
    connected_at   bigint NOT NULL,
    last_heartbeat bigint NOT NULL,
    stats          text NOT NULL
);
