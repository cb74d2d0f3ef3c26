-- whatsapp-rust's device store (its storage `Backend`), one set of rows per session.
-- Every table is keyed by the session first, so deleting a session removes its keys.
-- Key material and records are opaque blobs; times are unix seconds as whatsapp-rust gives them.

-- Signal: identities, sessions, pre-keys, signed pre-keys, sender keys.
CREATE TABLE IF NOT EXISTS wa_identities (
    session_id    UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    address       TEXT NOT NULL,
    identity_key  BYTEA NOT NULL,
    PRIMARY KEY (session_id, address)
);

CREATE TABLE IF NOT EXISTS wa_signal_sessions (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    address     TEXT NOT NULL,
    record      BYTEA NOT NULL,
    PRIMARY KEY (session_id, address)
);

CREATE TABLE IF NOT EXISTS wa_prekeys (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    id          BIGINT NOT NULL,
    record      BYTEA NOT NULL,
    uploaded    BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (session_id, id)
);

CREATE TABLE IF NOT EXISTS wa_signed_prekeys (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    id          BIGINT NOT NULL,
    record      BYTEA NOT NULL,
    PRIMARY KEY (session_id, id)
);

CREATE TABLE IF NOT EXISTS wa_sender_keys (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    address     TEXT NOT NULL,
    record      BYTEA NOT NULL,
    PRIMARY KEY (session_id, address)
);

-- App state sync: keys (seq orders them by when they were stored), versions, mutation MACs.
CREATE TABLE IF NOT EXISTS wa_app_state_keys (
    session_id   UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    key_id       BYTEA NOT NULL,
    key_data     BYTEA NOT NULL,
    fingerprint  BYTEA NOT NULL,
    ts           BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    PRIMARY KEY (session_id, key_id)
);

CREATE TABLE IF NOT EXISTS wa_app_state_versions (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    state       JSONB NOT NULL,
    PRIMARY KEY (session_id, name)
);

CREATE TABLE IF NOT EXISTS wa_app_state_mutation_macs (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    index_mac   BYTEA NOT NULL,
    value_mac   BYTEA NOT NULL,
    version     BIGINT NOT NULL,
    PRIMARY KEY (session_id, name, index_mac)
);

-- Protocol: sender-key distribution per device, LID/PN mappings (seq: order of writing),
-- retry base keys, device lists, group metadata, trusted-contact tokens, sent messages kept for
-- retries, the pending inbound buffer.
CREATE TABLE IF NOT EXISTS wa_sender_key_devices (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    group_jid   TEXT NOT NULL,
    device_jid  TEXT NOT NULL,
    has_key     BOOLEAN NOT NULL,
    PRIMARY KEY (session_id, group_jid, device_jid)
);
CREATE INDEX IF NOT EXISTS wa_sender_key_devices_device ON wa_sender_key_devices (session_id, device_jid);

CREATE TABLE IF NOT EXISTS wa_lid_pn_mappings (
    session_id       UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    lid              TEXT NOT NULL,
    phone_number     TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    learning_source  TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    PRIMARY KEY (session_id, lid)
);
CREATE INDEX IF NOT EXISTS wa_lid_pn_mappings_phone ON wa_lid_pn_mappings (session_id, phone_number, seq);

CREATE TABLE IF NOT EXISTS wa_base_keys (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    address     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    base_key    BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (session_id, address, message_id)
);

CREATE TABLE IF NOT EXISTS wa_device_lists (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    devices     JSONB NOT NULL,
    ts          BIGINT NOT NULL,
    phash       TEXT,
    raw_id      BIGINT,
    PRIMARY KEY (session_id, user_id)
);

CREATE TABLE IF NOT EXISTS wa_group_metadata (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    group_jid   TEXT NOT NULL,
    info        BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (session_id, group_jid)
);

CREATE TABLE IF NOT EXISTS wa_tc_tokens (
    session_id        UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    jid               TEXT NOT NULL,
    token             BYTEA NOT NULL,
    token_timestamp   BIGINT NOT NULL,
    sender_timestamp  BIGINT,
    PRIMARY KEY (session_id, jid)
);

CREATE TABLE IF NOT EXISTS wa_sent_messages (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chat_jid    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    payload     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (session_id, chat_jid, message_id)
);
CREATE INDEX IF NOT EXISTS wa_sent_messages_created ON wa_sent_messages (session_id, created_at);

CREATE TABLE IF NOT EXISTS wa_pending_inbound (
    session_id   UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chat         TEXT NOT NULL,
    sender       TEXT NOT NULL,
    id           TEXT NOT NULL,
    message      BYTEA NOT NULL,
    inserted_at  BIGINT NOT NULL,
    PRIMARY KEY (session_id, chat, sender, id)
);

-- Message secrets (replies, reactions, poll votes, edits); expires_at 0 means never.
CREATE TABLE IF NOT EXISTS wa_msg_secrets (
    session_id  UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chat        TEXT NOT NULL,
    sender      TEXT NOT NULL,
    msg_id      TEXT NOT NULL,
    secret      BYTEA NOT NULL,
    expires_at  BIGINT NOT NULL,
    message_ts  BIGINT NOT NULL,
    PRIMARY KEY (session_id, chat, sender, msg_id)
);
CREATE INDEX IF NOT EXISTS wa_msg_secrets_expiry ON wa_msg_secrets (session_id, expires_at);

-- The device itself (keys, JIDs, counters): whatsapp-rust's serde form of `Device`.
-- create_count: how many times whatsapp-rust asked to create it.
CREATE TABLE IF NOT EXISTS wa_devices (
    session_id    UUID PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    data          JSONB NOT NULL,
    create_count  BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL
);
