-- The latest vote of each voter on a poll this session knows (migration 0005), decrypted with
-- the poll's secret: the chosen option names (a withdrawn vote: an empty array).
CREATE TABLE IF NOT EXISTS poll_votes (
    session_id    BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chat_jid      TEXT NOT NULL,
    poll_msg_id   TEXT NOT NULL,
    -- Non-AD JID of the voter (their phone JID when known).
    voter_jid     TEXT NOT NULL,
    -- JSON array of the chosen option names.
    options       TEXT NOT NULL,
    vote_msg_id   TEXT NOT NULL,
    -- Unix seconds of the vote.
    voted_at      INTEGER NOT NULL,
    PRIMARY KEY (session_id, chat_jid, poll_msg_id, voter_jid)
);
