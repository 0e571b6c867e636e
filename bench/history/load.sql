-- Bulk load for bench/history.sh: :sessions sessions of 10 events each,
-- spread over the 90 days before :now_us. Written straight into the schema
-- (secondary indexes dropped during the load and rebuilt after).
SET synchronous_commit = off;
SET maintenance_work_mem = '1GB';
DROP INDEX events_session_public_id;
DROP INDEX events_occurred_at;
DROP INDEX events_kind_occurred_at;

-- Session i starts at t0 + i * step; its events are 30 s apart. Sessions
-- 2k and 2k + 1 (8 s apart) are one visitor (two tabs): 500,000 visitors
-- for 1M sessions. 30 countries, 60 regions, 100 cities, 6 browsers, 6
-- systems, 4 device types, as enrichment stores them.
INSERT INTO sessions (token, user_agent, referrer, entry_url, country, region, city,
                      browser, browser_version, os, os_version, device, visitor_id,
                      first_seen, last_seen)
SELECT 'bench-' || i,
       'Mozilla/5.0 (bench) ' || (i % 7),
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'https://ref' || (i % 20) || '.example/' END,
       'https://site.example/page-' || ((i * 7) % 200),
       (ARRAY['US', 'DE', 'GB', 'FR', 'IN', 'BR', 'CA', 'JP', 'NL', 'ES', 'IT', 'PL', 'SE', 'AU',
              'MX', 'TR', 'CH', 'KR', 'ID', 'AR', 'BE', 'AT', 'DK', 'NO', 'FI', 'IE', 'PT', 'CZ',
              'ZA', 'NZ'])[i % 30 + 1],
       'Region' || (i % 60), 'City' || (i % 100),
       (ARRAY['Chrome', 'Mobile Safari', 'Firefox', 'Edge', 'Samsung Internet', 'Opera'])[(i / 2) % 6 + 1],
       (100 + i % 30)::text,
       (ARRAY['Windows', 'iOS', 'Mac OS X', 'Android', 'Linux', 'Chrome OS'])[(i / 2) % 6 + 1],
       (10 + i % 5)::text,
       (ARRAY['desktop', 'mobile', 'desktop', 'mobile', 'tablet', 'other'])[(i / 2) % 6 + 1],
       -1 - i / 2,
       :now_us - 90::bigint * 86400000000 + i * (90::bigint * 86400000000 / :sessions),
       :now_us - 90::bigint * 86400000000 + i * (90::bigint * 86400000000 / :sessions) + 270000000
FROM generate_series(0, :sessions - 1) AS i;

-- Per session: visits at k = 0, 3, 6; clicks at 1, 4, 7; scrolls at 2, 5;
-- a heartbeat at 8 and session_end at 9: 3 page views and 3 clicks.
INSERT INTO events (public_id, session_id, kind, url, referrer, user_agent, label, metadata,
                    occurred_at, received_at)
SELECT 'e' || k, s.id, kinds.kind,
       'https://site.example/page-' || ((s.id * 7 + (k / 3) * 13) % 200),
       s.referrer, s.user_agent,
       CASE WHEN kinds.kind = 'click' THEN 'Button ' || ((s.id + k) % 30) END,
       CASE WHEN kinds.kind = 'click' THEN '{"label":"Button ' || ((s.id + k) % 30) || '"}' ELSE '{}' END,
       s.first_seen + k * 30000000, s.first_seen + k * 30000000
FROM sessions s
CROSS JOIN generate_series(0, 9) AS k
JOIN (VALUES (0, 'visit'), (1, 'click'), (2, 'scroll'), (3, 'visit'), (4, 'click'),
             (5, 'scroll'), (6, 'visit'), (7, 'click'), (8, 'heartbeat'), (9, 'session_end'))
     AS kinds (n, kind) ON kinds.n = k
ORDER BY s.first_seen, k;

CREATE UNIQUE INDEX events_session_public_id ON events (session_id, public_id);
CREATE INDEX events_occurred_at ON events (occurred_at);
CREATE INDEX events_kind_occurred_at ON events (kind, occurred_at);
VACUUM ANALYZE sessions;
VACUUM ANALYZE events;
