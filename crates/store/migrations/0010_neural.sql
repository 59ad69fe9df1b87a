-- The neural routing model (issue 12): a task's numeric hints for it, as a JSON object of numbers
-- (NULL for none), and the model itself, saved every few seconds as one blob per name.
ALTER TABLE tasks ADD COLUMN features TEXT;
CREATE TABLE models (
    name TEXT PRIMARY KEY,
    bytes BLOB NOT NULL,
    saved_at INTEGER NOT NULL
);
