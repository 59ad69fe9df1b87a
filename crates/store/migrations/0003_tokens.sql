-- API tokens: the secret itself is never stored, only its SHA-256.
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY NOT NULL,  -- the public part of the token, hex
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,              -- admin | client | agent | read
    capabilities TEXT,                       -- agent tokens: JSON list it may offer; NULL: any
    groups       TEXT,                       -- agent tokens: JSON list of swarms it may join
    secret_hash  BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
) WITHOUT ROWID;

-- Who submitted a task: the name of the token it came with (NULL with authentication off).
ALTER TABLE tasks ADD COLUMN submitted_by TEXT;
