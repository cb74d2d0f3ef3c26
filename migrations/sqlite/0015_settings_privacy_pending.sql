-- Settings stored while the session was not connected and not pushed to WhatsApp yet: the API
-- field names (`lastSeen`, `defaultDisappearingTimer`, ...), comma-separated; pushed and
-- cleared at the next connect.
ALTER TABLE session_settings ADD COLUMN privacy_pending TEXT NOT NULL DEFAULT '';
