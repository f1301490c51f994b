-- Request rates shared by the replicas (GCRA: one theoretical arrival time per bucket, in µs).
-- UNLOGGED: a rate check writes no WAL and waits for no flush; after a crash of the server the
-- table comes back empty, which only forgets recent requests.
CREATE UNLOGGED TABLE rate_limits (
    bucket  TEXT COLLATE "C" PRIMARY KEY,
    tat_us  BIGINT NOT NULL
);

-- Call slots of an upstream channel shared by the replicas (its max_concurrency for the
-- cluster): a slot is held by one call until released, or until its lease runs out when the
-- replica holding it died. UNLOGGED for the same reason.
CREATE UNLOGGED TABLE channel_slots (
    channel     TEXT COLLATE "C" NOT NULL,
    slot        BIGINT NOT NULL,
    holder      TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (channel, slot)
);
