-- Chats and messages as the API lists them, and the webhook outbox written in the same
-- transaction as the message it announces.
CREATE TABLE IF NOT EXISTS messages (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chat_jid    TEXT NOT NULL,
    msg_id      TEXT NOT NULL,
    sender_jid  TEXT,
    push_name   TEXT,
    timestamp   INTEGER NOT NULL,
    type        TEXT NOT NULL,
    media_type  TEXT,
    content     TEXT,
    from_me     INTEGER NOT NULL,
    is_group    INTEGER NOT NULL,
    quoted_id   TEXT,
    status      TEXT NOT NULL,
    -- When we stored it (µs): orders messages that share a second.
    stored_us   INTEGER NOT NULL,
    PRIMARY KEY (session_id, chat_jid, msg_id)
);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (session_id, chat_jid, timestamp DESC, stored_us DESC);

CREATE TABLE IF NOT EXISTS chats (
    session_id              BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    jid                     TEXT NOT NULL,
    name                    TEXT,
    unread_count            INTEGER NOT NULL DEFAULT 0,
    marked_as_unread        INTEGER NOT NULL DEFAULT 0,
    conversation_timestamp  INTEGER,
    PRIMARY KEY (session_id, jid)
);

CREATE TABLE IF NOT EXISTS webhook_outbox (
    id               BLOB PRIMARY KEY,
    session_id       BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    event            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    next_attempt_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox (session_id, created_at);
