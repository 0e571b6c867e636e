DROP TABLE rollup_stats;
DROP TABLE rollup_session;
DROP TABLE rollup_visitors;
DROP TABLE rollup_counts;
DROP TABLE rollup_seen;
