-- A caregiver's (or supervisor's) newest link on a channel, found in index order (the SQLite
-- and PostgreSQL files of this migration are twins; keep the two in step).
--
-- Every snapshot of an inbound message, and every caregiver a start reads, asks for the
-- caregiver's newest Telegram chat and the supervisor's: `WHERE caregiver_id = ? AND channel =
-- 'telegram' ORDER BY created_at DESC LIMIT 1`. With an index on the owner alone, SQLite sorted
-- the rows in a temporary B-tree, created and dropped three times per snapshot even when there
-- is no link at all: about a tenth of the inbound group writer's time. With the channel and
-- the time in the index the newest link is its first entry. The old indexes are prefixes of
-- the new ones (which still serve `ON DELETE CASCADE`).
DROP INDEX caregiver_links_caregiver;
CREATE INDEX caregiver_links_caregiver ON caregiver_links (caregiver_id, channel, created_at);
DROP INDEX supervisor_links_supervisor;
CREATE INDEX supervisor_links_supervisor ON supervisor_links (supervisor_id, channel, created_at);
