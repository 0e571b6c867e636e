-- Pruning deletes the `rollup_seen` rows of a daily visitor id once no
-- stored session has that id any more (crates/beacon-store/src/retention):
-- it asks through this index. Partial: sessions stored without a visitor
-- id are their own visitor key and need no lookup.
CREATE INDEX sessions_visitor_id ON sessions (visitor_id) WHERE visitor_id IS NOT NULL;
