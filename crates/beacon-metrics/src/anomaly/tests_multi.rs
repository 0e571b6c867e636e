//! Unit tests of the site detector (site, pages, referrers): exact, time
//! passed in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::tests::{steady, t, warmed, STEP, WEEK};
use super::*;

/// An [`AnomalyDetector`] with three weeks of a site of 50 views per
/// interval over five pages (20, 10, 8, 7, 5) and two referrers.
fn site() -> AnomalyDetector {
    let mut d = AnomalyDetector::new(DetectorConfig::default(), 5, 5).unwrap();
    d.warm(&SeriesKey::Site, t(0), STEP, &steady(50, 3 * WEEK))
        .unwrap();
    for (page, views) in PAGES {
        d.warm(
            &SeriesKey::Page(page.into()),
            t(0),
            STEP,
            &steady(views, 3 * WEEK),
        )
        .unwrap();
    }
    d.warm(
        &SeriesKey::Referrer("google.com".into()),
        t(0),
        STEP,
        &steady(30, 3 * WEEK),
    )
    .unwrap();
    d.warm(
        &SeriesKey::Referrer("(direct)".into()),
        t(0),
        STEP,
        &steady(20, 3 * WEEK),
    )
    .unwrap();
    d
}

const PAGES: [(&str, u64); 5] = [
    ("/", 20),
    ("/blog", 10),
    ("/about", 8),
    ("/docs", 7),
    ("/pricing", 5),
];

fn interval(d: &mut AnomalyDetector, i: usize, boost: u64, site_factor: u64) -> Vec<SeriesEvent> {
    let pages: Vec<(&str, u64)> = PAGES
        .iter()
        .map(|(p, v)| {
            (
                *p,
                v * site_factor + if *p == "/pricing" { boost } else { 0 },
            )
        })
        .collect();
    let referrers = [
        ("google.com", 30 * site_factor),
        ("(direct)", 20 * site_factor),
        ("news.example", boost),
    ];
    let counts = IntervalCounts {
        total: 50 * site_factor + boost,
        pages: &pages,
        referrers: &referrers,
    };
    d.observe(t(i), &counts).unwrap()
}

#[test]
fn one_page_fed_by_one_referrer_is_seen_though_the_total_hardly_moves() {
    let mut d = site();
    let mut events = Vec::new();
    for k in 0..4 {
        events.extend(interval(&mut d, 3 * WEEK + k, 25, 1));
    }
    let opened: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.event, Event::Opened(_)))
        .map(|e| e.series.clone())
        .collect();
    assert_eq!(opened, vec![SeriesKey::Page("/pricing".into())]);
    assert_eq!(d.open().len(), 1);
    assert!(
        d.series()
            .contains(&SeriesKey::Referrer("news.example".into())),
        "the newcomer is tracked"
    );
}

#[test]
fn a_site_wide_spike_is_reported_once_not_for_every_page() {
    let mut d = site();
    let mut events = Vec::new();
    for k in 0..4 {
        events.extend(interval(&mut d, 3 * WEEK + k, 0, 3));
    }
    let opened: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.event, Event::Opened(_)))
        .map(|e| e.series.clone())
        .collect();
    assert_eq!(opened, vec![SeriesKey::Site]);
    assert_eq!(d.open().len(), 1);
}

#[test]
fn a_detector_of_one_series_stays_a_few_kilobytes() {
    let d = warmed(&steady(50, 3 * WEEK));
    assert!(d.memory_bytes() < 8 * 1024, "{}", d.memory_bytes());
}

#[test]
fn a_page_first_seen_live_is_not_reported_on_before_two_weeks_of_history() {
    let mut d = AnomalyDetector::new(DetectorConfig::default(), 6, 5).unwrap();
    d.warm(&SeriesKey::Site, t(0), STEP, &steady(500, 3 * WEEK))
        .unwrap();
    let s = 3 * WEEK;
    // A new page with 10 views per interval for a day and a half, then a
    // burst of 60: tracked, but too new to speak for itself.
    let mut reported = Vec::new();
    for k in 0..(432 + 3) {
        let views = if k < 432 { 10 } else { 60 };
        let pages = [("/new", views)];
        let counts = IntervalCounts {
            total: 500 + views - 10,
            pages: &pages,
            referrers: &[],
        };
        reported.extend(d.observe(t(s + k), &counts).unwrap());
    }
    assert!(d.series().contains(&SeriesKey::Page("/new".into())));
    assert!(reported.is_empty(), "{reported:?}");
    // Warmed with two weeks, the same burst is reported.
    let mut warm = AnomalyDetector::new(DetectorConfig::default(), 6, 5).unwrap();
    warm.warm(&SeriesKey::Site, t(0), STEP, &steady(500, 3 * WEEK))
        .unwrap();
    warm.warm(
        &SeriesKey::Page("/new".into()),
        t(0),
        STEP,
        &steady(10, 3 * WEEK),
    )
    .unwrap();
    let mut reported = Vec::new();
    for k in 0..3 {
        let pages = [("/new", 60)];
        let counts = IntervalCounts {
            total: 550,
            pages: &pages,
            referrers: &[],
        };
        reported.extend(warm.observe(t(s + k), &counts).unwrap());
    }
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].series, SeriesKey::Page("/new".into()));
}
