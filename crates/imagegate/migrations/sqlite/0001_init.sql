-- Keys: only a SHA-256 of the secret is stored.
CREATE TABLE keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    policy      TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

-- Tasks: the durable record of every request, and the work queue.
-- Times in milliseconds; the API shows seconds.
CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    status           TEXT NOT NULL,
    mode             TEXT NOT NULL,
    model            TEXT NOT NULL,
    request          TEXT NOT NULL,
    result           TEXT,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    idempotency_key  TEXT,
    request_hash     TEXT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    completed_at     BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX tasks_idempotency ON tasks (owner, idempotency_key);
CREATE INDEX tasks_owner_id ON tasks (owner, id);
CREATE INDEX tasks_claim ON tasks (status, lease_expires_at, id);

-- Images: one row per stored original.
CREATE TABLE images (
    id            TEXT PRIMARY KEY,
    task_id       TEXT NOT NULL REFERENCES tasks (id),
    owner         TEXT NOT NULL,
    blob_key      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    bytes         BIGINT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    etag          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX images_task ON images (task_id);
CREATE INDEX images_expiry ON images (expires_at);
