-- Contacts as WhatsApp tells us about them (push names, app-state contact names, business names,
-- about texts, pictures), and what later events change on a stored message: its reactions, its
-- edits and its deletion for everyone.
CREATE TABLE IF NOT EXISTS contacts (
    session_id     UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    jid            TEXT NOT NULL,
    push_name      TEXT,
    full_name      TEXT,
    first_name     TEXT,
    business_name  TEXT,
    about          TEXT,
    picture_id     TEXT,
    -- Unix seconds of the last change.
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (session_id, jid)
);

-- One reaction per sender and message; removing a reaction deletes its row.
CREATE TABLE IF NOT EXISTS message_reactions (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chat_jid    TEXT NOT NULL,
    msg_id      TEXT NOT NULL,
    sender_jid  TEXT NOT NULL,
    emoji       TEXT NOT NULL,
    -- Unix milliseconds of the reaction (its sender's clock).
    timestamp   BIGINT NOT NULL,
    PRIMARY KEY (session_id, chat_jid, msg_id, sender_jid)
);

-- Unix milliseconds of the last edit applied to `content`, and of the deletion for everyone.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS edited_at BIGINT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS deleted_at BIGINT;
CREATE INDEX IF NOT EXISTS messages_by_id ON messages (session_id, msg_id);
