-- Webhook delivery (design section 7): per-session order (seq), the outcome of the last attempt,
-- and the terminal states. state: pending | delivered | dead | skipped.
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS seq BIGSERIAL;
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS last_status INTEGER;
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS last_error TEXT;
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS delivered_at TIMESTAMPTZ;
ALTER TABLE webhook_outbox ADD COLUMN IF NOT EXISTS dead_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS webhook_outbox_queue ON webhook_outbox (session_id, state, seq);
CREATE INDEX IF NOT EXISTS webhook_outbox_done ON webhook_outbox (state, created_at);

-- One row per session: what a delivery worker locks (FOR UPDATE SKIP LOCKED) to own a session's queue.
CREATE TABLE IF NOT EXISTS webhook_cursors (
    session_id UUID PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE
);
INSERT INTO webhook_cursors (session_id) SELECT id FROM sessions ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION webhook_cursor_for_session() RETURNS trigger AS $$
BEGIN
    INSERT INTO webhook_cursors (session_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS webhook_cursor_on_session ON sessions;
CREATE TRIGGER webhook_cursor_on_session AFTER INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION webhook_cursor_for_session();
