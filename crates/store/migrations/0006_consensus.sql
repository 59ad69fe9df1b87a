-- Consensus tasks (issue 9): replicas run at once on distinct identities, the agreeing results
-- that decide, and the JSON pointer voted on; NULL for a plain task. A replica's result is kept
-- on its attempt (a plain task's is only the task's `result`), with the name of the agent asked
-- (its identity, which outlives the agent's row).
ALTER TABLE tasks ADD COLUMN replicas INTEGER;
ALTER TABLE tasks ADD COLUMN quorum INTEGER;
ALTER TABLE tasks ADD COLUMN vote TEXT;
ALTER TABLE attempts ADD COLUMN output TEXT;
ALTER TABLE attempts ADD COLUMN agent_name TEXT;
