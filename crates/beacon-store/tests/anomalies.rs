//! Stored anomalies, the detector's lease and the page-view counts it
//! reads, on SQLite always and on PostgreSQL whenever `TEST_DATABASE_URL`
//! is set.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration as StdDuration;

use beacon_store::{AnomalyRow, Store};
use chrono::{DateTime, Duration, TimeZone, Utc};

beacon_store::store_suite!(
    an_anomaly_is_stored_open_and_closed_in_place,
    a_range_lists_the_anomalies_that_overlap_it,
    a_lease_has_one_holder_until_it_expires,
    page_views_are_counted_per_interval_from_the_events,
    page_views_per_quarter_come_from_the_rollups,
);

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
}

fn row(series: &str, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> AnomalyRow {
    AnomalyRow {
        series: series.to_owned(),
        kind: "spike".to_owned(),
        onset_us: (start - Duration::minutes(5)).timestamp_micros(),
        start_us: start.timestamp_micros(),
        end_us: end.map(|e| e.timestamp_micros()),
        observed: 120.0,
        expected: 40.5,
        severity: 7.25,
    }
}

fn an_anomaly_is_stored_open_and_closed_in_place(store: &Store) {
    let open = row("page:https://site/post", t(10, 0), None);
    store.upsert_anomaly(&open, t(10, 5)).unwrap();
    assert_eq!(store.open_anomalies().unwrap(), vec![open.clone()]);
    let closed = AnomalyRow {
        end_us: Some(t(11, 0).timestamp_micros()),
        observed: 130.0,
        ..open
    };
    store.upsert_anomaly(&closed, t(12, 0)).unwrap();
    assert!(store.open_anomalies().unwrap().is_empty());
    assert_eq!(
        store.anomalies_between(t(0, 0), t(23, 0)).unwrap(),
        vec![closed],
        "the close updated the row, it did not add one"
    );
}

fn a_range_lists_the_anomalies_that_overlap_it(store: &Store) {
    let early = row("site", t(1, 0), Some(t(2, 0)));
    let middle = row("site", t(5, 0), Some(t(6, 0)));
    let open = row("referrer:https://news/", t(8, 0), None);
    for r in [&early, &middle, &open] {
        store.upsert_anomaly(r, t(9, 0)).unwrap();
    }
    assert_eq!(
        store.anomalies_between(t(4, 0), t(7, 0)).unwrap(),
        vec![middle.clone()]
    );
    assert_eq!(
        store.anomalies_between(t(5, 30), t(23, 0)).unwrap(),
        vec![middle, open.clone()],
        "an open anomaly overlaps every later range"
    );
    assert!(store
        .anomalies_between(t(2, 0), t(4, 0))
        .unwrap()
        .is_empty());
    assert_eq!(store.open_anomalies().unwrap(), vec![open]);
}

fn a_lease_has_one_holder_until_it_expires(store: &Store) {
    let ttl = StdDuration::from_secs(600);
    assert!(store.try_lease("detector", "a", t(10, 0), ttl).unwrap());
    assert!(!store.try_lease("detector", "b", t(10, 5), ttl).unwrap());
    assert!(
        store.try_lease("detector", "a", t(10, 5), ttl).unwrap(),
        "the holder renews"
    );
    assert!(
        !store.try_lease("detector", "b", t(10, 14), ttl).unwrap(),
        "the renewal moved the expiry"
    );
    assert!(
        store.try_lease("other", "b", t(10, 14), ttl).unwrap(),
        "leases are by name"
    );
    assert!(
        store.try_lease("detector", "b", t(10, 15), ttl).unwrap(),
        "an expired lease is free"
    );
    assert!(!store.try_lease("detector", "a", t(10, 16), ttl).unwrap());
}

fn visits(times: &[DateTime<Utc>]) -> Vec<beacon_model::NewEvent> {
    let body: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, at)| {
            format!(
                r#"{{"type":"visit","sessionId":"s{i}","url":"https://site/","timestamp":"{}"}}"#,
                at.to_rfc3339()
            )
        })
        .collect();
    // A click in the same interval is not a page view.
    let click = format!(
        r#"{{"type":"click","sessionId":"s0","data":{{"label":"x"}},"timestamp":"{}"}}"#,
        t(10, 0).to_rfc3339()
    );
    beacon_store::testing::parse_events(
        &format!(r#"{{"batch":[{},{click}]}}"#, body.join(",")),
        t(12, 0),
        None,
    )
}

fn page_views_are_counted_per_interval_from_the_events(store: &Store) {
    let at = |m: i64| t(10, 0) + Duration::minutes(m);
    store
        .insert_batch(&visits(&[
            at(-1),
            at(0),
            at(1),
            at(4),
            at(11),
            at(14),
            at(15),
        ]))
        .unwrap();
    let counts = store
        .page_views_per_interval(t(10, 0), StdDuration::from_secs(300), 3)
        .unwrap();
    assert_eq!(counts, vec![3, 0, 2]);
}

fn page_views_per_quarter_come_from_the_rollups(store: &Store) {
    let at = |m: i64| t(10, 0) + Duration::minutes(m);
    store
        .insert_batch(&visits(&[at(1), at(2), at(20), at(50)]))
        .unwrap();
    let (first, counts) = store.page_views_per_quarter(at(5), at(50)).unwrap();
    assert_eq!(first, t(10, 0));
    assert_eq!(counts, vec![0, 0, 0, 0], "nothing is rolled up yet");
    store.roll_up_all().unwrap();
    let (first, counts) = store.page_views_per_quarter(at(5), at(50)).unwrap();
    assert_eq!(first, t(10, 0));
    assert_eq!(counts, vec![2, 1, 0, 1]);
    let (_, counts) = store.page_views_per_quarter(at(0), at(45)).unwrap();
    assert_eq!(
        counts,
        vec![2, 1, 0],
        "a quarter starting at `to` is left out"
    );
}
