-- Image inputs of a task (edits, reference images): stored before the task is written, with
-- the task's retention. The bytes are stored once per key (content-addressed by sha256), so
-- several inputs may share a blob: the sweep deletes a blob only when no live input wants it.
CREATE TABLE task_inputs (
    id            TEXT PRIMARY KEY,
    task_id       TEXT NOT NULL,
    owner         TEXT NOT NULL,
    position      BIGINT NOT NULL,
    blob_key      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    bytes         BIGINT NOT NULL,
    width         BIGINT NOT NULL,
    height        BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    deleted_at    BIGINT
);
CREATE INDEX task_inputs_task ON task_inputs (task_id, position);
CREATE INDEX task_inputs_live_expiry ON task_inputs (expires_at) WHERE deleted_at IS NULL;
CREATE INDEX task_inputs_live_blob ON task_inputs (blob_key) WHERE deleted_at IS NULL;
