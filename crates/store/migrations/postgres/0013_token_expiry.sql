-- Tokens that expire: see ../0013_token_expiry.sql. NULL: it never expires.
ALTER TABLE tokens ADD COLUMN expires_at bigint;
