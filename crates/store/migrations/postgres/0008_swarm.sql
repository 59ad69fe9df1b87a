-- Swarm broadcasts across hubs (crates/store/src/swarm.rs): the message, each other hub's
-- delivery report, and the replies it relays. Rows live while the broadcast waits; the hub that
-- sent it deletes them (with their reports) when it is done, and any hub's heartbeat deletes
-- those of hubs that are gone or whose wait ended long ago (`sent_at`, the database's clock).
CREATE TABLE swarm_messages (
    id         uuid PRIMARY KEY,
    grp        text NOT NULL,
    payload    text NOT NULL,
    origin     uuid NOT NULL,
    timeout_ms bigint NOT NULL,
    sent_at    bigint NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
);

CREATE TABLE swarm_deliveries (
    message_id uuid NOT NULL REFERENCES swarm_messages (id) ON DELETE CASCADE,
    hub        uuid NOT NULL,
    recipients uuid[] NOT NULL,
    PRIMARY KEY (message_id, hub)
);

CREATE TABLE swarm_replies (
    message_id uuid NOT NULL REFERENCES swarm_messages (id) ON DELETE CASCADE,
    agent_id   uuid NOT NULL,
    output     text NOT NULL,
    PRIMARY KEY (message_id, agent_id)
);
