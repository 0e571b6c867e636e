-- Rollups for the historical API, maintained in the same transaction as the
-- batch insert (see crates/beacon-store/src/rollup.rs and
-- docs/architecture.md, "Rollups"). Rebuilt from events by
-- `beacon rollup --rebuild` (also after deleting sessions or events: the
-- rollups have no foreign keys, to keep the insert path cheap).
--
-- Units: grain 0 is a 15-minute quarter (occurred_at / 900000000), grain 1
-- a UTC day (occurred_at / 86400000000). Every time-zone offset in use is a
-- multiple of 15 minutes, so local hours and days are unions of quarters.
--
-- Dimensions: 0 any event (item ''; visitors only), 1 page (url of a
-- visit), 2 referrer (of a visit), 3 click label ('unknown' when absent).

-- Which quarters each session was seen in, per dimension item: the source
-- of exact distinct-visitor counts.
CREATE TABLE rollup_seen (
    session_id BIGINT   NOT NULL,
    dim        SMALLINT NOT NULL,
    item       TEXT     NOT NULL,
    quarter    BIGINT   NOT NULL,
    PRIMARY KEY (session_id, dim, item, quarter)
);

-- Event counts per unit and item (dimensions 1 to 3). The key carries `n`
-- (INCLUDE), so that a top list sums its ranges with index-only scans and
-- reads no table pages (see `units_union` in crates/beacon-store/src/history.rs).
CREATE TABLE rollup_counts (
    grain SMALLINT NOT NULL,
    dim   SMALLINT NOT NULL,
    unit  BIGINT   NOT NULL,
    item  TEXT     NOT NULL,
    n     BIGINT   NOT NULL,
    PRIMARY KEY (grain, dim, unit, item) INCLUDE (n)
);

-- Visitor units: one per (session, item, unit the session was seen in),
-- aggregated by `prev`, the last quarter before the unit's start in which
-- the session was seen with that item (-1: none). The distinct sessions of
-- a range starting at quarter A are the units inside it with prev < A.
-- The key carries `n`, as for rollup_counts.
CREATE TABLE rollup_visitors (
    grain SMALLINT NOT NULL,
    dim   SMALLINT NOT NULL,
    unit  BIGINT   NOT NULL,
    item  TEXT     NOT NULL,
    prev  BIGINT   NOT NULL,
    n     BIGINT   NOT NULL,
    PRIMARY KEY (grain, dim, unit, item, prev) INCLUDE (n)
);

-- Figures of /stats per quarter: one row each, so that a 30-day range is
-- 2,880 rows. `sessions` counts the sessions whose first event is in the
-- quarter and `duration_us` sums their last − first event time.
CREATE TABLE rollup_stats (
    quarter     BIGINT PRIMARY KEY,
    events      BIGINT NOT NULL,
    page_views  BIGINT NOT NULL,
    clicks      BIGINT NOT NULL,
    sessions    BIGINT NOT NULL,
    duration_us BIGINT NOT NULL
);

-- Per-session counters, and the quarter and duration last added to
-- rollup_stats for the session.
CREATE TABLE rollup_session (
    session_id  BIGINT PRIMARY KEY,
    quarter     BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    events      BIGINT NOT NULL,
    page_views  BIGINT NOT NULL
);


-- Fill the rollups from the events already stored (the same statements as
-- `beacon rollup --rebuild`, crates/beacon-store/src/rollup/rebuild.sql).
DELETE FROM rollup_seen;
DELETE FROM rollup_counts;
DELETE FROM rollup_visitors;
DELETE FROM rollup_session;
DELETE FROM rollup_stats;
INSERT INTO rollup_seen (session_id, dim, item, quarter)
SELECT DISTINCT session_id, dim, item, occurred_at / 900000000 FROM (
    SELECT session_id, 0 AS dim, '' AS item, occurred_at FROM events
    UNION ALL
    SELECT session_id, 1, url, occurred_at FROM events WHERE kind = 'visit' AND url IS NOT NULL
    UNION ALL
    SELECT session_id, 2, referrer, occurred_at FROM events
    WHERE kind = 'visit' AND referrer IS NOT NULL AND referrer <> ''
    UNION ALL
    SELECT session_id, 3, COALESCE(label, 'unknown'), occurred_at FROM events WHERE kind = 'click'
) facts;
INSERT INTO rollup_counts (grain, dim, unit, item, n)
SELECT 0, dim, occurred_at / 900000000, item, COUNT(*) FROM (
    SELECT 1 AS dim, url AS item, occurred_at FROM events WHERE kind = 'visit' AND url IS NOT NULL
    UNION ALL
    SELECT 2, referrer, occurred_at FROM events
    WHERE kind = 'visit' AND referrer IS NOT NULL AND referrer <> ''
    UNION ALL
    SELECT 3, COALESCE(label, 'unknown'), occurred_at FROM events WHERE kind = 'click'
) facts
GROUP BY dim, occurred_at / 900000000, item;
INSERT INTO rollup_session (session_id, quarter, duration_us, events, page_views)
SELECT s.id, s.first_seen / 900000000, s.last_seen - s.first_seen, e.events, e.page_views
FROM sessions s JOIN (
    SELECT session_id, COUNT(*) AS events,
           SUM(CASE WHEN kind = 'visit' THEN 1 ELSE 0 END) AS page_views
    FROM events GROUP BY session_id
) e ON e.session_id = s.id;
INSERT INTO rollup_stats (quarter, events, page_views, clicks, sessions, duration_us)
SELECT quarter, SUM(events), SUM(page_views), SUM(clicks), SUM(sessions), SUM(duration_us) FROM (
    SELECT occurred_at / 900000000 AS quarter, 1 AS events,
           CASE WHEN kind = 'visit' THEN 1 ELSE 0 END AS page_views,
           CASE WHEN kind = 'click' THEN 1 ELSE 0 END AS clicks,
           0 AS sessions, 0 AS duration_us
    FROM events
    UNION ALL
    SELECT quarter, 0, 0, 0, 1, duration_us FROM rollup_session
) s
GROUP BY quarter;
INSERT INTO rollup_counts (grain, dim, unit, item, n)
SELECT 1, dim, unit / 96, item, SUM(n) FROM rollup_counts WHERE grain = 0
GROUP BY dim, unit / 96, item;
INSERT INTO rollup_visitors (grain, dim, unit, item, prev, n)
SELECT 0, dim, quarter, item, prev, COUNT(*) FROM (
    SELECT dim, item, quarter,
           COALESCE(LAG(quarter) OVER (PARTITION BY session_id, dim, item ORDER BY quarter), -1) AS prev
    FROM rollup_seen
) s
GROUP BY dim, quarter, item, prev;
INSERT INTO rollup_visitors (grain, dim, unit, item, prev, n)
SELECT 1, dim, quarter / 96, item, prev, COUNT(*) FROM (
    SELECT dim, item, quarter,
           COALESCE(LAG(quarter) OVER (PARTITION BY session_id, dim, item ORDER BY quarter), -1) AS prev
    FROM rollup_seen
) s
WHERE prev < (quarter / 96) * 96
GROUP BY dim, quarter / 96, item, prev;
