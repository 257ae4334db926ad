-- no-transaction
-- The CHECKs of outbound_messages and conversations, written as comparisons instead of IN
-- lists (SQLite only: PostgreSQL has no such cost, and its schema is unchanged).
--
-- SQLite evaluates `x IN (a, b, c, ...)` with three or more constants by building a temporary
-- B-tree of the constants, once per statement run: for a CHECK, once for every row inserted
-- or updated. Every queued message paid for two (kind and status), and every status change
-- the dispatcher writes for one: about 4 µs a row, a third of the time the inbound group
-- writer spends writing a message. Every conversation a start creates paid for one, and so
-- did every step the general path writes. `x = a OR x = b ...` is the same constraint,
-- evaluated by comparisons.
--
-- A CHECK cannot be changed in place: this is SQLite's table rebuild
-- (https://www.sqlite.org/lang_altertable.html, "Making Other Kinds Of Table Schema Changes").
-- Foreign keys must be off while the old tables are dropped (shift_offer_recipients refers to
-- outbound_messages; answers, escalations, training_assignments and outbound_messages to
-- conversations; the rows are copied unchanged, so no reference is broken; a reference names
-- its table, which the rebuilt one replaces under the same name), and that pragma does nothing
-- inside a transaction: hence `no-transaction` above and the explicit one here. Run again
-- after a crash before sqlx records it, it rebuilds the tables once more, harmlessly.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE outbound_messages_rebuilt (
    id              INTEGER PRIMARY KEY,
    channel         TEXT NOT NULL,
    address         TEXT NOT NULL,
    caregiver_id    INTEGER REFERENCES caregivers (id),
    conversation_id INTEGER REFERENCES conversations (id),
    kind            TEXT NOT NULL CHECK (kind = 'reply' OR kind = 'program' OR kind = 'consent'
                        OR kind = 'alert'),
    body            TEXT NOT NULL,
    encoding        TEXT NOT NULL CHECK (encoding = 'gsm7' OR encoding = 'ucs2'),
    segments        INTEGER NOT NULL,
    -- JSON array of [label, payload] pairs.
    buttons         TEXT NOT NULL DEFAULT '[]',
    status          TEXT NOT NULL CHECK (status = 'queued' OR status = 'sending'
                        OR status = 'accepted' OR status = 'sent' OR status = 'delivered'
                        OR status = 'undelivered' OR status = 'failed' OR status = 'suppressed'
                        OR status = 'unknown'),
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      TEXT NOT NULL,
    provider_id     TEXT,
    error_code      TEXT,
    error           TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;
INSERT INTO outbound_messages_rebuilt (id, channel, address, caregiver_id, conversation_id,
    kind, body, encoding, segments, buttons, status, attempts, not_before, provider_id,
    error_code, error, created_at, updated_at)
SELECT id, channel, address, caregiver_id, conversation_id, kind, body, encoding, segments,
    buttons, status, attempts, not_before, provider_id, error_code, error, created_at,
    updated_at
FROM outbound_messages;
DROP TABLE outbound_messages;
ALTER TABLE outbound_messages_rebuilt RENAME TO outbound_messages;
-- Its indexes, as migrations 0001, 0006, 0007 and 0008 left them.
CREATE INDEX outbound_messages_sending ON outbound_messages (updated_at)
    WHERE status = 'sending';
CREATE INDEX outbound_messages_address ON outbound_messages (channel, address);
CREATE INDEX outbound_messages_queue ON outbound_messages (channel, not_before, id)
    WHERE status = 'queued';
CREATE INDEX outbound_messages_urgent ON outbound_messages (channel, not_before, id)
    WHERE status = 'queued' AND kind <> 'program';
CREATE INDEX outbound_messages_provider_id ON outbound_messages (provider_id)
    WHERE provider_id IS NOT NULL;

CREATE TABLE conversations_rebuilt (
    id           INTEGER PRIMARY KEY,
    caregiver_id INTEGER NOT NULL REFERENCES caregivers (id),
    channel      TEXT NOT NULL,
    address      TEXT NOT NULL,
    flow_id      TEXT NOT NULL,
    flow_rev     INTEGER NOT NULL REFERENCES flow_revisions (id),
    status       TEXT NOT NULL CHECK (status = 'active' OR status = 'completed'
                     OR status = 'expired' OR status = 'interrupted'),
    -- The engine's state, JSON.
    state        TEXT NOT NULL,
    wake_at      TEXT,
    started_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    ended_at     TEXT,
    -- Added by migration 0003, hence last.
    program      TEXT,
    start_id     INTEGER REFERENCES flow_starts (id)
) STRICT;
INSERT INTO conversations_rebuilt (id, caregiver_id, channel, address, flow_id, flow_rev,
    status, state, wake_at, started_at, updated_at, ended_at, program, start_id)
SELECT id, caregiver_id, channel, address, flow_id, flow_rev, status, state, wake_at,
    started_at, updated_at, ended_at, program, start_id
FROM conversations;
DROP TABLE conversations;
ALTER TABLE conversations_rebuilt RENAME TO conversations;
-- Its indexes, as the earlier migrations left them.
CREATE UNIQUE INDEX conversations_one_active ON conversations (channel, address)
    WHERE status = 'active';
CREATE INDEX conversations_due ON conversations (wake_at)
    WHERE status = 'active' AND wake_at IS NOT NULL;
CREATE INDEX conversations_caregiver_started ON conversations (caregiver_id, started_at);
CREATE INDEX conversations_flow_started ON conversations (flow_id, started_at);
COMMIT;
PRAGMA foreign_keys = ON;
