-- Telegram (the PostgreSQL twin is migrations/postgres/0002_telegram.sql; keep the two in step):
-- supervisors' chats, one-time invite links, and what a caregiver reachable on two channels
-- prefers. Caregivers' chats are in caregiver_links (0001).

-- Which supervisor a Telegram chat belongs to: alerts go there instead of by SMS.
CREATE TABLE supervisor_links (
    channel       TEXT NOT NULL,
    address       TEXT NOT NULL,
    supervisor_id INTEGER NOT NULL REFERENCES supervisors (id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (channel, address)
) STRICT;
CREATE INDEX supervisor_links_supervisor ON supervisor_links (supervisor_id);

-- One-time invite links (`carebot invite PHONE`): a code that links the chat that opens it to
-- one caregiver or supervisor, once, before it expires. Only a hash of the code is stored, so a
-- copy of the database hands nobody a working link.
CREATE TABLE invites (
    id            INTEGER PRIMARY KEY,
    code_sha256   TEXT NOT NULL UNIQUE,
    channel       TEXT NOT NULL,
    caregiver_id  INTEGER REFERENCES caregivers (id) ON DELETE CASCADE,
    supervisor_id INTEGER REFERENCES supervisors (id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT,
    -- The address (chat) that used it.
    used_by       TEXT,
    CHECK (caregiver_id IS NOT NULL OR supervisor_id IS NOT NULL)
) STRICT;

-- A caregiver reachable on SMS and Telegram gets each program message on one of them: the one
-- an operator set as preferred (NULL: none), else the one they last wrote on (NULL: SMS).
-- `chosen_language` is what the caregiver picked with /language; it wins over the roster's
-- `language`, which a re-import would otherwise put back.
ALTER TABLE caregivers ADD COLUMN preferred_channel TEXT;
ALTER TABLE caregivers ADD COLUMN last_channel TEXT;
ALTER TABLE caregivers ADD COLUMN chosen_language TEXT;
