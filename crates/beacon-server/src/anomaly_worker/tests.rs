#![allow(clippy::unwrap_used, clippy::expect_used)]

use beacon_metrics::anomaly::{AnomalyKind, SeriesEvent};
use beacon_store::testing::TestDatabase;
use beacon_store::PoolOptions;
use chrono::TimeZone;

use super::*;

/// A detector that knows two days of nine page views per quarter, fed
/// up to `start`.
fn warmed(start: DateTime<Utc>) -> Fed {
    let mut detector = AnomalyDetector::new(DetectorConfig::default(), 0, 0).unwrap();
    let history = vec![Some(9); 2 * 96];
    detector
        .warm(
            &SeriesKey::Site,
            start - TimeDelta::days(2),
            Duration::from_secs(900),
            &history,
        )
        .unwrap();
    Fed {
        detector,
        next: start,
    }
}

fn two_silent_hours(store: &Store) -> (Fed, Vec<SeriesEvent>) {
    let start = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let mut fed = warmed(start);
    let mut events = Vec::new();
    for i in 1..=24 {
        events.extend(feed(
            store,
            &mut fed,
            start + TimeDelta::minutes(5 * i),
            TimeDelta::minutes(5),
        ));
    }
    (fed, events)
}

#[test]
fn two_hours_without_page_views_are_a_dark_period() {
    let db = TestDatabase::sqlite();
    let (fed, events) = two_silent_hours(&db.store());
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, Event::Opened(a) if a.kind == AnomalyKind::Dark)),
        "{events:?}"
    );
    assert_eq!(fed.detector.open().len(), 1);
}

#[test]
fn two_hours_the_database_cannot_be_read_are_a_gap_not_a_dark_period() {
    let db = TestDatabase::sqlite();
    // Not migrated: every read fails.
    let store = Store::connect(&db.url, &PoolOptions::default()).unwrap();
    assert!(store
        .page_views_per_interval(Utc::now(), Duration::from_secs(300), 1)
        .is_err());
    let (fed, events) = two_silent_hours(&store);
    assert!(events.is_empty(), "{events:?}");
    assert!(fed.detector.open().is_empty());
    assert_eq!(
        fed.next,
        Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap(),
        "the unread intervals are behind it"
    );
}

#[test]
fn a_watched_page_is_read_even_when_busier_pages_fill_the_list() {
    let db = TestDatabase::sqlite();
    let store = db.store();
    let start = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    // Twelve pages of three views each, and the watched one with one view.
    let pages = (0..12)
        .flat_map(|p| [format!("/p{p}"), format!("/p{p}"), format!("/p{p}")])
        .chain(["/quiet".to_owned()]);
    let views: Vec<String> = pages
        .enumerate()
        .map(|(i, page)| {
            format!(
                r#"{{"type":"visit","sessionId":"s{i}","url":"https://site{page}","timestamp":"{}"}}"#,
                (start + TimeDelta::seconds(i as i64)).to_rfc3339()
            )
        })
        .collect();
    let events = beacon_store::testing::parse_events(
        &format!(r#"{{"batch":[{}]}}"#, views.join(",")),
        start + TimeDelta::minutes(5),
        None,
    );
    store.insert_batch(&events).unwrap();
    let mut detector = AnomalyDetector::new(DetectorConfig::default(), 5, 5).unwrap();
    detector
        .warm(
            &SeriesKey::Page("https://site/quiet".to_owned()),
            start - TimeDelta::days(2),
            Duration::from_secs(900),
            &vec![Some(1); 2 * 96],
        )
        .unwrap();
    let listed = items(
        &store,
        &detector,
        beacon_store::ViewDimension::Pages,
        start,
        start + TimeDelta::minutes(5),
    )
    .unwrap();
    assert_eq!(
        listed[0], "https://site/quiet",
        "the watched page comes first"
    );
    assert_eq!(listed.len(), 11, "and the ten busiest: {listed:?}");
    assert!(!listed[1..].contains(&"https://site/quiet".to_owned()));
}
