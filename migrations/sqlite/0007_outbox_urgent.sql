-- Replies, consent confirmations and alerts are claimed before program messages (the PostgreSQL
-- twin is migrations/postgres/0007_outbox_urgent.sql; keep the two in step).
--
-- A start for 100,000 caregivers leaves a backlog that drains at the sender's pace (1 segment/s
-- on a long code: more than a day). Claimed strictly by due time, a caregiver's reply, a STOP
-- confirmation or a supervisor's alert would wait behind all of it. The dispatcher first claims
-- what is not a program message, walking this index (nearly always empty, so the extra claim
-- costs one index probe), then fills the remaining room from outbound_messages_queue.
CREATE INDEX outbound_messages_urgent ON outbound_messages (channel, not_before, id)
    WHERE status = 'queued' AND kind <> 'program';
