-- Sessions, their settings and their webhook configuration.
-- UUIDs are 16-byte BLOBs, times RFC 3339 TEXT, booleans INTEGER (as sqlx encodes them).
CREATE TABLE IF NOT EXISTS sessions (
    id            BLOB PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    api_key       TEXT NOT NULL,
    api_key_hash  TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL DEFAULT 'disconnected',
    device_jid    TEXT,
    phone         TEXT,
    push_name     TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS session_settings (
    id                          BLOB PRIMARY KEY,
    session_id                  BLOB NOT NULL UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    always_online               INTEGER NOT NULL DEFAULT 0,
    auto_reject_calls           INTEGER NOT NULL DEFAULT 0,
    sync_history                INTEGER NOT NULL DEFAULT 1,
    last_seen                   TEXT NOT NULL DEFAULT 'all',
    online                      TEXT NOT NULL DEFAULT 'all',
    profile_photo               TEXT NOT NULL DEFAULT 'all',
    status                      TEXT NOT NULL DEFAULT 'all',
    read_receipts               TEXT NOT NULL DEFAULT 'all',
    group_add                   TEXT NOT NULL DEFAULT 'all',
    call_add                    TEXT NOT NULL DEFAULT 'all',
    default_disappearing_timer  TEXT NOT NULL DEFAULT 'off',
    privacy_synced_at           TEXT,
    created_at                  TEXT NOT NULL,
    updated_at                  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS webhooks (
    id          BLOB PRIMARY KEY,
    session_id  BLOB NOT NULL UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL DEFAULT '[]',
    enabled     INTEGER NOT NULL DEFAULT 1,
    secret      TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
