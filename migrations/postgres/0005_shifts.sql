-- Shift offers (the SQLite twin is migrations/sqlite/0005_shifts.sql; keep them in step).
--
-- An offer is texted to eligible caregivers in waves; the first YES takes it with one
-- conditional UPDATE (status 'open' -> 'filled'), so exactly one caregiver gets it however many
-- answer at once. Instants are TIMESTAMPTZ, as in 0001.

CREATE TABLE shift_offers (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- What caregivers holding several open offers reply with ("YES 12"). Unique among open
    -- offers; handed out round-robin from 10 to 99 so a code is not reused for weeks.
    code          BIGINT NOT NULL,
    -- The agency's reference for the client (not a name: the offer goes to many phones).
    client_ref    TEXT NOT NULL,
    location      TEXT NOT NULL,
    notes         TEXT NOT NULL DEFAULT '',
    branch        TEXT NOT NULL,
    -- The branch's IANA zone, which the operator's times were read in and texts are shown in.
    timezone      TEXT NOT NULL,
    starts_at     TIMESTAMPTZ NOT NULL,
    ends_at       TIMESTAMPTZ NOT NULL,
    -- The deadline: the operator's --expires, never later than the start of the shift.
    expires_at    TIMESTAMPTZ NOT NULL,
    -- As typed: all, group:NAME, branch:NAME or phone:+1…; each wave re-reads it.
    audience      TEXT NOT NULL,
    -- Who is told the shift was taken or that nobody took it.
    supervisor_id BIGINT REFERENCES supervisors (id),
    -- Caregivers per wave (0: everyone eligible at once) and minutes between waves.
    wave_size     BIGINT NOT NULL,
    wave_minutes  BIGINT NOT NULL,
    waves_sent    BIGINT NOT NULL DEFAULT 0,
    -- When the scheduler sends the next wave; NULL when no wave is left.
    next_wave_at  TIMESTAMPTZ,
    status        TEXT NOT NULL CHECK (status IN ('open', 'filled', 'expired', 'cancelled')),
    filled_by     BIGINT REFERENCES caregivers (id),
    filled_at     TIMESTAMPTZ,
    closed_at     TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX shift_offers_open_code ON shift_offers (code) WHERE status = 'open';
CREATE INDEX shift_offers_open ON shift_offers (expires_at) WHERE status = 'open';
-- Who already holds a shift at a given time, and how many each won this week.
CREATE INDEX shift_offers_filled_by ON shift_offers (filled_by, starts_at)
    WHERE filled_by IS NOT NULL;

-- Who an offer was texted to, in which wave, and what they answered.
CREATE TABLE shift_offer_recipients (
    offer_id     BIGINT NOT NULL REFERENCES shift_offers (id),
    caregiver_id BIGINT NOT NULL REFERENCES caregivers (id),
    wave         BIGINT NOT NULL,
    -- The offer text, so that texts still queued when the offer closes are never sent.
    outbound_id  BIGINT REFERENCES outbound_messages (id),
    sent_at      TIMESTAMPTZ NOT NULL,
    answer       TEXT CHECK (answer IN ('yes', 'no')),
    -- What the answer got: won, again (a second YES from the winner), filled (someone was
    -- first), closed (expired or cancelled), clash (an overlapping shift), declined.
    outcome      TEXT CHECK (outcome IN ('won', 'again', 'filled', 'closed', 'clash', 'declined')),
    answered_at  TIMESTAMPTZ,
    PRIMARY KEY (offer_id, caregiver_id)
);
CREATE INDEX shift_offer_recipients_caregiver ON shift_offer_recipients (caregiver_id);
