-- The history of alerts: every time a rule started or stopped firing.
CREATE TABLE alert_events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    rule      TEXT NOT NULL,
    state     TEXT NOT NULL,      -- firing | resolved
    severity  TEXT NOT NULL,
    value     REAL,               -- the metric when the state changed
    threshold REAL NOT NULL,
    message   TEXT NOT NULL,
    at        INTEGER NOT NULL    -- milliseconds since the Unix epoch
);
