//! Page views per page and per referrer as the anomaly detector reads them,
//! and the detector's recorded state, on SQLite always and on PostgreSQL
//! whenever `TEST_DATABASE_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration as StdDuration;

use beacon_store::{DetectorStateRow, ItemCounts, Store, ViewDimension};
use chrono::{DateTime, Duration, TimeZone, Utc};

beacon_store::store_suite!(
    the_busiest_pages_and_referrers_of_a_range_come_from_its_page_views,
    item_views_are_counted_per_interval_for_the_items_asked,
    item_views_per_quarter_and_the_busiest_items_come_from_the_rollups,
    the_detector_state_is_recorded_in_place,
    a_kept_bots_page_views_are_not_counted,
);

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
}

/// Page views `(minutes after 10:00, url path, referrer)`, and one click
/// at 10:00 on `/a` from `https://news/` that is not a page view.
fn store_views(store: &Store, views: &[(i64, &str, &str)]) {
    let mut body: Vec<String> = views
        .iter()
        .enumerate()
        .map(|(i, (m, path, referrer))| {
            format!(
                r#"{{"type":"visit","sessionId":"s{i}","url":"https://site{path}","referrer":"{referrer}","timestamp":"{}"}}"#,
                (t(10, 0) + Duration::minutes(*m)).to_rfc3339()
            )
        })
        .collect();
    body.push(format!(
        r#"{{"type":"click","sessionId":"s0","url":"https://site/a","referrer":"https://news/","data":{{"label":"x"}},"timestamp":"{}"}}"#,
        t(10, 0).to_rfc3339()
    ));
    let events = beacon_store::testing::parse_events(
        &format!(r#"{{"batch":[{}]}}"#, body.join(",")),
        t(12, 0),
        None,
    );
    store.insert_batch(&events).unwrap();
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

const VIEWS: &[(i64, &str, &str)] = &[
    (-1, "/a", "https://news/"),
    (0, "/a", "https://news/"),
    (1, "/a", "https://news/"),
    (2, "/b", ""),
    (3, "/b", "https://search/"),
    (4, "/c", ""),
    (6, "/b", ""),
    (7, "/b", ""),
    (20, "/c", "https://search/"),
];

fn the_busiest_pages_and_referrers_of_a_range_come_from_its_page_views(store: &Store) {
    store_views(store, VIEWS);
    let pages = store
        .busiest_items(ViewDimension::Pages, t(10, 0), t(10, 10), 10)
        .unwrap();
    assert_eq!(
        pages,
        strings(&["https://site/b", "https://site/a", "https://site/c"])
    );
    let top = store
        .busiest_items(ViewDimension::Pages, t(10, 0), t(10, 10), 1)
        .unwrap();
    assert_eq!(top, strings(&["https://site/b"]), "at most `limit`");
    let referrers = store
        .busiest_items(ViewDimension::Referrers, t(10, 0), t(10, 10), 10)
        .unwrap();
    assert_eq!(
        referrers,
        strings(&["https://news/", "https://search/"]),
        "no empty referrer, and the click does not count"
    );
}

fn item_views_are_counted_per_interval_for_the_items_asked(store: &Store) {
    store_views(store, VIEWS);
    let items = strings(&["https://site/a", "https://site/b", "https://site/none"]);
    let counts = store
        .item_views_per_interval(
            ViewDimension::Pages,
            &items,
            t(10, 0),
            StdDuration::from_secs(300),
            3,
        )
        .unwrap();
    let expect = |item: &str, counts: &[u64]| ItemCounts {
        item: item.to_owned(),
        counts: counts.to_vec(),
    };
    assert_eq!(
        counts,
        vec![
            expect("https://site/a", &[2, 0, 0]),
            expect("https://site/b", &[2, 2, 0]),
            expect("https://site/none", &[0, 0, 0]),
        ],
        "one entry per item asked, in order; /c is not asked"
    );
    let referrers = store
        .item_views_per_interval(
            ViewDimension::Referrers,
            &strings(&["https://search/"]),
            t(10, 0),
            StdDuration::from_secs(300),
            5,
        )
        .unwrap();
    assert_eq!(referrers, vec![expect("https://search/", &[1, 0, 0, 0, 1])]);
    assert!(store
        .item_views_per_interval(
            ViewDimension::Pages,
            &[],
            t(10, 0),
            StdDuration::from_secs(300),
            3
        )
        .unwrap()
        .is_empty());
}

fn item_views_per_quarter_and_the_busiest_items_come_from_the_rollups(store: &Store) {
    store_views(store, VIEWS);
    let items = strings(&["https://site/b", "https://site/c"]);
    let (_, before) = store
        .item_views_per_quarter(ViewDimension::Pages, &items, t(9, 50), t(10, 30))
        .unwrap();
    assert!(
        before.iter().all(|c| c.counts.iter().all(|&n| n == 0)),
        "nothing is rolled up yet: {before:?}"
    );
    store.roll_up_all().unwrap();
    let (first, counts) = store
        .item_views_per_quarter(ViewDimension::Pages, &items, t(9, 50), t(10, 30))
        .unwrap();
    assert_eq!(first, t(9, 45));
    assert_eq!(counts[0].counts, vec![0, 4, 0], "/b per quarter");
    assert_eq!(counts[1].counts, vec![0, 1, 1], "/c per quarter");
    let (_, referrers) = store
        .item_views_per_quarter(
            ViewDimension::Referrers,
            &strings(&["https://news/"]),
            t(9, 45),
            t(10, 15),
        )
        .unwrap();
    assert_eq!(referrers[0].counts, vec![1, 2], "the 9:59 view is in 9:45");
    let busiest = store
        .busiest_items_rolled_up(ViewDimension::Pages, t(0, 0), t(23, 0), 2)
        .unwrap();
    assert_eq!(busiest, strings(&["https://site/b", "https://site/a"]));
    let referrers = store
        .busiest_items_rolled_up(ViewDimension::Referrers, t(0, 0), t(23, 0), 5)
        .unwrap();
    assert_eq!(referrers, strings(&["https://news/", "https://search/"]));
}

fn the_detector_state_is_recorded_in_place(store: &Store) {
    assert_eq!(store.detector_state("detector").unwrap(), None);
    let learning = DetectorStateRow {
        mode: "learning".to_owned(),
        history_us: 3_600_000_000,
        series: 1,
        updated_us: t(10, 0).timestamp_micros(),
    };
    store.set_detector_state("detector", &learning).unwrap();
    assert_eq!(
        store.detector_state("detector").unwrap(),
        Some(learning.clone())
    );
    let ready = DetectorStateRow {
        mode: "ready".to_owned(),
        history_us: 20 * 86_400_000_000,
        series: 11,
        updated_us: t(10, 5).timestamp_micros(),
    };
    store.set_detector_state("detector", &ready).unwrap();
    assert_eq!(store.detector_state("detector").unwrap(), Some(ready));
    assert_eq!(store.detector_state("other").unwrap(), None);
}

fn a_kept_bots_page_views_are_not_counted(store: &Store) {
    store_views(store, VIEWS);
    let bot = std::sync::Arc::new(beacon_model::VisitorProfile {
        bot: true,
        ..beacon_model::VisitorProfile::default()
    });
    let crawler = beacon_store::testing::parse_events(
        &format!(
            r#"{{"batch":[{{"type":"visit","sessionId":"crawler","url":"https://site/a","referrer":"https://news/","timestamp":"{0}"}},{{"type":"visit","sessionId":"crawler","url":"https://site/d","timestamp":"{0}"}}]}}"#,
            t(10, 1).to_rfc3339()
        ),
        t(12, 0),
        None,
    )
    .into_iter()
    .map(|e| e.with_profile(std::sync::Arc::clone(&bot)))
    .collect::<Vec<_>>();
    store.insert_batch(&crawler).unwrap();
    let site = store
        .page_views_per_interval(t(10, 0), StdDuration::from_secs(300), 1)
        .unwrap();
    assert_eq!(
        site,
        vec![5],
        "the five minutes' people only, not the crawler's two"
    );
    let pages = store
        .busiest_items(ViewDimension::Pages, t(10, 0), t(10, 10), 10)
        .unwrap();
    assert!(!pages.contains(&"https://site/d".to_owned()), "{pages:?}");
    let counts = store
        .item_views_per_interval(
            ViewDimension::Pages,
            &strings(&["https://site/a"]),
            t(10, 0),
            StdDuration::from_secs(300),
            1,
        )
        .unwrap();
    assert_eq!(counts[0].counts, vec![2]);
}
