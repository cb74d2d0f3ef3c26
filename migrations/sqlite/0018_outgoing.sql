-- Sends in flight (issue 15). A message the API sends is journaled here, under an id of its
-- own (whatsapp-rust names some messages only once they are sent), before it goes on the
-- wire; marked 'sent' (with its message id) if WhatsApp took it but recording it failed; and
-- deleted once it is recorded (`messages`, or the reaction, edit, revoke or vote applied,
-- with its `message.sent` event). The session records the 'sent' rows left behind and drops
-- old 'sending' ones, whose request never answered success. `message` is the wa::Message
-- protobuf, `vote` the JSON of the poll vote the message casts.
CREATE TABLE IF NOT EXISTS outgoing_messages (
    id         BLOB PRIMARY KEY,
    session_id BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    msg_id     TEXT,
    chat_jid   TEXT NOT NULL,
    message    BLOB NOT NULL,
    vote       TEXT,
    state      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outgoing_messages_session ON outgoing_messages (session_id, created_at);
