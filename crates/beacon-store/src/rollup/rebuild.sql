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
