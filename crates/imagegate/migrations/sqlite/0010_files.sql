-- Files uploaded through the OpenAI-compatible Files API (batch input, and the batch output and
-- error files the gateway writes). The bytes live in the blob store under `blob_key`.
CREATE TABLE files (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    filename    TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    blob_key    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT
);
CREATE INDEX files_owner ON files (owner, id);
