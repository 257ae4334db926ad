-- Escalations that reach a human and get followed up (the PostgreSQL twin is
-- migrations/postgres/0004_escalations.sql; keep the two in step).
--
-- An escalation is raised in the transaction that records the answer causing it, with
-- `due_at` set to that moment; the follow-up clock (the scheduler) then routes it, and re-routes
-- it whenever `due_at` comes again without an acknowledgement.

-- The level of the routing chain the alert has reached: 0 is the first contact (the caregiver's
-- supervisor, or whoever stands in), 1 the next (the branch's contact), and so on.
ALTER TABLE escalations ADD COLUMN level INTEGER NOT NULL DEFAULT 0;
-- When the follow-up clock must look at this escalation next; NULL when nothing is due.
ALTER TABLE escalations ADD COLUMN due_at TEXT;
-- The alert template and the JSON it renders with: alerts are rendered when they are routed,
-- once the escalation has the id supervisors reply with ("ACK 14").
ALTER TABLE escalations ADD COLUMN template TEXT NOT NULL DEFAULT '';
ALTER TABLE escalations ADD COLUMN context TEXT NOT NULL DEFAULT '{}';
-- The template sent to the caregiver when a supervisor takes the alert up (a flow's choice).
ALTER TABLE escalations ADD COLUMN when_taken_up TEXT;
-- 1 when the answer was anonymous and the caregiver agreed to be named.
ALTER TABLE escalations ADD COLUMN caregiver_consent INTEGER NOT NULL DEFAULT 0;
-- Re-sends at the last level of the chain (bounded: see the follow-up clock).
ALTER TABLE escalations ADD COLUMN resends INTEGER NOT NULL DEFAULT 0;
CREATE INDEX escalations_due ON escalations (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX escalations_flow ON escalations (flow_id, raised_at);

-- Who an escalation is routed to, level by level: written once, when it is first routed, so
-- that a later change of supervisor or settings does not change who may act on it.
CREATE TABLE escalation_contacts (
    escalation_id INTEGER NOT NULL REFERENCES escalations (id),
    supervisor_id INTEGER NOT NULL REFERENCES supervisors (id),
    level         INTEGER NOT NULL,
    -- When this contact was sent the alert; NULL while the chain has not reached them.
    notified_at   TEXT,
    PRIMARY KEY (escalation_id, supervisor_id)
) STRICT;
CREATE INDEX escalation_contacts_supervisor ON escalation_contacts (supervisor_id);

-- Append-only history of each escalation: raised, alerted, re-escalated, ACK, CALL, NOTE, DONE.
CREATE TABLE escalation_events (
    id            INTEGER PRIMARY KEY,
    escalation_id INTEGER NOT NULL REFERENCES escalations (id),
    action        TEXT NOT NULL,
    supervisor_id INTEGER REFERENCES supervisors (id),
    level         INTEGER NOT NULL,
    detail        TEXT NOT NULL,
    at            TEXT NOT NULL
) STRICT;
CREATE INDEX escalation_events_escalation ON escalation_events (escalation_id);

-- One digest of open alerts per supervisor per local day.
CREATE TABLE digests (
    supervisor_id INTEGER NOT NULL REFERENCES supervisors (id),
    day           TEXT NOT NULL,
    sent_at       TEXT NOT NULL,
    PRIMARY KEY (supervisor_id, day)
) STRICT;

-- An anonymous answer keeps no link to its caregiver, so the pulse report could not place it
-- in a week or a group: keep the coarse facts it is reported by (the Monday of the week its
-- conversation started, the branch and the state), and report them only in groups of five or
-- more. NULL on named answers, which are placed through their conversation.
ALTER TABLE answers ADD COLUMN cohort_week TEXT;
ALTER TABLE answers ADD COLUMN cohort_branch TEXT;
ALTER TABLE answers ADD COLUMN cohort_state TEXT;

-- Supervisors are recognized by the number they text from.
CREATE INDEX supervisors_phone ON supervisors (phone);
-- The pulse report reads a flow's conversations week by week.
CREATE INDEX conversations_flow_started ON conversations (flow_id, started_at);
