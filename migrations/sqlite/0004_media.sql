-- One row per media message (sent or received): WhatsApp's download info, and where the file
-- is kept once downloaded (storage_key in the media blob store).
CREATE TABLE IF NOT EXISTS media (
    id                      BLOB PRIMARY KEY,
    session_id              BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    msg_id                  TEXT NOT NULL,
    chat_jid                TEXT,
    from_me                 INTEGER NOT NULL,
    media_type              TEXT NOT NULL,
    mime_type               TEXT,
    file_size               INTEGER,
    file_name               TEXT,
    caption                 TEXT,
    push_name               TEXT,
    wa_direct_path          TEXT,
    wa_media_key            BLOB,
    wa_file_sha256          BLOB,
    wa_file_enc_sha256      BLOB,
    wa_media_key_timestamp  INTEGER,
    width                   INTEGER,
    height                  INTEGER,
    duration                INTEGER,
    storage_key             TEXT,
    stored_at               TEXT,
    thumbnail_key           TEXT,
    downloaded              INTEGER NOT NULL DEFAULT 0,
    download_error          TEXT,
    download_attempts       INTEGER NOT NULL DEFAULT 0,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    UNIQUE (session_id, msg_id)
);
CREATE INDEX IF NOT EXISTS media_by_time ON media (session_id, created_at DESC);
CREATE INDEX IF NOT EXISTS media_pending ON media (session_id, created_at) WHERE NOT downloaded;
