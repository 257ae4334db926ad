-- Fewer index entries written per conversation and per queued message (the PostgreSQL twin is
-- migrations/postgres/0008_fewer_index_writes.sql; keep the two in step).
--
-- A start for 100,000 caregivers inserts 100,000 conversations and 100,000 messages inside
-- its write transactions, and every index on those tables is one more B-tree insert per row.
--
-- conversations_caregiver (caregiver_id) is the leading column of
-- conversations_caregiver_started (caregiver_id, started_at), which serves every lookup by
-- caregiver as well.
DROP INDEX conversations_caregiver;
-- A message has no provider id until the provider accepts it, and delivery callbacks look one
-- up by equality, which implies IS NOT NULL: queued messages need no entry.
DROP INDEX outbound_messages_provider_id;
CREATE INDEX outbound_messages_provider_id ON outbound_messages (provider_id)
    WHERE provider_id IS NOT NULL;
