-- carebot's schema on PostgreSQL (the SQLite twin is migrations/sqlite/0001_initial.sql; keep
-- the two in step: one Rust implementation runs the same SQL on both).
--
-- Instants are TIMESTAMPTZ, dates DATE. JSON is TEXT, as on SQLite, so both databases hand the
-- Rust side the same thing to parse. Counters are BIGINT so that both decode as i64.

-- The roster -------------------------------------------------------------------------------------

CREATE TABLE supervisors (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    phone       TEXT NOT NULL,
    email       TEXT NOT NULL,
    branch      TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE caregivers (
    id                     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id            TEXT NOT NULL UNIQUE,
    first_name             TEXT NOT NULL,
    last_name              TEXT NOT NULL,
    -- E.164; one caregiver per number, or an inbound text could not be told apart.
    phone                  TEXT NOT NULL UNIQUE,
    language               TEXT NOT NULL,
    timezone               TEXT NOT NULL,
    branch                 TEXT NOT NULL,
    -- A supervisor's external_id, not a key: the roster names supervisors that way, and the
    -- caregivers file may be imported before the supervisors file.
    supervisor_external_id TEXT,
    consent_at             DATE,
    active                 BOOLEAN NOT NULL DEFAULT TRUE,
    -- The provider said the number cannot receive texts (Twilio 21211); cleared when it changes.
    phone_invalid          BOOLEAN NOT NULL DEFAULT FALSE,
    -- Set by flows (`set:`): a JSON object and a JSON array of strings.
    fields                 TEXT NOT NULL DEFAULT '{}',
    tags                   TEXT NOT NULL DEFAULT '[]',
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL
);
CREATE INDEX caregivers_branch ON caregivers (branch);
CREATE INDEX caregivers_supervisor ON caregivers (supervisor_external_id);

-- A table rather than a column so that the audience `group:NAME` is an index lookup.
CREATE TABLE caregiver_groups (
    caregiver_id BIGINT NOT NULL REFERENCES caregivers (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    PRIMARY KEY (caregiver_id, name)
);
CREATE INDEX caregiver_groups_name ON caregiver_groups (name);

-- Who a non-phone address (a Telegram chat) belongs to. SMS and console addresses are phone
-- numbers and are found through caregivers.phone.
CREATE TABLE caregiver_links (
    channel      TEXT NOT NULL,
    address      TEXT NOT NULL,
    caregiver_id BIGINT NOT NULL REFERENCES caregivers (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel, address)
);
CREATE INDEX caregiver_links_caregiver ON caregiver_links (caregiver_id);

-- Consent ----------------------------------------------------------------------------------------

-- The consent in force for an address on a channel; no row means unknown.
CREATE TABLE subscriptions (
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('unknown', 'opted_in', 'opted_out')),
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel, address)
);

-- Every inbound message, recorded before anything else happens to it.
CREATE TABLE inbound_messages (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel      TEXT NOT NULL,
    -- The provider's id: a provider's retry of the same message hits this unique key.
    external_id  TEXT NOT NULL,
    address      TEXT NOT NULL,
    caregiver_id BIGINT REFERENCES caregivers (id),
    body         TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (channel, external_id)
);
CREATE INDEX inbound_messages_address ON inbound_messages (channel, address);

-- Append-only: what changed, when, on which channel, and which message (if any) caused it.
CREATE TABLE consent_ledger (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel      TEXT NOT NULL,
    address      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('unknown', 'opted_in', 'opted_out')),
    source       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    caregiver_id BIGINT REFERENCES caregivers (id),
    inbound_id   BIGINT REFERENCES inbound_messages (id),
    at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX consent_ledger_address ON consent_ledger (channel, address);

-- Conversations ----------------------------------------------------------------------------------

-- The exact flow text a conversation started on, so an edit never changes a running one.
CREATE TABLE flow_revisions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flow_id    TEXT NOT NULL,
    version    BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    source     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (flow_id, sha256)
);

CREATE TABLE conversations (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    caregiver_id BIGINT NOT NULL REFERENCES caregivers (id),
    channel      TEXT NOT NULL,
    address      TEXT NOT NULL,
    flow_id      TEXT NOT NULL,
    flow_rev     BIGINT NOT NULL REFERENCES flow_revisions (id),
    status       TEXT NOT NULL
                 CHECK (status IN ('active', 'completed', 'expired', 'interrupted')),
    -- The engine's state, JSON.
    state        TEXT NOT NULL,
    wake_at      TIMESTAMPTZ,
    started_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ
);
-- At most one waiting conversation per address and channel, however many writers race.
CREATE UNIQUE INDEX conversations_one_active ON conversations (channel, address)
    WHERE status = 'active';
CREATE INDEX conversations_due ON conversations (wake_at)
    WHERE status = 'active' AND wake_at IS NOT NULL;
CREATE INDEX conversations_caregiver ON conversations (caregiver_id);

CREATE TABLE answers (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Both NULL for an anonymous answer: nothing in the row leads back to the caregiver.
    conversation_id BIGINT REFERENCES conversations (id),
    caregiver_id    BIGINT REFERENCES caregivers (id),
    flow_id         TEXT NOT NULL,
    step            TEXT NOT NULL,
    key             TEXT NOT NULL,
    value           TEXT NOT NULL,
    raw             TEXT NOT NULL,
    anonymous       BOOLEAN NOT NULL,
    answered_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX answers_flow ON answers (flow_id, answered_at);
CREATE INDEX answers_answered_at ON answers (answered_at);

CREATE TABLE escalations (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id BIGINT REFERENCES conversations (id),
    caregiver_id    BIGINT NOT NULL REFERENCES caregivers (id),
    supervisor_id   BIGINT REFERENCES supervisors (id),
    flow_id         TEXT NOT NULL,
    step            TEXT NOT NULL,
    priority        TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high')),
    reason          TEXT NOT NULL,
    answer          TEXT NOT NULL,
    message         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'acknowledged', 'calling', 'done')),
    raised_at       TIMESTAMPTZ NOT NULL,
    acknowledged_at TIMESTAMPTZ,
    closed_at       TIMESTAMPTZ
);
CREATE INDEX escalations_raised_at ON escalations (raised_at);
CREATE INDEX escalations_unfinished ON escalations (supervisor_id) WHERE status <> 'done';

-- Outbound ---------------------------------------------------------------------------------------

-- Every outbound message, and the outbox itself: the rows with status 'queued' are the work
-- queue the dispatcher claims from.
CREATE TABLE outbound_messages (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel         TEXT NOT NULL,
    address         TEXT NOT NULL,
    caregiver_id    BIGINT REFERENCES caregivers (id),
    conversation_id BIGINT REFERENCES conversations (id),
    kind            TEXT NOT NULL CHECK (kind IN ('reply', 'program', 'consent', 'alert')),
    body            TEXT NOT NULL,
    encoding        TEXT NOT NULL CHECK (encoding IN ('gsm7', 'ucs2')),
    segments        BIGINT NOT NULL,
    -- JSON array of [label, payload] pairs.
    buttons         TEXT NOT NULL DEFAULT '[]',
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'accepted', 'sent',
                        'delivered', 'undelivered', 'failed', 'suppressed', 'unknown')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    not_before      TIMESTAMPTZ NOT NULL,
    provider_id     TEXT,
    error_code      TEXT,
    error           TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX outbound_messages_queue ON outbound_messages (channel, not_before)
    WHERE status = 'queued';
CREATE INDEX outbound_messages_sending ON outbound_messages (updated_at)
    WHERE status = 'sending';
-- Delivery callbacks find their message by the provider's id.
CREATE INDEX outbound_messages_provider_id ON outbound_messages (provider_id);
CREATE INDEX outbound_messages_address ON outbound_messages (channel, address);

-- One polite "who is this?" reply a day to a number that is not on the roster.
CREATE TABLE stranger_replies (
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    day     DATE NOT NULL,
    PRIMARY KEY (channel, address, day)
);
