-- The PostgreSQL schema: the same tables as SQLite's migrations 1-8 arrive at, written once.
-- Times are milliseconds since the epoch (BIGINT) except images.expires_at (seconds), as on
-- SQLite; JSON documents stay TEXT (the gateway reads and writes them whole). Text sorts
-- bytewise (COLLATE "C"), as on SQLite: ids and cursors order the same on both.

-- Keys: only a SHA-256 of the secret is stored.
CREATE TABLE keys (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT COLLATE "C" NOT NULL,
    key_hash        TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix          TEXT COLLATE "C" NOT NULL,
    policy          TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT,
    webhook_secret  TEXT COLLATE "C",
    spent_usd       DOUBLE PRECISION NOT NULL DEFAULT 0,
    reserved_usd    DOUBLE PRECISION NOT NULL DEFAULT 0,
    export          TEXT COLLATE "C"
);

-- Tasks: the durable record of every request, and the work queue.
CREATE TABLE tasks (
    id               TEXT COLLATE "C" PRIMARY KEY,
    owner            TEXT COLLATE "C" NOT NULL,
    status           TEXT COLLATE "C" NOT NULL,
    mode             TEXT COLLATE "C" NOT NULL,
    model            TEXT COLLATE "C" NOT NULL,
    request          TEXT COLLATE "C" NOT NULL,
    result           TEXT COLLATE "C",
    error            TEXT COLLATE "C",
    attempts         BIGINT NOT NULL DEFAULT 0,
    idempotency_key  TEXT COLLATE "C",
    request_hash     TEXT COLLATE "C",
    -- The claim's fencing token while running.
    lease_owner      TEXT COLLATE "C",
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    completed_at     BIGINT,
    updated_at       BIGINT NOT NULL,
    webhook_url      TEXT COLLATE "C",
    webhook_events   TEXT COLLATE "C",
    cancel_requested BIGINT,
    reserved_usd     DOUBLE PRECISION NOT NULL DEFAULT 0,
    reserved_images  BIGINT NOT NULL DEFAULT 0,
    cost_usd         DOUBLE PRECISION,
    usage_day        TEXT COLLATE "C"
);
CREATE INDEX tasks_owner_id ON tasks (owner, id);
-- Queue and limit indexes hold only the rows they are for: a task that ends leaves them.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_running_lease ON tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_queued_owner ON tasks (owner, created_at, id) WHERE status = 'queued';
CREATE INDEX tasks_queued_order ON tasks (created_at, id) WHERE status = 'queued';
CREATE INDEX tasks_open_owner ON tasks (owner) WHERE status IN ('queued', 'running');

-- Round-robin across keys: the key whose last claim is oldest goes next. A key gets its row
-- with its first task (last_claim_ms 0: never claimed).
CREATE TABLE queue_owners (
    owner          TEXT COLLATE "C" PRIMARY KEY,
    last_claim_ms  BIGINT NOT NULL
);
CREATE INDEX queue_owners_order ON queue_owners (last_claim_ms, owner);

-- Images: one row per stored original; kept (deleted_at set) once swept.
CREATE TABLE images (
    id            TEXT COLLATE "C" PRIMARY KEY,
    task_id       TEXT COLLATE "C" NOT NULL REFERENCES tasks (id),
    owner         TEXT COLLATE "C" NOT NULL,
    blob_key      TEXT COLLATE "C" NOT NULL,
    content_type  TEXT COLLATE "C" NOT NULL,
    bytes         BIGINT NOT NULL,
    width         BIGINT NOT NULL,
    height        BIGINT NOT NULL,
    etag          TEXT COLLATE "C" NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    cost_usd      DOUBLE PRECISION NOT NULL DEFAULT 0,
    deleted_at    BIGINT
);
CREATE INDEX images_live_expiry ON images (expires_at) WHERE deleted_at IS NULL;

CREATE TABLE image_variants (
    image_id    TEXT COLLATE "C" NOT NULL,
    blob_key    TEXT COLLATE "C" NOT NULL,
    bytes       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (image_id, blob_key)
);

-- Owed webhooks, written in the same transaction as the task change they announce.
CREATE TABLE webhook_outbox (
    id                TEXT COLLATE "C" PRIMARY KEY,
    task_id           TEXT COLLATE "C" NOT NULL,
    owner             TEXT COLLATE "C" NOT NULL,
    event_type        TEXT COLLATE "C" NOT NULL,
    url               TEXT COLLATE "C" NOT NULL,
    payload           TEXT COLLATE "C" NOT NULL,
    status            TEXT COLLATE "C" NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    lease_owner       TEXT COLLATE "C",
    lease_expires_at  BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX webhook_outbox_pending ON webhook_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_outbox_task ON webhook_outbox (task_id);

CREATE TABLE webhook_attempts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id    TEXT COLLATE "C" NOT NULL,
    task_id       TEXT COLLATE "C" NOT NULL,
    event_type    TEXT COLLATE "C" NOT NULL,
    url           TEXT COLLATE "C" NOT NULL,
    attempted_at  BIGINT NOT NULL,
    status_code   BIGINT,
    error         TEXT COLLATE "C",
    latency_ms    BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_task ON webhook_attempts (task_id, id);

-- Images and cost per key, UTC day and model; reserved images count until settled.
CREATE TABLE usage_daily (
    owner      TEXT COLLATE "C" NOT NULL,
    day        TEXT COLLATE "C" NOT NULL,
    model      TEXT COLLATE "C" NOT NULL,
    images     BIGINT NOT NULL DEFAULT 0,
    cost_usd   DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, day, model)
);

-- Copies owed to the key's export destination, written with the images.
CREATE TABLE exports (
    image_id          TEXT COLLATE "C" PRIMARY KEY,
    task_id           TEXT COLLATE "C" NOT NULL,
    owner             TEXT COLLATE "C" NOT NULL,
    blob_key          TEXT COLLATE "C" NOT NULL,
    content_type      TEXT COLLATE "C" NOT NULL,
    object_name       TEXT COLLATE "C" NOT NULL,
    status            TEXT COLLATE "C" NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    lease_owner       TEXT COLLATE "C",
    lease_expires_at  BIGINT,
    bucket            TEXT COLLATE "C",
    object_key        TEXT COLLATE "C",
    last_error        TEXT COLLATE "C",
    exported_at       BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX exports_pending ON exports (next_attempt_at) WHERE status = 'pending';
CREATE INDEX exports_task ON exports (task_id);
