-- The id of the HTTP request that submitted a task (its X-Request-Id): worker log lines of the
-- task carry it, whichever replica runs it, and the task shows it.
ALTER TABLE tasks ADD COLUMN request_id TEXT;
