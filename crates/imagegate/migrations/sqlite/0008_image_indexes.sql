-- Images are looked up by id, and by the sweeper for the live ones past their expiry. One
-- partial index serves the sweeper (a swept image leaves it); `images_expiry` repeated it and
-- `images_task` served no query (tasks are never deleted). Two fewer indexes to write per image.
DROP INDEX images_expiry;
DROP INDEX images_task;
DROP INDEX images_sweep;
CREATE INDEX images_live_expiry ON images (expires_at) WHERE deleted_at IS NULL;
