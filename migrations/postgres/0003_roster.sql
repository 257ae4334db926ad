-- Roster at scale (issue 5): durable flow starts, recurring schedules, training assignments and
-- what contact pressure needs. The PostgreSQL twin is migrations/sqlite/0003_roster.sql.

-- Schedules run per time zone: one caregiver query per zone, not per caregiver.
CREATE INDEX caregivers_timezone ON caregivers (timezone);

-- A flow started for an audience, kept until every caregiver in it has been handled, so that
-- a crash mid-way resumes it (from `cursor`) instead of losing or repeating it. Each batch of
-- caregivers is handled in one transaction that also moves `cursor` and the counters, so a
-- caregiver is either started and counted, or neither.
CREATE TABLE flow_starts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flow_id     TEXT NOT NULL,
    program     TEXT NOT NULL,
    -- Lower goes first (shift offers before surveys) when several starts are due at once.
    priority    BIGINT NOT NULL,
    -- all | group:NAME | branch:NAME | phone:+1…,+1…
    audience    TEXT NOT NULL,
    -- Only caregivers in this IANA zone (a schedule, or `--at` in local time, runs per zone).
    timezone    TEXT,
    vars        TEXT NOT NULL DEFAULT '{}',
    origin      TEXT NOT NULL CHECK (origin IN ('cli', 'schedule')),
    -- A schedule's run (flow, zone, instant): the same run is never created twice.
    dedupe_key  TEXT UNIQUE,
    run_at      TIMESTAMPTZ NOT NULL,
    -- pending: not begun; running: going through the audience; waiting: through it, with
    -- capped caregivers waiting for room in their weekly cap; done.
    status      TEXT NOT NULL CHECK (status IN ('pending', 'running', 'waiting', 'done')),
    total       BIGINT NOT NULL DEFAULT 0,
    -- Caregivers with an id at or below this one have been handled.
    done_through BIGINT NOT NULL DEFAULT 0,
    processed   BIGINT NOT NULL DEFAULT 0,
    started     BIGINT NOT NULL DEFAULT 0,
    -- JSON object: reason -> count.
    skipped     TEXT NOT NULL DEFAULT '{}',
    -- Who is running it, until when: a crashed runner's lease runs out and another takes over.
    owner       TEXT,
    lease_until TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ
);
CREATE INDEX flow_starts_unfinished ON flow_starts (run_at) WHERE status <> 'done';

-- Which program a conversation belongs to (shift, training, benefits, survey; onboarding for
-- the opt-in), so the weekly cap can count program conversations; and the durable start that
-- began it, if any.
ALTER TABLE conversations ADD COLUMN program TEXT;
ALTER TABLE conversations ADD COLUMN start_id BIGINT REFERENCES flow_starts (id);
CREATE INDEX conversations_caregiver_started ON conversations (caregiver_id, started_at);

-- Caregivers a start found at their weekly cap, for a flow that waits rather than skips.
CREATE TABLE start_waits (
    start_id     BIGINT NOT NULL REFERENCES flow_starts (id),
    caregiver_id BIGINT NOT NULL REFERENCES caregivers (id),
    retry_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (start_id, caregiver_id)
);
CREATE INDEX start_waits_due ON start_waits (retry_at);

-- A flow's `schedule:` for the caregivers of one time zone: when it runs next.
CREATE TABLE schedules (
    flow_id     TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    cron        TEXT NOT NULL,
    audience    TEXT NOT NULL,
    next_run_at TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (flow_id, timezone)
);

-- Training modules assigned to caregivers (`carebot import training`), each driving the
-- training flow for its caregiver. assigned: to be started (at `next_try_at`); started: its
-- conversation is running; done: the caregiver replied DONE; expired: it ran out unanswered.
CREATE TABLE training_assignments (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    caregiver_id    BIGINT NOT NULL REFERENCES caregivers (id),
    flow_id         TEXT NOT NULL,
    module          TEXT NOT NULL,
    link            TEXT NOT NULL,
    due_date        DATE    NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('assigned', 'started', 'done', 'expired')),
    conversation_id BIGINT REFERENCES conversations (id),
    next_try_at     TIMESTAMPTZ NOT NULL,
    -- Why the last try did not start it (busy, capped, no consent...).
    last_skip       TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (caregiver_id, module)
);
CREATE INDEX training_assignments_due ON training_assignments (next_try_at)
    WHERE status = 'assigned';
CREATE INDEX training_assignments_started ON training_assignments (conversation_id)
    WHERE status = 'started';
