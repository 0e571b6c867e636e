-- Who is behind a session (crates/beacon-enrich, docs/enrichment.md): set
-- when the session starts, from its first event. `visitor_id` is a keyed
-- hash under the day's salt, always negative; sessions stored before it
-- existed have none and count as their own visitor. No address is stored.
ALTER TABLE sessions ADD COLUMN visitor_id BIGINT;
ALTER TABLE sessions ADD COLUMN browser TEXT;
ALTER TABLE sessions ADD COLUMN browser_version TEXT;
ALTER TABLE sessions ADD COLUMN os TEXT;
ALTER TABLE sessions ADD COLUMN os_version TEXT;
ALTER TABLE sessions ADD COLUMN device TEXT;
ALTER TABLE sessions ADD COLUMN region TEXT;
-- Stored only with --keep-bots; excluded from every figure.
ALTER TABLE sessions ADD COLUMN bot BOOLEAN NOT NULL DEFAULT 0;

-- One random salt per UTC day (`day` = days since the Unix epoch), made
-- ahead of time and shared by every instance; deleted two days after its
-- day. Never logged or served.
CREATE TABLE visitor_salts (
    day  BIGINT PRIMARY KEY,
    salt BLOB   NOT NULL CHECK (length(salt) = 32)
);
