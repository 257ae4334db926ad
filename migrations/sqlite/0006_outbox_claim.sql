-- The outbox claim walks an index (the PostgreSQL twin is
-- migrations/postgres/0006_outbox_claim.sql; keep the two in step).
--
-- The dispatcher claims the due queued messages of a channel oldest first, up to 500 at a time.
-- Ordered by `not_before, id` over this index, a claim reads its 500 entries and stops, however
-- many messages a 100,000-caregiver start left queued; ordered by `id` alone, every claim read
-- and sorted the whole due backlog. Messages due at the same instant still go in the order they
-- were queued (`id`).
DROP INDEX outbound_messages_queue;
CREATE INDEX outbound_messages_queue ON outbound_messages (channel, not_before, id)
    WHERE status = 'queued';
