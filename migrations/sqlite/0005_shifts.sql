-- Shift offers (the PostgreSQL twin is migrations/postgres/0005_shifts.sql; keep them in step).
--
-- An offer is texted to eligible caregivers in waves; the first YES takes it with one
-- conditional UPDATE (status 'open' -> 'filled'), so exactly one caregiver gets it however many
-- answer at once. Instants are fixed-width UTC text, as in 0001.

CREATE TABLE shift_offers (
    id            INTEGER PRIMARY KEY,
    -- What caregivers holding several open offers reply with ("YES 12"). Unique among open
    -- offers; handed out round-robin from 10 to 99 so a code is not reused for weeks.
    code          INTEGER NOT NULL,
    -- The agency's reference for the client (not a name: the offer goes to many phones).
    client_ref    TEXT NOT NULL,
    location      TEXT NOT NULL,
    notes         TEXT NOT NULL DEFAULT '',
    branch        TEXT NOT NULL,
    -- The branch's IANA zone, which the operator's times were read in and texts are shown in.
    timezone      TEXT NOT NULL,
    starts_at     TEXT NOT NULL,
    ends_at       TEXT NOT NULL,
    -- The deadline: the operator's --expires, never later than the start of the shift.
    expires_at    TEXT NOT NULL,
    -- As typed: all, group:NAME, branch:NAME or phone:+1…; each wave re-reads it.
    audience      TEXT NOT NULL,
    -- Who is told the shift was taken or that nobody took it.
    supervisor_id INTEGER REFERENCES supervisors (id),
    -- Caregivers per wave (0: everyone eligible at once) and minutes between waves.
    wave_size     INTEGER NOT NULL,
    wave_minutes  INTEGER NOT NULL,
    waves_sent    INTEGER NOT NULL DEFAULT 0,
    -- When the scheduler sends the next wave; NULL when no wave is left.
    next_wave_at  TEXT,
    status        TEXT NOT NULL CHECK (status IN ('open', 'filled', 'expired', 'cancelled')),
    filled_by     INTEGER REFERENCES caregivers (id),
    filled_at     TEXT,
    closed_at     TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX shift_offers_open_code ON shift_offers (code) WHERE status = 'open';
CREATE INDEX shift_offers_open ON shift_offers (expires_at) WHERE status = 'open';
-- Who already holds a shift at a given time, and how many each won this week.
CREATE INDEX shift_offers_filled_by ON shift_offers (filled_by, starts_at)
    WHERE filled_by IS NOT NULL;

-- Who an offer was texted to, in which wave, and what they answered.
CREATE TABLE shift_offer_recipients (
    offer_id     INTEGER NOT NULL REFERENCES shift_offers (id),
    caregiver_id INTEGER NOT NULL REFERENCES caregivers (id),
    wave         INTEGER NOT NULL,
    -- The offer text, so that texts still queued when the offer closes are never sent.
    outbound_id  INTEGER REFERENCES outbound_messages (id),
    sent_at      TEXT NOT NULL,
    answer       TEXT CHECK (answer IN ('yes', 'no')),
    -- What the answer got: won, again (a second YES from the winner), filled (someone was
    -- first), closed (expired or cancelled), clash (an overlapping shift), declined.
    outcome      TEXT CHECK (outcome IN ('won', 'again', 'filled', 'closed', 'clash', 'declined')),
    answered_at  TEXT,
    PRIMARY KEY (offer_id, caregiver_id)
) STRICT;
CREATE INDEX shift_offer_recipients_caregiver ON shift_offer_recipients (caregiver_id);
