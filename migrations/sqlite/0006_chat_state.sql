-- A chat's disappearing-messages timer in seconds (0: off), as the session last set it.
ALTER TABLE chats ADD COLUMN ephemeral_expiration INTEGER NOT NULL DEFAULT 0;
