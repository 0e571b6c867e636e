-- Deleting data while servers run (docs/operations.md, "Retention and
-- erasure"; crates/beacon-store/src/retention).
--
-- Every transaction that deletes sessions (a retention step, `beacon
-- prune`, `beacon forget`) logs their ids here under a new `epoch`, one
-- more than the largest before. Each instance's cache of known sessions
-- (crates/beacon-store/src/known.rs) remembers the epoch it is current
-- with; every insert transaction reads the newest epoch, and when it moved
-- drops the deleted ids from the cache before it trusts a cached id. Rows
-- are removed a day after their deletion (an instance that missed them
-- forgets every cached session instead); the newest row stays, so the
-- epoch never goes back. The ids are the internal row ids, never tokens.
CREATE TABLE session_deletions (
    epoch      BIGINT NOT NULL,
    session_id BIGINT NOT NULL,
    deleted_at BIGINT NOT NULL,
    PRIMARY KEY (epoch, session_id)
);

-- Events that occurred before `pruned_before` (µs, the start of a UTC day)
-- may have been deleted; the rollups still hold them. 0: nothing pruned.
ALTER TABLE rollup_watermark ADD COLUMN pruned_before BIGINT NOT NULL DEFAULT 0;

-- Event ids are never handed out twice. Without AUTOINCREMENT, SQLite
-- gives a new row the largest id in the table plus one, so deleting the
-- newest events (`beacon forget` of the session that sent them) would let
-- the next insert reuse their ids, at or below the rollup watermark, where
-- the rollup passes never look. The table is copied once into one that
-- declares it (PostgreSQL's identity columns never reuse an id).
CREATE TABLE events_autoincrement (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id    TEXT   NOT NULL,
    -- No foreign key: the write path upserts the session in the same
    -- transaction, and the per-row check cost ~30% of PostgreSQL's CPU per
    -- ingested event (docs/benchmarks.md).
    session_id   BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    url          TEXT,
    referrer     TEXT,
    user_agent   TEXT,
    label        TEXT,
    metadata     TEXT   NOT NULL DEFAULT '{}',
    occurred_at  BIGINT NOT NULL,
    received_at  BIGINT NOT NULL
);
INSERT INTO events_autoincrement (id, public_id, session_id, kind, url, referrer, user_agent,
    label, metadata, occurred_at, received_at)
SELECT id, public_id, session_id, kind, url, referrer, user_agent, label, metadata, occurred_at,
    received_at FROM events ORDER BY id;
DROP TABLE events;
ALTER TABLE events_autoincrement RENAME TO events;
-- Idempotency: an event id is stored once per session.
CREATE UNIQUE INDEX events_session_public_id ON events (session_id, public_id);
CREATE INDEX events_occurred_at ON events (occurred_at);
CREATE INDEX events_kind_occurred_at ON events (kind, occurred_at);
-- New ids start past the rollup watermark even where the newest events
-- were deleted by hand before.
INSERT INTO sqlite_sequence (name, seq) SELECT 'events', 0
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT last_event_id FROM rollup_watermark WHERE id = 1))
WHERE name = 'events';
