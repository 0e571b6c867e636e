ALTER TABLE rollup_watermark DROP COLUMN pruned_before;
DROP TABLE session_deletions;
