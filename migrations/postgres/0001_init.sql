-- Sessions, their settings and their webhook configuration.
CREATE TABLE IF NOT EXISTS sessions (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    api_key       TEXT NOT NULL,
    api_key_hash  TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL DEFAULT 'disconnected',
    device_jid    TEXT,
    phone         TEXT,
    push_name     TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS session_settings (
    id                          UUID PRIMARY KEY,
    session_id                  UUID NOT NULL UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    always_online               BOOLEAN NOT NULL DEFAULT FALSE,
    auto_reject_calls           BOOLEAN NOT NULL DEFAULT FALSE,
    sync_history                BOOLEAN NOT NULL DEFAULT TRUE,
    last_seen                   TEXT NOT NULL DEFAULT 'all',
    online                      TEXT NOT NULL DEFAULT 'all',
    profile_photo               TEXT NOT NULL DEFAULT 'all',
    status                      TEXT NOT NULL DEFAULT 'all',
    read_receipts               TEXT NOT NULL DEFAULT 'all',
    group_add                   TEXT NOT NULL DEFAULT 'all',
    call_add                    TEXT NOT NULL DEFAULT 'all',
    default_disappearing_timer  TEXT NOT NULL DEFAULT 'off',
    privacy_synced_at           TIMESTAMPTZ,
    created_at                  TIMESTAMPTZ NOT NULL,
    updated_at                  TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS webhooks (
    id          UUID PRIMARY KEY,
    session_id  UUID NOT NULL UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    events      JSONB NOT NULL DEFAULT '[]',
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    secret      TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
