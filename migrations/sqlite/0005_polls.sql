-- Polls this session sent or received: what a vote on them needs (the creator, the options
-- and the poll's message secret, which keys the vote's encryption).
CREATE TABLE IF NOT EXISTS polls (
    session_id        BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chat_jid          TEXT NOT NULL,
    msg_id            TEXT NOT NULL,
    creator_jid       TEXT NOT NULL,
    name              TEXT NOT NULL,
    -- JSON array of the option names, in order.
    options           TEXT NOT NULL,
    -- 0: any number of options.
    selectable_count  INTEGER NOT NULL,
    secret            BLOB NOT NULL,
    created_at        TEXT NOT NULL,
    PRIMARY KEY (session_id, chat_jid, msg_id)
);
