-- Tokens that expire (`hive token create --expires-in 30d`): the moment, in milliseconds since
-- the epoch, from which the token is refused. NULL: it never expires (every token made before).
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
