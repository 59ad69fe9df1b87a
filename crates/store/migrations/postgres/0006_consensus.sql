ALTER TABLE tasks ADD COLUMN replicas integer;
ALTER TABLE tasks ADD COLUMN quorum integer;
ALTER TABLE tasks ADD COLUMN vote text;
ALTER TABLE attempts ADD COLUMN output text;
ALTER TABLE attempts ADD COLUMN agent_name text;
