-- Anomalies found by the detector (crates/beacon-metrics/src/anomaly), one
-- row each, stored by the one instance that holds the `anomaly-detector`
-- lease. Times are microseconds since the Unix epoch, as everywhere.
-- `series` is `site`, `page:<url>` or `referrer:<referrer>`; `kind` is
-- `spike`, `drop` or `dark`. An open anomaly has no `end_us`; the
-- row is written when it opens and updated when it closes.
CREATE TABLE anomalies (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    series      TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    onset_us    BIGINT NOT NULL,
    start_us    BIGINT NOT NULL,
    end_us      BIGINT,
    observed    DOUBLE PRECISION NOT NULL,
    expected    DOUBLE PRECISION NOT NULL,
    severity    DOUBLE PRECISION NOT NULL,
    opened_at   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (series, kind, start_us)
);
CREATE INDEX anomalies_start ON anomalies (start_us);
-- The open ones are read by every instance at every interval.
CREATE INDEX anomalies_open ON anomalies (end_us) WHERE end_us IS NULL;

-- Named leases: one holder at a time, until `expires_us`. A holder
-- renews its lease before it expires; anyone may take an expired one.
CREATE TABLE leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_us BIGINT NOT NULL
);
