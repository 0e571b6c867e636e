-- Recomputes, from the stored events and sessions, the rollups of every
-- unit (quarter or UTC day) that starts at or after the earliest stored
-- event; units that start before it are kept as they are, since their
-- events may be gone (retention). Sessions whose first event is before that
-- point keep their `rollup_session` row (and their start in `rollup_stats`)
-- too. `Store::rebuild_rollups` runs it after folding in every pending
-- event that touches a kept row, with these placeholders replaced:
--
--   :cut          the first quarter that starts at or after the earliest stored event
--   :cut_us       its start, in µs
--   :first_day    the first UTC day that starts at or after it
--   :day_cut      that day's first quarter
--   :visitor_key  a session's visitor key, over `sessions s` (rollup::VISITOR_KEY)
--   :sep          the separator of a region or city item from its country
--
-- Bots' sessions are in no rollup. Dimensions: 0 any event, 1 page, 2
-- referrer, 3 click label; of the session: 4 country, 5 region, 6 city,
-- 7 browser, 8 OS, 9 device (items of every event of the session, counts
-- of its page views; where a visitor was seen with them is in
-- `rollup_seen_profile`, one row per set of items and quarter, and in
-- `rollup_seen` rows of these dimensions written before that table).
DELETE FROM rollup_seen WHERE quarter >= :cut;
DELETE FROM rollup_seen_profile WHERE quarter >= :cut;
DELETE FROM rollup_counts WHERE (grain = 0 AND unit >= :cut) OR (grain = 1 AND unit >= :first_day);
DELETE FROM rollup_visitors WHERE (grain = 0 AND unit >= :cut) OR (grain = 1 AND unit >= :first_day);
DELETE FROM rollup_session WHERE quarter >= :cut;
DELETE FROM rollup_stats WHERE quarter >= :cut;

-- Four temporary tables, dropped at the end (a failed rebuild rolls
-- back their creation with the rest).

-- Per session and quarter: its events, page views and clicks.
CREATE TEMP TABLE rebuild_sq AS
SELECT s.id AS session_id, :visitor_key AS visitor, e.occurred_at / 900000000 AS quarter,
       COUNT(*) AS events,
       SUM(CASE WHEN e.kind = 'visit' THEN 1 ELSE 0 END) AS page_views,
       SUM(CASE WHEN e.kind = 'click' THEN 1 ELSE 0 END) AS clicks
FROM events e JOIN sessions s ON s.id = e.session_id
WHERE e.occurred_at >= :cut_us AND NOT s.bot
GROUP BY s.id, e.occurred_at / 900000000;

-- Per visitor, event dimension, item and quarter: the events.
CREATE TEMP TABLE rebuild_facts AS
SELECT visitor, dim, item, quarter, COUNT(*) AS n FROM (
    SELECT :visitor_key AS visitor, d.dim, e.occurred_at / 900000000 AS quarter,
           CASE d.dim
               WHEN 1 THEN CASE WHEN e.kind = 'visit' THEN e.url END
               WHEN 2 THEN CASE WHEN e.kind = 'visit' AND e.referrer <> '' THEN e.referrer END
               ELSE CASE WHEN e.kind = 'click' THEN COALESCE(e.label, 'unknown') END
           END AS item
    FROM events e JOIN sessions s ON s.id = e.session_id
    CROSS JOIN (SELECT 1 AS dim UNION ALL SELECT 2 UNION ALL SELECT 3) d
    WHERE e.occurred_at >= :cut_us AND NOT s.bot AND e.kind IN ('visit', 'click')
) f
WHERE item IS NOT NULL
GROUP BY visitor, dim, item, quarter;

-- Per session of rebuild_sq: its items of dimension 0 and of the session
-- dimensions it has a value for.
CREATE TEMP TABLE rebuild_items AS
SELECT session_id, dim, item FROM (
    SELECT s.id AS session_id, d.dim,
           CASE d.dim
               WHEN 0 THEN ''
               WHEN 4 THEN NULLIF(s.country, '')
               WHEN 5 THEN CASE WHEN s.region <> '' THEN COALESCE(s.country, '') || :sep || s.region END
               WHEN 6 THEN CASE WHEN s.city <> '' THEN COALESCE(s.country, '') || :sep || s.city END
               WHEN 7 THEN NULLIF(s.browser, '')
               WHEN 8 THEN NULLIF(s.os, '')
               ELSE NULLIF(s.device, '')
           END AS item
    FROM sessions s
    CROSS JOIN (SELECT 0 AS dim UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6
                UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) d
    WHERE s.id IN (SELECT session_id FROM rebuild_sq)
) i
WHERE item IS NOT NULL;

INSERT INTO rollup_seen (visitor, dim, item, quarter)
SELECT visitor, dim, item, quarter FROM rebuild_facts;
INSERT INTO rollup_seen (visitor, dim, item, quarter)
SELECT DISTINCT v.visitor, i.dim, i.item, v.quarter
FROM rebuild_sq v JOIN rebuild_items i ON i.session_id = v.session_id
WHERE i.dim = 0;
-- The items as plan.rs's `profiles` makes them: none is empty.
INSERT INTO rollup_seen_profile (visitor, quarter, country, region, city, browser, os, device)
SELECT DISTINCT v.visitor, v.quarter,
       COALESCE(s.country, ''),
       CASE WHEN s.region <> '' THEN COALESCE(s.country, '') || :sep || s.region ELSE '' END,
       CASE WHEN s.city <> '' THEN COALESCE(s.country, '') || :sep || s.city ELSE '' END,
       COALESCE(s.browser, ''), COALESCE(s.os, ''), COALESCE(s.device, '')
FROM rebuild_sq v JOIN sessions s ON s.id = v.session_id
WHERE s.country <> '' OR s.region <> '' OR s.city <> '' OR s.browser <> '' OR s.os <> ''
   OR s.device <> '';

INSERT INTO rollup_counts (grain, dim, unit, item, n)
SELECT 0, dim, quarter, item, SUM(n) FROM rebuild_facts GROUP BY dim, quarter, item;
INSERT INTO rollup_counts (grain, dim, unit, item, n)
SELECT 0, i.dim, v.quarter, i.item, SUM(v.page_views)
FROM rebuild_sq v JOIN rebuild_items i ON i.session_id = v.session_id
WHERE i.dim <> 0
GROUP BY i.dim, v.quarter, i.item
HAVING SUM(v.page_views) > 0;

-- Sessions whose first event is at or after the cut: every event of them
-- is in rebuild_sq.
INSERT INTO rollup_session (session_id, quarter, duration_us, events, page_views)
SELECT s.id, s.first_seen / 900000000, s.last_seen - s.first_seen, v.events, v.page_views
FROM sessions s JOIN (
    SELECT session_id, SUM(events) AS events, SUM(page_views) AS page_views
    FROM rebuild_sq GROUP BY session_id
) v ON v.session_id = s.id
WHERE s.first_seen >= :cut_us;

INSERT INTO rollup_stats (quarter, events, page_views, clicks, sessions, duration_us)
SELECT quarter, SUM(events), SUM(page_views), SUM(clicks), SUM(sessions), SUM(duration_us) FROM (
    SELECT quarter, events, page_views, clicks, 0 AS sessions, 0 AS duration_us FROM rebuild_sq
    UNION ALL
    SELECT quarter, 0, 0, 0, 1, duration_us FROM rollup_session WHERE quarter >= :cut
) s
GROUP BY quarter;

INSERT INTO rollup_counts (grain, dim, unit, item, n)
SELECT 1, dim, unit / 96, item, SUM(n) FROM rollup_counts WHERE grain = 0 AND unit >= :day_cut
GROUP BY dim, unit / 96, item;
-- The visitor units of the session dimensions' sightings, kept and
-- recomputed, per visitor, dimension, item and quarter, with the last
-- quarter before: the rows of `rollup_seen_profile` spread over their
-- dimensions, and `rollup_seen` rows of these dimensions written before
-- that table (once each: UNION).
CREATE TEMP TABLE rebuild_session_units AS
SELECT dim, item, quarter,
       COALESCE(LAG(quarter) OVER (PARTITION BY visitor, dim, item ORDER BY quarter), -1) AS prev
FROM (
    SELECT visitor, dim, item, quarter FROM rollup_seen WHERE dim BETWEEN 4 AND 9
    UNION
    SELECT visitor, dim, item, quarter FROM (
        SELECT p.visitor, d.dim, p.quarter,
               CASE d.dim
                   WHEN 4 THEN p.country
                   WHEN 5 THEN p.region
                   WHEN 6 THEN p.city
                   WHEN 7 THEN p.browser
                   WHEN 8 THEN p.os
                   ELSE p.device
               END AS item
        FROM rollup_seen_profile p
        CROSS JOIN (SELECT 4 AS dim UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7
                    UNION ALL SELECT 8 UNION ALL SELECT 9) d
    ) p
    WHERE item <> ''
) u;

-- Visitor units: those of the event dimensions' sightings (read in the
-- key's order, no sort), then those above.
INSERT INTO rollup_visitors (grain, dim, unit, item, prev, n)
SELECT 0, dim, quarter, item, prev, COUNT(*) FROM (
    SELECT dim, item, quarter,
           COALESCE(LAG(quarter) OVER (PARTITION BY visitor, dim, item ORDER BY quarter), -1) AS prev
    FROM rollup_seen WHERE dim NOT BETWEEN 4 AND 9
) s
WHERE quarter >= :cut
GROUP BY dim, quarter, item, prev;
INSERT INTO rollup_visitors (grain, dim, unit, item, prev, n)
SELECT 0, dim, quarter, item, prev, COUNT(*) FROM rebuild_session_units
WHERE quarter >= :cut
GROUP BY dim, quarter, item, prev;
INSERT INTO rollup_visitors (grain, dim, unit, item, prev, n)
SELECT 1, dim, quarter / 96, item, prev, COUNT(*) FROM (
    SELECT dim, item, quarter,
           COALESCE(LAG(quarter) OVER (PARTITION BY visitor, dim, item ORDER BY quarter), -1) AS prev
    FROM rollup_seen WHERE dim NOT BETWEEN 4 AND 9
) s
WHERE quarter >= :day_cut AND prev < (quarter / 96) * 96
GROUP BY dim, quarter / 96, item, prev;
INSERT INTO rollup_visitors (grain, dim, unit, item, prev, n)
SELECT 1, dim, quarter / 96, item, prev, COUNT(*) FROM rebuild_session_units
WHERE quarter >= :day_cut AND prev < (quarter / 96) * 96
GROUP BY dim, quarter / 96, item, prev;

DROP TABLE rebuild_sq;
DROP TABLE rebuild_facts;
DROP TABLE rebuild_items;
DROP TABLE rebuild_session_units;
