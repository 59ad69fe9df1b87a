ALTER TABLE tasks ADD COLUMN on_parent_failure text;
