-- A session row is written twice: inserted by the batch that first names
-- the session, then updated by the next rollup pass, which moves its
-- `last_seen` (crates/beacon-store/src/known.rs). With room left on the
-- page, that update is a HOT update: no new entry in the three indexes of
-- `sessions`. Applies to pages written from now on.
ALTER TABLE sessions SET (fillfactor = 50);
