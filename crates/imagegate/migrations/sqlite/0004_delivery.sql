-- Image delivery: converted variants (deleted with their original) and the retention sweeper.
CREATE TABLE image_variants (
    image_id    TEXT NOT NULL,
    blob_key    TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (image_id, blob_key)
);
ALTER TABLE images ADD COLUMN deleted_at BIGINT;
CREATE INDEX images_sweep ON images (deleted_at, expires_at);
