ALTER TABLE rollup_seen RENAME COLUMN visitor TO session_id;
