-- Where a visitor was seen with the items of its session dimensions
-- (crates/beacon-store/src/rollup/plan.rs, `SessionItems`): one row per
-- visitor key, quarter and set of items (country code; region and city,
-- each after its country and U+001F; browser, OS and device), an empty
-- string where the session has none. It replaces the six `rollup_seen`
-- rows (dimensions 4 to 9) a pass wrote per visitor and quarter; those
-- written so far mean what they meant and are read alongside, so nothing
-- is converted. Read by visitor key, like `rollup_seen`.
CREATE TABLE rollup_seen_profile (
    visitor BIGINT NOT NULL,
    quarter BIGINT NOT NULL,
    country TEXT   NOT NULL,
    region  TEXT   NOT NULL,
    city    TEXT   NOT NULL,
    browser TEXT   NOT NULL,
    os      TEXT   NOT NULL,
    device  TEXT   NOT NULL,
    PRIMARY KEY (visitor, quarter, country, region, city, browser, os, device)
);
