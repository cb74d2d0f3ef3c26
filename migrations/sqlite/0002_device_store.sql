-- whatsapp-rust's device store (its storage `Backend`), one set of rows per session.
-- Every table is keyed by the session first, so deleting a session removes its keys.
-- As in 0001: UUIDs are 16-byte BLOBs, booleans INTEGER, JSON TEXT (as sqlx encodes them).
-- Key material and records are opaque blobs; times are unix seconds as whatsapp-rust gives them.

-- Signal: identities, sessions, pre-keys, signed pre-keys, sender keys.
CREATE TABLE IF NOT EXISTS wa_identities (
    session_id    BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    address       TEXT NOT NULL,
    identity_key  BLOB NOT NULL,
    PRIMARY KEY (session_id, address)
);

CREATE TABLE IF NOT EXISTS wa_signal_sessions (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    address     TEXT NOT NULL,
    record      BLOB NOT NULL,
    PRIMARY KEY (session_id, address)
);

CREATE TABLE IF NOT EXISTS wa_prekeys (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    id          INTEGER NOT NULL,
    record      BLOB NOT NULL,
    uploaded    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, id)
);

CREATE TABLE IF NOT EXISTS wa_signed_prekeys (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    id          INTEGER NOT NULL,
    record      BLOB NOT NULL,
    PRIMARY KEY (session_id, id)
);

CREATE TABLE IF NOT EXISTS wa_sender_keys (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    address     TEXT NOT NULL,
    record      BLOB NOT NULL,
    PRIMARY KEY (session_id, address)
);

-- App state sync: keys (seq orders them by when they were stored), versions, mutation MACs.
CREATE TABLE IF NOT EXISTS wa_app_state_keys (
    session_id   BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    key_id       BLOB NOT NULL,
    key_data     BLOB NOT NULL,
    fingerprint  BLOB NOT NULL,
    ts           INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (session_id, key_id)
);

CREATE TABLE IF NOT EXISTS wa_app_state_versions (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    PRIMARY KEY (session_id, name)
);

CREATE TABLE IF NOT EXISTS wa_app_state_mutation_macs (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    index_mac   BLOB NOT NULL,
    value_mac   BLOB NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (session_id, name, index_mac)
);

-- Protocol: sender-key distribution per device, LID/PN mappings (seq: order of writing),
-- retry base keys, device lists, group metadata, trusted-contact tokens, sent messages kept for
-- retries, the pending inbound buffer.
CREATE TABLE IF NOT EXISTS wa_sender_key_devices (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    group_jid   TEXT NOT NULL,
    device_jid  TEXT NOT NULL,
    has_key     INTEGER NOT NULL,
    PRIMARY KEY (session_id, group_jid, device_jid)
);
CREATE INDEX IF NOT EXISTS wa_sender_key_devices_device ON wa_sender_key_devices (session_id, device_jid);

CREATE TABLE IF NOT EXISTS wa_lid_pn_mappings (
    session_id       BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    lid              TEXT NOT NULL,
    phone_number     TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    learning_source  TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    PRIMARY KEY (session_id, lid)
);
CREATE INDEX IF NOT EXISTS wa_lid_pn_mappings_phone ON wa_lid_pn_mappings (session_id, phone_number, seq);

CREATE TABLE IF NOT EXISTS wa_base_keys (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    address     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    base_key    BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (session_id, address, message_id)
);

CREATE TABLE IF NOT EXISTS wa_device_lists (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    devices     TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    phash       TEXT,
    raw_id      INTEGER,
    PRIMARY KEY (session_id, user_id)
);

CREATE TABLE IF NOT EXISTS wa_group_metadata (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    group_jid   TEXT NOT NULL,
    info        BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (session_id, group_jid)
);

CREATE TABLE IF NOT EXISTS wa_tc_tokens (
    session_id        BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    jid               TEXT NOT NULL,
    token             BLOB NOT NULL,
    token_timestamp   INTEGER NOT NULL,
    sender_timestamp  INTEGER,
    PRIMARY KEY (session_id, jid)
);

CREATE TABLE IF NOT EXISTS wa_sent_messages (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chat_jid    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    payload     BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (session_id, chat_jid, message_id)
);
CREATE INDEX IF NOT EXISTS wa_sent_messages_created ON wa_sent_messages (session_id, created_at);

CREATE TABLE IF NOT EXISTS wa_pending_inbound (
    session_id   BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chat         TEXT NOT NULL,
    sender       TEXT NOT NULL,
    id           TEXT NOT NULL,
    message      BLOB NOT NULL,
    inserted_at  INTEGER NOT NULL,
    PRIMARY KEY (session_id, chat, sender, id)
);

-- Message secrets (replies, reactions, poll votes, edits); expires_at 0 means never.
CREATE TABLE IF NOT EXISTS wa_msg_secrets (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chat        TEXT NOT NULL,
    sender      TEXT NOT NULL,
    msg_id      TEXT NOT NULL,
    secret      BLOB NOT NULL,
    expires_at  INTEGER NOT NULL,
    message_ts  INTEGER NOT NULL,
    PRIMARY KEY (session_id, chat, sender, msg_id)
);
CREATE INDEX IF NOT EXISTS wa_msg_secrets_expiry ON wa_msg_secrets (session_id, expires_at);

-- The device itself (keys, JIDs, counters): whatsapp-rust's serde form of `Device`.
-- create_count: how many times whatsapp-rust asked to create it.
CREATE TABLE IF NOT EXISTS wa_devices (
    session_id    BLOB PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    data          TEXT NOT NULL,
    create_count  INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL
);
