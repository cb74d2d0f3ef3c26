-- A chat's disappearing-messages timer in seconds (0: off), as the session last set it.
ALTER TABLE chats ADD COLUMN IF NOT EXISTS ephemeral_expiration BIGINT NOT NULL DEFAULT 0;
