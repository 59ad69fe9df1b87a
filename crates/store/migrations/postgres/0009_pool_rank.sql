-- The pool hands tasks out in the order of a hub's own ready queue: by rank, the readiness less
-- priority times the aging period (hive_core::queue::queue_key), so a long-pooled low-priority
-- task ages past fresh high-priority ones as it would in one hub, instead of waiting behind
-- every higher priority for ever. Tasks pooled before get the rank of the default aging (5 s).
ALTER TABLE pool ADD COLUMN rank bigint;
UPDATE pool SET rank = created_at - priority * 5000;
ALTER TABLE pool ALTER COLUMN rank SET NOT NULL;
DROP INDEX pool_by_rank;
CREATE INDEX pool_by_rank ON pool (capability, rank);
