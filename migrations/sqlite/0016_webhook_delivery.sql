-- Webhook delivery (design section 7): the outcome of the last attempt and the terminal states.
-- state: pending | delivered | dead | skipped. Per-session order is the table's rowid (a single
-- writer; new rows always get a larger one than any row still queued).
ALTER TABLE webhook_outbox ADD COLUMN last_status INTEGER;
ALTER TABLE webhook_outbox ADD COLUMN last_error TEXT;
ALTER TABLE webhook_outbox ADD COLUMN delivered_at TEXT;
ALTER TABLE webhook_outbox ADD COLUMN dead_at TEXT;
CREATE INDEX IF NOT EXISTS webhook_outbox_queue ON webhook_outbox (session_id, state);
CREATE INDEX IF NOT EXISTS webhook_outbox_done ON webhook_outbox (state, created_at);
