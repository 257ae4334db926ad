-- Telegram (the SQLite twin is migrations/sqlite/0002_telegram.sql; keep the two in step):
-- supervisors' chats, one-time invite links, and what a caregiver reachable on two channels
-- prefers. Caregivers' chats are in caregiver_links (0001).

-- Which supervisor a Telegram chat belongs to: alerts go there instead of by SMS.
CREATE TABLE supervisor_links (
    channel       TEXT NOT NULL,
    address       TEXT NOT NULL,
    supervisor_id BIGINT NOT NULL REFERENCES supervisors (id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel, address)
);
CREATE INDEX supervisor_links_supervisor ON supervisor_links (supervisor_id);

-- One-time invite links (`carebot invite PHONE`): a code that links the chat that opens it to
-- one caregiver or supervisor, once, before it expires. Only a hash of the code is stored, so a
-- copy of the database hands nobody a working link.
CREATE TABLE invites (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code_sha256   TEXT NOT NULL UNIQUE,
    channel       TEXT NOT NULL,
    caregiver_id  BIGINT REFERENCES caregivers (id) ON DELETE CASCADE,
    supervisor_id BIGINT REFERENCES supervisors (id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    used_at       TIMESTAMPTZ,
    -- The address (chat) that used it.
    used_by       TEXT,
    CHECK (caregiver_id IS NOT NULL OR supervisor_id IS NOT NULL)
);

-- A caregiver reachable on SMS and Telegram gets each program message on one of them: the one
-- an operator set as preferred (NULL: none), else the one they last wrote on (NULL: SMS).
-- `chosen_language` is what the caregiver picked with /language; it wins over the roster's
-- `language`, which a re-import would otherwise put back.
ALTER TABLE caregivers ADD COLUMN preferred_channel TEXT;
ALTER TABLE caregivers ADD COLUMN last_channel TEXT;
ALTER TABLE caregivers ADD COLUMN chosen_language TEXT;
