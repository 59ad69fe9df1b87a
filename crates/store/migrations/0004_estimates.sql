-- What routing learned per agent identity (the worker's name) and capability: the latest
-- estimate, rewritten at most once per scheduler turn (hive_core::estimate).
CREATE TABLE estimates (
    identity     TEXT NOT NULL,
    capability   TEXT NOT NULL,
    successes    REAL NOT NULL,     -- faded counts, as of updated_at
    failures     REAL NOT NULL,
    latency_ms   REAL NOT NULL,
    deviation_ms REAL NOT NULL,
    samples      INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,  -- ms since epoch
    assigned     REAL NOT NULL,     -- faded count of assignments, as of assigned_at
    assigned_at  INTEGER NOT NULL,
    PRIMARY KEY (identity, capability)
) WITHOUT ROWID;
