-- Per-key limits and cost accounting: a reservation at submit, settled when the task ends.
ALTER TABLE tasks ADD COLUMN reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN reserved_images INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cost_usd DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN usage_day TEXT;

ALTER TABLE keys ADD COLUMN spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0;

-- Images and cost per key, UTC day and model; reserved images count until settled.
CREATE TABLE usage_daily (
    owner      TEXT NOT NULL,
    day        TEXT NOT NULL,
    model      TEXT NOT NULL,
    images     INTEGER NOT NULL DEFAULT 0,
    cost_usd   DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, day, model)
);
CREATE INDEX tasks_owner_status ON tasks (owner, status);
ALTER TABLE images ADD COLUMN cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0;
