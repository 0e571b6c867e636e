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
