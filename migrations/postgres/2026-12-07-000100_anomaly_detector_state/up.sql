-- What the detecting instance (the holder of the `anomaly-detector` lease)
-- knows, written by it at every interval so that every instance can show
-- it on `GET /anomalies` and `/metrics`: its mode (`learning`, `cautious`
-- or `ready`), how much history its site series has, and how many series
-- it watches. One row per lease name. Times are microseconds since the
-- Unix epoch.
CREATE TABLE anomaly_detector_state (
    name        TEXT   PRIMARY KEY,
    mode        TEXT   NOT NULL,
    history_us  BIGINT NOT NULL,
    series      BIGINT NOT NULL,
    updated_us  BIGINT NOT NULL
);
