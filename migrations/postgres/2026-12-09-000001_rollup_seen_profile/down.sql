DROP TABLE rollup_seen_profile;
