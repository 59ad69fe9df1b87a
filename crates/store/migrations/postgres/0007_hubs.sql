-- Several hubs on one database (docs/scaling.md): each hub holds a lease, renewed by its
-- heartbeat, on the tasks it owns (tasks.hub); queued tasks no hub holds wait in `pool`, from
-- which hubs claim with FOR UPDATE SKIP LOCKED. Times are the database's clock (milliseconds
-- since the Unix epoch), so hubs whose clocks differ agree on whose lease ended.
CREATE TABLE hubs (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    address      text NOT NULL,
    started_at   bigint NOT NULL,
    heartbeat_at bigint NOT NULL,
    lease_until  bigint NOT NULL,
    agents       integer NOT NULL DEFAULT 0,
    slots        integer NOT NULL DEFAULT 0,
    tasks        integer NOT NULL DEFAULT 0,
    queued       integer NOT NULL DEFAULT 0
);
CREATE INDEX hubs_by_name ON hubs (name);

-- No index: an index on `hub` would not stop updates of other columns being HOT, but the
-- scans that need it (adopting a lost hub's tasks) are rare, and every insert would pay for it.
ALTER TABLE tasks ADD COLUMN hub uuid;
ALTER TABLE agents ADD COLUMN hub uuid;

-- A small table of its own rather than an index on tasks.status: claiming reads and deletes
-- here, and the tasks' own updates stay HOT.
CREATE TABLE pool (
    task_id    uuid PRIMARY KEY,
    capability text NOT NULL,
    priority   integer NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX pool_by_rank ON pool (capability, priority DESC, created_at);

-- Waiting tasks whose parents include one another hub held when they were submitted: no hub
-- holds them until every parent ended; then one takes them over (see hubs.rs, adopt_unparked).
CREATE TABLE parked (
    task_id uuid PRIMARY KEY,
    parents uuid[] NOT NULL
);

-- Tasks active before hubs existed belong to a hub whose lease has long ended: the first hub
-- to renew its lease adopts them, as it would a lost hub's. Whoever was connected then is gone.
INSERT INTO hubs (id, name, address, started_at, heartbeat_at, lease_until)
    SELECT '00000000-0000-0000-0000-000000000000', 'before-hubs', '', 0, 0, 0
    WHERE EXISTS (SELECT 1 FROM tasks WHERE status IN ('waiting', 'queued', 'running'));
UPDATE tasks SET hub = '00000000-0000-0000-0000-000000000000'
    WHERE status IN ('waiting', 'queued', 'running');
UPDATE agents SET state = 'offline' WHERE state <> 'offline';

-- Every commit of a hub's writer runs this first. It holds a KEY SHARE lock on the hub's row
-- until the commit, so a hub adopting this one's tasks (which deletes the row, FOR UPDATE)
-- waits for the commit, and after the row is gone every commit of this hub fails: a hub that
-- lost its lease writes nothing more.
CREATE FUNCTION hive_fence(hub_id uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM hubs WHERE id = hub_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'hub % no longer holds its lease', hub_id USING ERRCODE = 'H0001';
    END IF;
END
$$;
