-- The rollups are folded in after the commit that acknowledges the events,
-- by a worker that reads the events back in id order (see rollup.rs). This
-- row says how far it got: every event with `id <= last_event_id` is in the
-- rollups, and no other. Until now the rollups were kept inside the insert
-- transaction, so every stored event is already in them.
CREATE TABLE rollup_watermark (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_event_id BIGINT NOT NULL
);
INSERT INTO rollup_watermark (id, last_event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events;
