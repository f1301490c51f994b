-- Export to the customer's bucket: a destination per key, and one owed copy per image, written
-- in the same transaction as the image (so a completed image is never left unexported).
ALTER TABLE keys ADD COLUMN export TEXT;

CREATE TABLE exports (
    image_id          TEXT PRIMARY KEY,
    task_id           TEXT NOT NULL,
    owner             TEXT NOT NULL,
    blob_key          TEXT NOT NULL,
    content_type      TEXT NOT NULL,
    -- Name of the object under the destination's prefix: {task_id}-{index}.{ext}
    object_name       TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    -- Where it landed: bucket and full object key, set on success.
    bucket            TEXT,
    object_key        TEXT,
    last_error        TEXT,
    exported_at       BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX exports_due ON exports (status, next_attempt_at);
CREATE INDEX exports_task ON exports (task_id);
