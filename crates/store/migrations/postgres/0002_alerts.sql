CREATE TABLE alert_events (
    seq       bigserial PRIMARY KEY,
    rule      text NOT NULL,
    state     text NOT NULL,
    severity  text NOT NULL,
    value     double precision,
    threshold double precision NOT NULL,
    message   text NOT NULL,
    at        bigint NOT NULL
);
