ALTER TABLE tasks ADD COLUMN features text;
CREATE TABLE models (
    name text PRIMARY KEY,
    bytes bytea NOT NULL,
    saved_at bigint NOT NULL
);
