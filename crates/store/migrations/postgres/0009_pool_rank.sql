-- The pool hands tasks out in the order of a hub's own ready queue: by rank, the readiness less
-- priority times the aging period (hive_core::queue::queue_key), so a long-pooled low-priority
-- task ages past fresh high-priority ones as it would in one hub, instead of waiting behind
-- every higher priority for ever. Tasks pooled before, and those an older hub still running
-- pools during a rolling upgrade (it names no rank), get the rank of the default aging (5 s).
ALTER TABLE pool ADD COLUMN rank bigint;
UPDATE pool SET rank = created_at - priority * 5000;
ALTER TABLE pool ALTER COLUMN rank SET NOT NULL;
CREATE FUNCTION hive_pool_rank() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.rank IS NULL THEN
        NEW.rank := NEW.created_at - NEW.priority * 5000;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER pool_rank BEFORE INSERT ON pool FOR EACH ROW EXECUTE FUNCTION hive_pool_rank();
DROP INDEX pool_by_rank;
CREATE INDEX pool_by_rank ON pool (capability, rank, task_id);
