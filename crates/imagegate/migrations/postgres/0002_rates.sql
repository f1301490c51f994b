-- Request rates shared by the replicas (GCRA: one theoretical arrival time per bucket, in µs).
-- UNLOGGED: a rate check writes no WAL and waits for no flush; after a crash of the server the
-- table comes back empty, which only forgets recent requests.
CREATE UNLOGGED TABLE rate_limits (
    bucket  TEXT COLLATE "C" PRIMARY KEY,
    tat_us  BIGINT NOT NULL
);
