-- Batches (OpenAI's Batch API): a file of request lines, each line run as a task of its own
-- (`tasks.batch_id`). A batch is driven through its states by whichever process holds its
-- lease; `next_check_at` says when it next needs looking at.
CREATE TABLE batches (
    id                 TEXT PRIMARY KEY,
    owner              TEXT NOT NULL,
    endpoint           TEXT NOT NULL,
    input_file_id      TEXT NOT NULL,
    completion_window  TEXT NOT NULL,
    status             TEXT NOT NULL,
    metadata           TEXT,
    errors             TEXT,
    webhook_url        TEXT,
    total              BIGINT NOT NULL DEFAULT 0,
    completed          BIGINT NOT NULL DEFAULT 0,
    failed             BIGINT NOT NULL DEFAULT 0,
    cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0,
    output_file_id     TEXT,
    error_file_id      TEXT,
    created_at         BIGINT NOT NULL,
    in_progress_at     BIGINT,
    finalizing_at      BIGINT,
    completed_at       BIGINT,
    failed_at          BIGINT,
    expired_at         BIGINT,
    cancelling_at      BIGINT,
    cancelled_at       BIGINT,
    expires_at         BIGINT NOT NULL,
    lease_owner        TEXT,
    lease_until        BIGINT,
    next_check_at      BIGINT NOT NULL
);
CREATE INDEX batches_owner ON batches (owner, id);
CREATE INDEX batches_due ON batches (next_check_at)
    WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling');

-- One row per input line: the task it became, or why it could not (a bad body).
CREATE TABLE batch_lines (
    batch_id   TEXT NOT NULL,
    line       BIGINT NOT NULL,
    custom_id  TEXT NOT NULL,
    task_id    TEXT,
    error      TEXT,
    PRIMARY KEY (batch_id, line)
);

ALTER TABLE tasks ADD COLUMN batch_id TEXT;
ALTER TABLE tasks ADD COLUMN custom_id TEXT;
-- 0: realtime work; 1: batch lines, claimed only when no realtime task waits; 2: batch lines
-- held for an upstream batch job (never claimed by workers).
ALTER TABLE tasks ADD COLUMN lane BIGINT NOT NULL DEFAULT 0;
CREATE INDEX tasks_batch ON tasks (batch_id, status) WHERE batch_id IS NOT NULL;
DROP INDEX tasks_queued_owner;
DROP INDEX tasks_queued_order;
CREATE INDEX tasks_queued_owner ON tasks (lane, owner, created_at, id) WHERE status = 'queued';
CREATE INDEX tasks_queued_order ON tasks (lane, created_at, id) WHERE status = 'queued';

-- Upstream batch jobs (Gemini's Batch API): a job carries some of a batch's lines (tasks in
-- lane 2, which workers never claim: the job holds them, `tasks.job_id`). Written, with its
-- tasks taken, before any upstream call; each step that cannot be taken back (the upload,
-- the creation) is recorded as it is made, so a restart polls the same upstream job and never
-- creates a second one for the same lines.
CREATE TABLE upstream_jobs (
    id             TEXT PRIMARY KEY,
    -- NULL for a job of flex tasks (deadline routing), pooled across keys.
    batch_id       TEXT,
    owner          TEXT NOT NULL,
    channel        TEXT NOT NULL,
    model          TEXT NOT NULL,
    state          TEXT NOT NULL,
    input_file     TEXT,
    upstream_name  TEXT,
    error          TEXT,
    lines          BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    lease_owner    TEXT,
    lease_until    BIGINT,
    next_check_at  BIGINT NOT NULL
);
CREATE INDEX upstream_jobs_due ON upstream_jobs (next_check_at) WHERE state NOT IN ('done');
CREATE INDEX upstream_jobs_batch ON upstream_jobs (batch_id);
ALTER TABLE tasks ADD COLUMN job_id TEXT;
CREATE INDEX tasks_job ON tasks (job_id) WHERE job_id IS NOT NULL;
-- A flex task's deadline (Unix seconds): it falls back to a realtime call in time to meet it.
ALTER TABLE tasks ADD COLUMN deadline_at BIGINT;
CREATE INDEX tasks_flex ON tasks (deadline_at) WHERE lane = 2 AND batch_id IS NULL AND status IN ('queued', 'running');

-- Files past their expiry (batch output files follow their key's retention) are swept.
CREATE INDEX files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL;
