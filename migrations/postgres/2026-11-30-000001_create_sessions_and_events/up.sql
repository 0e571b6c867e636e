-- Times are microseconds since the Unix epoch (UTC) in BIGINT columns, on
-- both backends: one set of queries and row types, integer bucketing for
-- rollups, no time-zone ambiguity. `to_timestamp(occurred_at / 1e6)` turns
-- one into a timestamptz for ad-hoc SQL. See docs/architecture.md.
CREATE TABLE sessions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token       TEXT   NOT NULL UNIQUE,
    user_agent  TEXT,
    referrer    TEXT,
    entry_url   TEXT,
    country     TEXT,
    city        TEXT,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);
CREATE INDEX sessions_first_seen ON sessions (first_seen, id);

CREATE TABLE events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
-- Idempotency: an event id is stored once per session.
CREATE UNIQUE INDEX events_session_public_id ON events (session_id, public_id);
CREATE INDEX events_occurred_at ON events (occurred_at);
CREATE INDEX events_kind_occurred_at ON events (kind, occurred_at);
