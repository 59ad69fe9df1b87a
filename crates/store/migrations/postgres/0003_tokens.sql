CREATE TABLE tokens (
    id           text PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    role         text NOT NULL,
    capabilities text,
    groups       text,
    secret_hash  bytea NOT NULL,
    created_at   bigint NOT NULL,
    revoked_at   bigint
);

ALTER TABLE tasks ADD COLUMN submitted_by text;
