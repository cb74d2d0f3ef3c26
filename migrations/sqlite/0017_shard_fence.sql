-- Epoch fencing (design section 4), kept for schema parity with Postgres: the epoch of the node
-- that owns each of the 1024 shards, and each session's shard (xxh3_64(name) % 1024, set by
-- create_session, backfilled at connect).
CREATE TABLE IF NOT EXISTS shard_fence (
    shard INTEGER PRIMARY KEY,
    epoch BIGINT NOT NULL DEFAULT 0
);
WITH RECURSIVE n(s) AS (SELECT 0 UNION ALL SELECT s + 1 FROM n WHERE s < 1023)
INSERT OR IGNORE INTO shard_fence (shard) SELECT s FROM n;

ALTER TABLE sessions ADD COLUMN shard INTEGER;
CREATE INDEX IF NOT EXISTS sessions_shard ON sessions (shard);
