CREATE TABLE estimates (
    identity     text NOT NULL,
    capability   text NOT NULL,
    successes    double precision NOT NULL,
    failures     double precision NOT NULL,
    latency_ms   double precision NOT NULL,
    deviation_ms double precision NOT NULL,
    samples      bigint NOT NULL,
    updated_at   bigint NOT NULL,
    assigned     double precision NOT NULL,
    assigned_at  bigint NOT NULL,
    PRIMARY KEY (identity, capability)
);
