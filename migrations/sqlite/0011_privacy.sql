-- Issue 16: anonymous answers that cannot be traced, retention with an end, and erasure (the
-- PostgreSQL twin is migrations/postgres/0011_privacy.sql; keep the two in step).

-- An anonymous answer in a table of its own, with nothing that leads back to its caregiver:
-- no caregiver, conversation or inbound message, no instant (only the ISO week its survey
-- started in), no raw text. Its id is random (see anonymous_pending below), so ordering by id, or
-- reading the table in its stored order, does not replay the order answers came in, which the
-- caregivers' inbound messages would match.
CREATE TABLE anonymous_answers (
    id            INTEGER PRIMARY KEY,
    flow_id       TEXT NOT NULL,
    step          TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    cohort_week   TEXT NOT NULL,
    cohort_branch TEXT NOT NULL,
    cohort_state  TEXT,
    -- Words as typed (an `expect: text` answer) until the retention sweep removes them.
    free_text     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX anonymous_answers_flow ON anonymous_answers (flow_id, key, cohort_week);
-- The retention sweep finds the free text still to remove by week; a swept row leaves it.
CREATE INDEX anonymous_answers_free_text ON anonymous_answers (cohort_week) WHERE free_text;

-- Where an anonymous answer waits, until the day it came in is over, before it joins the
-- others. Written in the transaction that records the caregiver's message, a row here could be
-- tied to that message by the order rows are stored in, or on PostgreSQL by the transaction id
-- every row of one transaction shares (`xmin`). The retention sweep moves each day's rows in
-- one transaction, in random order, with random ids: what is left says the day, no more, as
-- the inbound message does.
CREATE TABLE anonymous_pending (
    id            INTEGER PRIMARY KEY,
    held_on       TEXT NOT NULL,
    flow_id       TEXT NOT NULL,
    step          TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    cohort_week   TEXT NOT NULL,
    cohort_branch TEXT NOT NULL,
    cohort_state  TEXT,
    free_text     INTEGER NOT NULL
) STRICT;
CREATE INDEX anonymous_pending_day ON anonymous_pending (held_on);

-- The anonymous answers kept so far move over, with random ids; their inbound messages keep
-- the day they came in, not the instant.
INSERT INTO anonymous_answers (id, flow_id, step, key, value, cohort_week, cohort_branch,
                               cohort_state, free_text)
SELECT random() & 9223372036854775807, flow_id, step, key, value,
       COALESCE(cohort_week, date(substr(answered_at, 1, 10), '-6 days', 'weekday 1')),
       COALESCE(cohort_branch, ''), cohort_state,
       value = json_quote(raw) AND instr(raw, ' ') > 0
FROM answers WHERE anonymous ORDER BY random();
DELETE FROM answers WHERE anonymous;
UPDATE inbound_messages SET received_at = substr(received_at, 1, 10) || 'T00:00:00.000000Z'
WHERE body = '[anonymous answer]';

-- Free text (an `expect: text` answer) is removed after CAREBOT_RETENTION_DAYS; scores and
-- choices stay. Rows from before this column: free text when the stored value is the reply
-- itself, as a JSON string, and is more than one word: a choice or a keyword is stored as its
-- option, an identifier such as `IL` or `under_1000` that a caregiver may have typed exactly,
-- and must not lose its value. (A one-word free-text answer from before this keeps its value.)
ALTER TABLE answers ADD COLUMN free_text INTEGER NOT NULL DEFAULT 0;
UPDATE answers SET free_text = 1 WHERE value = json_quote(raw) AND instr(raw, ' ') > 0;

-- How far the retention sweep has gone through each large table, by id, so that a sweep
-- reads only the rows it has not passed yet instead of scanning years of messages.
CREATE TABLE retention_progress (
    name    TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);

-- `carebot caregiver erase`: the numbers an erased caregiver had opted out of, hashed, so a
-- later import of the same number is opted out again instead of texted; and the hashed
-- external id and phone of everyone erased, so a second erase says so instead of "no match".
CREATE TABLE erased_opt_outs (
    channel        TEXT NOT NULL,
    address_sha256 TEXT NOT NULL,
    erased_at      TEXT NOT NULL,
    PRIMARY KEY (channel, address_sha256)
);
CREATE TABLE erasures (
    key_sha256 TEXT PRIMARY KEY,
    erased_at  TEXT NOT NULL
);

-- `carebot caregiver erase` finds a caregiver's rows by caregiver_id, inside one write
-- transaction: on SQLite that holds the only write lock, so a scan of the messages tables
-- would stall every inbound message and every send for as long as it reads. One index per table
-- erase filters by caregiver_id, where none leads with it yet (conversations, caregiver_links,
-- caregiver_groups, training_assignments and shift_offer_recipients have one; the by-address
-- filters use inbound_messages_address, outbound_messages_address and consent_ledger_address).
-- Each is one more B-tree insert per row written, paid on the inbound and outbound paths, which
-- is why there is no second index per table (the by-address ones are the existing ones).
CREATE INDEX inbound_messages_caregiver ON inbound_messages (caregiver_id);
CREATE INDEX outbound_messages_caregiver ON outbound_messages (caregiver_id);
CREATE INDEX consent_ledger_caregiver ON consent_ledger (caregiver_id);
CREATE INDEX answers_caregiver ON answers (caregiver_id);
CREATE INDEX escalations_caregiver ON escalations (caregiver_id);
CREATE INDEX start_waits_caregiver ON start_waits (caregiver_id);
CREATE INDEX invites_caregiver ON invites (caregiver_id) WHERE caregiver_id IS NOT NULL;
