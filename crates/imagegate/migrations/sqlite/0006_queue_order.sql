-- Queue position counts the queued tasks ahead of one: an index in queue order keeps that a
-- short range scan.
CREATE INDEX tasks_queue_order ON tasks (status, created_at, id);
