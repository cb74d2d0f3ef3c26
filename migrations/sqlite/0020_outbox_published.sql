-- NATS JetStream publishing (issue 18): an event acknowledged by JetStream while it stays
-- pending for its webhook is not published again.
ALTER TABLE webhook_outbox ADD COLUMN published BOOLEAN NOT NULL DEFAULT 0;
