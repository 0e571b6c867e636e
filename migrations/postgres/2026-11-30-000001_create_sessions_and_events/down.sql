DROP TABLE events;
DROP TABLE sessions;
