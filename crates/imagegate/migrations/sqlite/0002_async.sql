-- Async tasks: webhooks per task, cancel requests, fair claiming across keys, webhook outbox.
ALTER TABLE tasks ADD COLUMN webhook_url TEXT;
ALTER TABLE tasks ADD COLUMN webhook_events TEXT;
ALTER TABLE tasks ADD COLUMN cancel_requested BIGINT;
CREATE INDEX tasks_queue_owner ON tasks (status, owner, created_at);

-- Round-robin across keys: the key whose last claim is oldest goes next.
CREATE TABLE queue_owners (
    owner          TEXT PRIMARY KEY,
    last_claim_ms  BIGINT NOT NULL
);

ALTER TABLE keys ADD COLUMN webhook_secret TEXT;

-- Owed webhooks, written in the same transaction as the task change they announce.
CREATE TABLE webhook_outbox (
    id                TEXT PRIMARY KEY,
    task_id           TEXT NOT NULL,
    owner             TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    url               TEXT NOT NULL,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at);
CREATE INDEX webhook_outbox_task ON webhook_outbox (task_id);

CREATE TABLE webhook_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    url           TEXT NOT NULL,
    attempted_at  BIGINT NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    latency_ms    BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_task ON webhook_attempts (task_id, id);
