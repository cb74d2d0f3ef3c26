-- One row per media message (sent or received): WhatsApp's download info, and where the file
-- is kept once downloaded (storage_key in the media blob store).
CREATE TABLE IF NOT EXISTS media (
    id                      UUID PRIMARY KEY,
    session_id              UUID NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    msg_id                  TEXT NOT NULL,
    chat_jid                TEXT,
    from_me                 BOOLEAN NOT NULL,
    media_type              TEXT NOT NULL,
    mime_type               TEXT,
    file_size               BIGINT,
    file_name               TEXT,
    caption                 TEXT,
    push_name               TEXT,
    wa_direct_path          TEXT,
    wa_media_key            BYTEA,
    wa_file_sha256          BYTEA,
    wa_file_enc_sha256      BYTEA,
    wa_media_key_timestamp  BIGINT,
    width                   BIGINT,
    height                  BIGINT,
    duration                BIGINT,
    storage_key             TEXT,
    stored_at               TIMESTAMPTZ,
    thumbnail_key           TEXT,
    downloaded              BOOLEAN NOT NULL DEFAULT FALSE,
    download_error          TEXT,
    download_attempts       BIGINT NOT NULL DEFAULT 0,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL,
    UNIQUE (session_id, msg_id)
);
CREATE INDEX IF NOT EXISTS media_by_time ON media (session_id, created_at DESC);
CREATE INDEX IF NOT EXISTS media_pending ON media (session_id, created_at) WHERE NOT downloaded;
