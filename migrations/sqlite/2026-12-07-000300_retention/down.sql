-- The events keep AUTOINCREMENT: going back would only allow ids to be
-- reused again.
ALTER TABLE rollup_watermark DROP COLUMN pruned_before;
DROP TABLE session_deletions;
