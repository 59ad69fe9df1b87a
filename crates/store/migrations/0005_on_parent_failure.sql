-- What a task does when a parent fails or is cancelled: 'run' runs it on partial inputs;
-- NULL is the default, 'fail' (issue 9, results through task graphs).
ALTER TABLE tasks ADD COLUMN on_parent_failure TEXT;
