-- Epoch fencing (design section 4): the epoch of the node that owns each of the 1024 shards.
-- A new owner raises it (UPDATE ... WHERE epoch < $new); every durable write of a session
-- checks, in its transaction, that the epoch of its shard is the one its node holds.
CREATE TABLE IF NOT EXISTS shard_fence (
    shard INTEGER PRIMARY KEY,
    epoch BIGINT NOT NULL DEFAULT 0
);
INSERT INTO shard_fence (shard) SELECT s FROM generate_series(0, 1023) AS s ON CONFLICT DO NOTHING;

-- The session's shard, xxh3_64(name) % 1024: set by create_session, backfilled at connect
-- (the hash is computed in Rust).
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS shard INTEGER;
CREATE INDEX IF NOT EXISTS sessions_shard ON sessions (shard);
