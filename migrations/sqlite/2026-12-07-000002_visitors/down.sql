DROP TABLE visitor_salts;
ALTER TABLE sessions DROP COLUMN bot;
ALTER TABLE sessions DROP COLUMN region;
ALTER TABLE sessions DROP COLUMN device;
ALTER TABLE sessions DROP COLUMN os_version;
ALTER TABLE sessions DROP COLUMN os;
ALTER TABLE sessions DROP COLUMN browser_version;
ALTER TABLE sessions DROP COLUMN browser;
ALTER TABLE sessions DROP COLUMN visitor_id;
