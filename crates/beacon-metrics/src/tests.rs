//! Unit tests of the live aggregator: exact, with explicit `now`s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use crate::{LiveConfig, LiveEvent, LiveMetrics, Snapshot};

#[path = "../tests/common/owned_event.rs"]
mod owned_event;
use owned_event::Ev;

trait Feed {
    /// Records `e` the way the server does: label extracted once, metadata
    /// as JSON text.
    fn feed(&mut self, e: Ev);
}

impl Feed for LiveMetrics {
    fn feed(&mut self, e: Ev) {
        let json = e.metadata.to_string();
        self.record(&e.view(&json));
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap()
}

/// `t0 + ms` milliseconds.
fn at(ms: i64) -> DateTime<Utc> {
    t0() + Duration::milliseconds(ms)
}

fn ev(id: i64, kind: &str, session: &str, ms: i64) -> Ev {
    Ev {
        id,
        kind: kind.to_owned(),
        session: session.to_owned(),
        url: None,
        referrer: None,
        timestamp: at(ms),
        metadata: json!({}),
        visitor: None,
        country: None,
        device: None,
    }
}

fn click(id: i64, session: &str, ms: i64, label: Value) -> Ev {
    Ev {
        metadata: json!({ "label": label }),
        ..ev(id, "click", session, ms)
    }
}

fn page(id: i64, kind: &str, session: &str, ms: i64, url: &str, referrer: Option<&str>) -> Ev {
    Ev {
        url: Some(url.to_owned()),
        referrer: referrer.map(str::to_owned),
        ..ev(id, kind, session, ms)
    }
}

/// An aggregator whose clock is set at `t0 - 10 min`, so the tests'
/// events (from `t0 - 2 min` on) are accepted.
fn live() -> LiveMetrics {
    let mut m = LiveMetrics::new(LiveConfig::default());
    m.expire(at(-600_000));
    m
}

fn clicks(s: &Snapshot) -> Vec<(&str, u64)> {
    s.top_clicks
        .iter()
        .map(|c| (c.label.as_str(), c.count))
        .collect()
}

#[test]
fn minute_window_excludes_exactly_now_minus_60s_and_includes_one_ms_later() {
    let mut m = live();
    m.feed(ev(1, "visit", "a", 0)); // exactly now - 60 s: out
    m.feed(ev(2, "visit", "b", 1)); // now - 60 s + 1 ms: in
    m.feed(ev(3, "visit", "c", 60_000)); // exactly now: in
    m.feed(ev(4, "scroll", "c", 59_999));
    let s = m.snapshot(at(60_000));
    assert_eq!(s.visits_last_min, 2);
    assert_eq!(s.events_last_min, 3);
}

#[test]
fn window_end_is_now_rounded_up_to_the_second() {
    let mut m = live();
    m.feed(ev(1, "visit", "a", 500)); // in (0.5 s, 60.5 s]? rounded: (1 s, 61 s] -> out
    m.feed(ev(2, "visit", "b", 1_001));
    m.feed(ev(3, "visit", "c", 60_900)); // after now, but before the rounded end: in
    let s = m.snapshot(at(60_500));
    assert_eq!(s.visits_last_min, 2);
    assert_eq!(s.timestamp, at(60_500));
    assert!(serde_json::to_string(&s)
        .unwrap()
        .starts_with(r#"{"timestamp":"2026-11-30T10:01:00Z","#));
}

#[test]
fn active_window_edges_are_exclusive_at_the_old_end() {
    let mut m = live();
    m.feed(ev(1, "heartbeat", "old", 0));
    m.feed(ev(2, "heartbeat", "new", 1));
    assert_eq!(m.snapshot(at(60_000)).active_users, 1);
    assert_eq!(m.snapshot(at(61_000)).active_users, 0);
    assert_eq!(m.active_sessions(), 0);
    assert_eq!(m.stats().tracked_sessions, 0);
}

#[test]
fn late_events_land_in_their_own_bucket() {
    let mut m = live();
    m.feed(ev(1, "visit", "a", 50_000));
    let s = m.snapshot(at(50_000));
    assert_eq!(s.visits_last_min, 1);
    // Arrives after the clock moved on, dated 40 s back: still in the window.
    m.feed(ev(2, "visit", "b", 10_000));
    // Dated before the window of the current clock: never counted again.
    m.feed(ev(3, "visit", "c", -20_000));
    let s = m.snapshot(at(55_000));
    assert_eq!(s.visits_last_min, 2);
    assert_eq!(s.active_users, 2);
    // The late visit leaves the window at its own time, not at arrival time.
    let s = m.snapshot(at(70_000));
    assert_eq!(s.visits_last_min, 1);
    assert_eq!(s.active_users, 1);
    let s = m.snapshot(at(110_000));
    assert_eq!(s.visits_last_min, 0);
    assert_eq!(s.active_users, 0);
}

#[test]
fn counts_and_sessions_expire_and_memory_is_released() {
    let mut m = live();
    for i in 0..100 {
        let e = page(
            i,
            "visit",
            &format!("s{i}"),
            i * 100,
            &format!("/p{}", i % 7),
            Some("r"),
        );
        m.feed(e);
        m.feed(click(
            1000 + i,
            &format!("s{i}"),
            i * 100,
            json!(format!("l{}", i % 3)),
        ));
    }
    let s = m.snapshot(at(10_000));
    assert_eq!(s.active_users, 100);
    assert_eq!(s.events_last_min, 200);
    let busy = m.approx_memory_bytes();
    let s = m.snapshot(at(10_000) + Duration::days(2));
    assert_eq!(
        (s.active_users, s.visits_last_min, s.events_last_min),
        (0, 0, 0)
    );
    assert!(s.top_clicks.is_empty() && s.top_pages.is_empty() && s.top_referrers.is_empty());
    let st = m.stats();
    assert_eq!(
        (
            st.tracked_sessions,
            st.interned_urls,
            st.interned_referrers,
            st.interned_labels
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(st.recent_events, 25);
    assert!(m.approx_memory_bytes() < busy);
}

#[test]
fn session_end_leaves_at_once() {
    let mut m = live();
    m.feed(page(1, "visit", "a", 1_000, "/x", None));
    m.feed(ev(2, "heartbeat", "b", 2_000));
    assert_eq!(m.snapshot(at(3_000)).active_users, 2);
    m.feed(ev(3, "session_end", "a", 3_000));
    let s = m.snapshot(at(3_000));
    assert_eq!(s.active_users, 1);
    assert!(s.top_pages.is_empty());
    // Ended sessions stay tracked until they leave the window.
    assert_eq!(m.stats().tracked_sessions, 2);
}

#[test]
fn session_reactivates_after_end_only_with_a_later_event() {
    let mut m = live();
    m.feed(ev(1, "heartbeat", "a", 1_000));
    m.feed(ev(2, "session_end", "a", 5_000));
    // Arrives late but is older than the end: stays ended.
    m.feed(ev(3, "heartbeat", "a", 4_000));
    assert_eq!(m.snapshot(at(6_000)).active_users, 0);
    // Same millisecond as the end: not later, stays ended.
    m.feed(ev(4, "heartbeat", "a", 5_000));
    assert_eq!(m.snapshot(at(6_000)).active_users, 0);
    m.feed(ev(5, "visit", "a", 5_001));
    assert_eq!(m.snapshot(at(6_000)).active_users, 1);
    // An end that arrives late but is dated after the visit ends it again.
    m.feed(ev(6, "session_end", "a", 5_500));
    assert_eq!(m.snapshot(at(6_000)).active_users, 0);
}

#[test]
fn top_clicks_breaks_ties_by_label_and_keeps_five() {
    let mut m = live();
    let labels = [
        ("b", 3),
        ("a", 3),
        ("c", 3),
        ("z", 5),
        ("y", 1),
        ("x", 1),
        ("w", 2),
    ];
    let mut id = 0;
    for (label, n) in labels {
        for _ in 0..n {
            id += 1;
            m.feed(click(id, "s", id * 10, json!(label)));
        }
    }
    let s = m.snapshot(at(10_000));
    assert_eq!(
        clicks(&s),
        vec![("z", 5), ("a", 3), ("b", 3), ("c", 3), ("w", 2)]
    );
}

#[test]
fn click_without_string_label_counts_as_unknown() {
    let mut m = live();
    m.feed(click(1, "s", 0, json!(42)));
    m.feed(click(2, "s", 0, Value::Null));
    m.feed(ev(3, "click", "s", 0)); // no label at all
    m.feed(click(4, "s", 0, json!("Projects")));
    m.feed(click(5, "s", 0, json!("")));
    let s = m.snapshot(at(1_000));
    assert_eq!(clicks(&s), vec![("unknown", 3), ("", 1), ("Projects", 1)]);
}

#[test]
fn click_window_spans_24h_to_the_minute() {
    let mut m = live();
    let day = 24 * 3600 * 1000;
    m.feed(click(1, "s", -100_000, json!("old"))); // in (t0 - 2 min, t0 - 1 min]
    m.feed(click(2, "s", -60_000, json!("edge"))); // last ms of that bucket
    m.feed(click(3, "s", -59_999, json!("next"))); // first ms of the next one
    let end = at(day - 60_000);
    // End rounded up to the minute is t0 + 24h - 1 min: window (t0 - 1 min, ...].
    assert_eq!(clicks(&m.snapshot(end)), vec![("next", 1)]);
    let mut m = live();
    m.feed(click(1, "s", -100_000, json!("old")));
    m.feed(click(2, "s", -60_000, json!("edge")));
    // 1 ms before the edge the end rounds up to the same minute: still in.
    let s = m.snapshot(at(day - 120_001));
    assert_eq!(clicks(&s), vec![("edge", 1), ("old", 1)]);
}

#[test]
fn recent_events_are_newest_first_by_timestamp_then_id_and_capped() {
    let mut m = live();
    // 30 events, arrival order scrambled, some timestamp ties.
    let mut order: Vec<i64> = (0..30).collect();
    order.reverse();
    order.swap(3, 17);
    for i in order {
        m.feed(ev(100 - i, "scroll", "s", (i / 2) * 1_000));
    }
    let s = m.snapshot(at(20_000));
    assert_eq!(s.recent_events.len(), 25);
    let got: Vec<(i64, i64)> = s
        .recent_events
        .iter()
        .map(|e| {
            (
                e.timestamp.timestamp_millis() - t0().timestamp_millis(),
                e.id,
            )
        })
        .collect();
    let mut want: Vec<(i64, i64)> = (0..30).map(|i| ((i / 2) * 1_000, 100 - i)).collect();
    want.sort_by(|a, b| b.cmp(a));
    want.truncate(25);
    assert_eq!(got, want);
    // An old event does not displace newer ones; a newer one does.
    m.feed(ev(1, "scroll", "s", -1_000));
    m.feed(ev(2, "scroll", "s", 15_000));
    let s = m.snapshot(at(20_000));
    assert_eq!(s.recent_events[0].id, 2);
    assert!(s.recent_events.iter().all(|e| e.id != 1));
}

#[test]
fn top_pages_use_current_url_and_referrers_the_first_one() {
    let mut m = live();
    m.feed(page(
        1,
        "visit",
        "a",
        1_000,
        "/home",
        Some("https://g.example/"),
    ));
    m.feed(page(
        2,
        "visit",
        "a",
        2_000,
        "/blog",
        Some("https://a.example/"),
    ));
    m.feed(page(3, "visit", "b", 1_500, "/blog", None));
    m.feed(page(4, "visit", "b", 2_500, "", Some("")));
    // Late, older: neither moves b's url nor sets an earlier referrer than it has.
    m.feed(page(
        5,
        "visit",
        "b",
        1_200,
        "/home",
        Some("https://b.example/"),
    ));
    m.feed(page(
        6,
        "visit",
        "c",
        2_000,
        "/home",
        Some("https://g.example/"),
    ));
    // Late event with an earlier referrer: a's first referrer is this one.
    m.feed(page(
        7,
        "visit",
        "a",
        500,
        "/old",
        Some("https://first.example/"),
    ));
    let s = m.snapshot(at(3_000));
    let pages: Vec<_> = s
        .top_pages
        .iter()
        .map(|p| (p.url.as_str(), p.visitors))
        .collect();
    assert_eq!(pages, vec![("/blog", 2), ("/home", 1)]);
    let refs: Vec<_> = s
        .top_referrers
        .iter()
        .map(|r| (r.referrer.as_str(), r.visitors))
        .collect();
    assert_eq!(
        refs,
        vec![
            ("https://b.example/", 1),
            ("https://first.example/", 1),
            ("https://g.example/", 1)
        ]
    );
    // b ends: its url and referrer stop counting.
    m.feed(ev(8, "session_end", "b", 2_600));
    let s = m.snapshot(at(3_000));
    let pages: Vec<_> = s
        .top_pages
        .iter()
        .map(|p| (p.url.as_str(), p.visitors))
        .collect();
    assert_eq!(pages, vec![("/blog", 1), ("/home", 1)]);
    assert_eq!(s.top_referrers.len(), 2);
}

#[test]
fn snapshot_serializes_to_the_stream_contract() {
    let mut m = live();
    m.expire(at(0));
    m.feed(Ev {
        id: 3,
        kind: "visit".into(),
        session: "1764496800000-k3j9x2".into(),
        url: Some("https://portfolio.example/".into()),
        referrer: Some("https://www.google.com/".into()),
        timestamp: at(1_000),
        metadata: json!({"country": "FR"}),
        visitor: Some(-7),
        country: Some("FR".into()),
        device: Some("desktop".into()),
    });
    m.feed(Ev {
        id: 4,
        kind: "click".into(),
        session: "1764496800000-k3j9x2".into(),
        url: Some("https://portfolio.example/".into()),
        referrer: None,
        timestamp: at(4_250),
        metadata: json!({"label": "Projects"}),
        visitor: Some(-7),
        country: Some("FR".into()),
        device: Some("desktop".into()),
    });
    m.record_dropped("bot", 3, at(5_000));
    let s = m.snapshot(at(5_999));
    // What the seed dashboard reads, unchanged and in the same order...
    let seed = r#"{"timestamp":"2026-11-30T10:00:05Z","active_users":1,"visits_last_min":1,"top_clicks":[{"label":"Projects","count":1}],"recent_events":[{"id":4,"type":"click","timestamp":"2026-11-30T10:00:04.250Z","url":"https://portfolio.example/","referrer":null,"metadata":{"label":"Projects"},"session_token":"1764496800000-k3j9x2"},{"id":3,"type":"visit","timestamp":"2026-11-30T10:00:01Z","url":"https://portfolio.example/","referrer":"https://www.google.com/","metadata":{"country":"FR"},"session_token":"1764496800000-k3j9x2"}],"events_last_min":2,"top_pages":[{"url":"https://portfolio.example/","visitors":1}],"top_referrers":[{"referrer":"https://www.google.com/","visitors":1}]}"#;
    // ...then the fields added since.
    let added = r#","top_countries":[{"country":"FR","visitors":1}],"top_devices":[{"device":"desktop","visitors":1}],"bots_last_min":3,"dropped_last_min":{"bot":3}}"#;
    let want = format!("{}{added}", &seed[..seed.len() - 1]);
    assert_eq!(serde_json::to_string(&s).unwrap(), want);
    let mut back: Snapshot = serde_json::from_str(&want).unwrap();
    back.timestamp = s.timestamp; // sent in whole seconds
    assert_eq!(back, s);
    // A payload from before the added fields still reads, with them empty.
    let old: Snapshot = serde_json::from_str(seed).unwrap();
    assert_eq!(old.recent_events, s.recent_events);
    assert!(old.top_countries.is_empty() && old.top_devices.is_empty());
    assert_eq!((old.bots_last_min, old.dropped_last_min.len()), (0, 0));
}

#[test]
fn far_future_events_are_rejected_and_near_future_ones_wait_for_the_window() {
    let mut m = live(); // clock t0 - 10 min, max_future 15 min
    m.feed(ev(1, "visit", "a", 5 * 60_000)); // clock + 15 min: accepted
    m.feed(ev(2, "visit", "b", 5 * 60_000 + 1)); // beyond: rejected
    assert_eq!(m.stats().rejected_future, 1);
    let s = m.snapshot(at(0));
    assert_eq!(s.visits_last_min, 0);
    assert_eq!(s.active_users, 1); // future activity counts as active
    assert_eq!(s.recent_events.len(), 1);
    assert_eq!(m.snapshot(at(5 * 60_000)).visits_last_min, 1);
}

#[test]
fn first_expire_drops_what_was_fed_too_far_ahead_of_it() {
    let mut m = LiveMetrics::new(LiveConfig::default());
    m.feed(ev(1, "visit", "a", 0));
    m.feed(ev(2, "visit", "b", 3_600_000)); // an hour ahead of the first clock
    m.feed(click(3, "b", 3_600_000, json!("x")));
    m.feed(ev(4, "heartbeat", "a", 3_600_000 - 1)); // a is dropped whole
    m.feed(ev(5, "visit", "c", 10_000));
    let s = m.snapshot(at(30_000));
    assert_eq!(s.visits_last_min, 2);
    assert_eq!(s.active_users, 1);
    assert!(s.top_clicks.is_empty());
    assert_eq!(
        s.recent_events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![5, 1]
    );
}

#[test]
fn clock_never_goes_back() {
    let mut m = live();
    m.feed(ev(1, "visit", "a", 0));
    assert_eq!(m.snapshot(at(30_000)).visits_last_min, 1);
    assert_eq!(m.snapshot(at(70_000)).visits_last_min, 0);
    let s = m.snapshot(at(30_000));
    assert_eq!((s.visits_last_min, s.active_users), (0, 0));
    assert_eq!(s.timestamp, at(30_000));
}

#[test]
fn caps_bound_sessions_and_labels() {
    let cfg = LiveConfig {
        max_sessions: 2,
        max_labels: 1,
        max_label_bytes: 4, // "été" is 5 bytes; 4 falls inside the last "é"
        ..LiveConfig::default()
    };
    let mut m = LiveMetrics::new(cfg);
    m.expire(at(0));
    for (i, s) in ["a", "b", "c"].into_iter().enumerate() {
        m.feed(click(i as i64, s, 1_000, json!("été")));
    }
    m.feed(click(9, "a", 1_000, json!("other")));
    let s = m.snapshot(at(2_000));
    assert_eq!(s.active_users, 2);
    assert_eq!(clicks(&s), vec![("ét", 3)]);
    let st = m.stats();
    assert_eq!((st.dropped_sessions, st.dropped_labels), (1, 1));
}

#[test]
fn memory_per_active_session_stays_under_256_bytes() {
    let mut m = live();
    let n = 20_000;
    for i in 0..n {
        m.feed(Ev {
            url: Some(format!("https://site.example/articles/page-{:03}", i % 500)),
            referrer: Some(format!("https://ref{}.example/", i % 20)),
            ..ev(i, "heartbeat", &format!("1764496800000-{i:06}"), i)
        });
    }
    assert_eq!(m.snapshot(at(n)).active_users, n as u64);
    let per_session = m.approx_memory_bytes() / n as usize;
    assert!(per_session <= 256, "{per_session} bytes per session");
}

/// A page view of `session` by `visitor` from `country` on `device`.
fn seen(
    id: i64,
    session: &str,
    ms: i64,
    url: &str,
    visitor: Option<i64>,
    country: Option<&str>,
    device: Option<&str>,
) -> Ev {
    Ev {
        url: Some(url.to_owned()),
        visitor,
        country: country.map(str::to_owned),
        device: device.map(str::to_owned),
        ..ev(id, "visit", session, ms)
    }
}

fn pages(s: &Snapshot) -> Vec<(&str, u64)> {
    s.top_pages
        .iter()
        .map(|p| (p.url.as_str(), p.visitors))
        .collect()
}

fn countries(s: &Snapshot) -> Vec<(&str, u64)> {
    s.top_countries
        .iter()
        .map(|c| (c.country.as_str(), c.visitors))
        .collect()
}

fn devices(s: &Snapshot) -> Vec<(&str, u64)> {
    s.top_devices
        .iter()
        .map(|d| (d.device.as_str(), d.visitors))
        .collect()
}

#[test]
fn one_visitor_in_two_tabs_is_one_visitor_but_two_active_users() {
    let mut m = live();
    let fr = Some("FR");
    let desk = Some("desktop");
    m.feed(seen(1, "tab1", 1_000, "/home", Some(-5), fr, desk));
    m.feed(seen(2, "tab2", 2_000, "/home", Some(-5), fr, desk));
    m.feed(Ev {
        referrer: Some("https://g.example/".into()),
        ..seen(3, "tab2", 2_500, "/home", Some(-5), fr, desk)
    });
    m.feed(Ev {
        referrer: Some("https://g.example/".into()),
        ..seen(4, "tab1", 1_500, "/home", Some(-5), fr, desk)
    });
    let s = m.snapshot(at(3_000));
    assert_eq!(s.active_users, 2);
    assert_eq!(pages(&s), vec![("/home", 1)]);
    assert_eq!(s.top_referrers[0].visitors, 1);
    assert_eq!(countries(&s), vec![("FR", 1)]);
    assert_eq!(devices(&s), vec![("desktop", 1)]);
    assert_eq!(m.stats().active_visitor_ids, 1);

    // The second tab moves on: one visitor on each page, still one per country.
    m.feed(seen(5, "tab2", 4_000, "/blog", Some(-5), fr, desk));
    let s = m.snapshot(at(4_000));
    assert_eq!(pages(&s), vec![("/blog", 1), ("/home", 1)]);
    assert_eq!(countries(&s), vec![("FR", 1)]);

    // A third tab on /blog: still one visitor there.
    m.feed(seen(6, "tab3", 4_500, "/blog", Some(-5), fr, desk));
    let s = m.snapshot(at(5_000));
    assert_eq!(s.active_users, 3);
    assert_eq!(pages(&s), vec![("/blog", 1), ("/home", 1)]);

    // The tabs close one by one; the visitor counts until the last one.
    m.feed(ev(7, "session_end", "tab1", 6_000));
    let s = m.snapshot(at(6_000));
    assert_eq!(pages(&s), vec![("/blog", 1)]);
    assert_eq!(countries(&s), vec![("FR", 1)]);
    m.feed(ev(8, "session_end", "tab2", 6_000));
    assert_eq!(pages(&m.snapshot(at(6_000))), vec![("/blog", 1)]);
    m.feed(ev(9, "session_end", "tab3", 6_000));
    let s = m.snapshot(at(6_000));
    assert_eq!(s.active_users, 0);
    assert!(s.top_pages.is_empty() && s.top_countries.is_empty() && s.top_devices.is_empty());
    assert_eq!(m.stats().active_visitor_ids, 0);

    // Reopened later, the same visitor counts once again.
    m.feed(seen(10, "tab1", 7_000, "/home", Some(-5), fr, desk));
    m.feed(seen(11, "tab2", 7_000, "/home", Some(-5), fr, desk));
    assert_eq!(pages(&m.snapshot(at(7_000))), vec![("/home", 1)]);
}

#[test]
fn sessions_without_a_visitor_id_each_count_as_their_own_visitor() {
    let mut m = live();
    m.feed(seen(1, "old1", 1_000, "/home", None, Some("DE"), None));
    m.feed(seen(2, "old2", 1_000, "/home", None, Some("DE"), None));
    m.feed(seen(3, "new1", 1_000, "/home", Some(-1), Some("DE"), None));
    m.feed(seen(4, "new2", 1_000, "/home", Some(-1), Some("DE"), None));
    m.feed(seen(5, "new3", 1_000, "/home", Some(-2), Some("DE"), None));
    let s = m.snapshot(at(2_000));
    assert_eq!(s.active_users, 5);
    assert_eq!(pages(&s), vec![("/home", 4)]);
    assert_eq!(countries(&s), vec![("DE", 4)]);
    assert!(s.top_devices.is_empty(), "no session has a device type");
    assert_eq!(m.stats().active_visitor_ids, 2);
}

#[test]
fn a_session_takes_the_first_profile_it_is_given_and_keeps_it() {
    let mut m = live();
    // First recorded without a profile: its own visitor, no country.
    m.feed(seen(1, "a", 1_000, "/home", None, None, None));
    m.feed(seen(
        2,
        "b",
        1_000,
        "/home",
        Some(-9),
        Some("FR"),
        Some("mobile"),
    ));
    assert_eq!(pages(&m.snapshot(at(2_000))), vec![("/home", 2)]);
    // Then it learns who it is: the same visitor as b.
    m.feed(seen(
        3,
        "a",
        1_500,
        "/home",
        Some(-9),
        Some("FR"),
        Some("mobile"),
    ));
    let s = m.snapshot(at(2_000));
    assert_eq!(pages(&s), vec![("/home", 1)]);
    assert_eq!(countries(&s), vec![("FR", 1)]);
    // A different profile later does not change it.
    m.feed(seen(
        4,
        "a",
        1_600,
        "/home",
        Some(-3),
        Some("IT"),
        Some("tablet"),
    ));
    let s = m.snapshot(at(2_000));
    assert_eq!(pages(&s), vec![("/home", 1)]);
    assert_eq!(countries(&s), vec![("FR", 1)]);
    assert_eq!(devices(&s), vec![("mobile", 1)]);
    assert_eq!(m.stats().interned_countries, 1);
}

#[test]
fn top_countries_and_devices_rank_active_visitors_and_forget_those_who_left() {
    let mut m = live();
    let rows = [
        ("s1", -1, "FR", "desktop"),
        ("s2", -2, "FR", "mobile"),
        ("s3", -3, "DE", "mobile"),
        ("s4", -4, "DE", "mobile"),
        ("s5", -5, "US", "tablet"),
        ("s6", -5, "US", "tablet"), // a second tab of s5's visitor
        ("s7", -7, "", "other"),    // empty: no country
    ];
    for (i, (session, visitor, country, device)) in rows.into_iter().enumerate() {
        m.feed(seen(
            i as i64,
            session,
            1_000 + i as i64,
            "/",
            Some(visitor),
            Some(country),
            Some(device),
        ));
    }
    let s = m.snapshot(at(2_000));
    assert_eq!(countries(&s), vec![("DE", 2), ("FR", 2), ("US", 1)]);
    assert_eq!(
        devices(&s),
        vec![("mobile", 3), ("desktop", 1), ("other", 1), ("tablet", 1)]
    );
    // s3 ends; s1 leaves the active window with time.
    m.feed(ev(20, "session_end", "s3", 1_500));
    let s = m.snapshot(at(2_000));
    assert_eq!(countries(&s), vec![("FR", 2), ("DE", 1), ("US", 1)]);
    let s = m.snapshot(at(61_000)); // s1's visit at 1.000 s is out
    assert_eq!(countries(&s), vec![("DE", 1), ("FR", 1), ("US", 1)]);
    assert_eq!(devices(&s)[0], ("mobile", 2));
    let s = m.snapshot(at(62_000));
    assert!(s.top_countries.is_empty() && s.top_devices.is_empty());
    let st = m.stats();
    assert_eq!((st.interned_countries, st.interned_devices), (0, 0));
}

#[test]
fn top_countries_keep_ten_and_cut_long_values() {
    let mut m = live();
    for i in 0..12 {
        m.feed(seen(
            i,
            &format!("s{i}"),
            1_000,
            "/",
            None,
            Some(&format!("C{i:02}")),
            Some(&"x".repeat(100)),
        ));
    }
    let s = m.snapshot(at(2_000));
    assert_eq!(s.top_countries.len(), 10);
    assert_eq!(s.top_countries[0].country, "C00");
    assert_eq!(s.top_countries[9].country, "C09");
    assert_eq!(devices(&s), vec![("x".repeat(64).as_str(), 12)]);
}

#[test]
fn bots_last_min_counts_drops_of_the_last_minute_of_the_clock() {
    let mut m = live();
    m.record_dropped("bot", 2, at(0));
    m.record_dropped("bot", 3, at(30_500));
    m.record_dropped("spam", 1, at(30_500));
    m.record_dropped("bot", 0, at(30_500)); // nothing, but moves the clock
    let s = m.snapshot(at(31_000));
    assert_eq!(s.bots_last_min, 5);
    assert_eq!(
        s.dropped_last_min,
        [("bot".to_owned(), 5), ("spam".to_owned(), 1)].into()
    );
    // Drops count in the second of their clock (rounded up), in the window
    // (end - 60 s, end]: those of 0 s are in at 59 s and out once the end
    // rounds up to 60 s; those of 30.5 s (second 31) until it reaches 91 s.
    assert_eq!(m.snapshot(at(59_000)).bots_last_min, 5);
    assert_eq!(m.snapshot(at(59_001)).bots_last_min, 3);
    assert_eq!(m.snapshot(at(90_000)).bots_last_min, 3);
    let s = m.snapshot(at(90_001));
    assert_eq!(s.bots_last_min, 0);
    assert!(s.dropped_last_min.is_empty());
    // A drop with an earlier `now` counts at the clock: 91 s.
    m.record_dropped("bot", 4, at(10_000));
    assert_eq!(m.snapshot(at(150_000)).bots_last_min, 4);
    assert_eq!(m.snapshot(at(151_000)).bots_last_min, 0);
    // Drops count nowhere else.
    let s = m.snapshot(at(151_000));
    assert_eq!((s.events_last_min, s.active_users), (0, 0));
}

#[test]
fn drop_reasons_are_capped_and_freed_when_quiet() {
    let cfg = LiveConfig {
        max_drop_reasons: 2,
        ..LiveConfig::default()
    };
    let mut m = LiveMetrics::new(cfg);
    m.expire(at(0));
    let empty = m.approx_memory_bytes();
    m.record_dropped("bot", 1, at(0));
    m.record_dropped(&"r".repeat(100), 1, at(0));
    m.record_dropped("third", 1, at(0));
    let s = m.snapshot(at(0));
    assert_eq!(s.dropped_last_min.len(), 2);
    assert_eq!(s.dropped_last_min.get(&"r".repeat(64)), Some(&1));
    assert_eq!(m.stats().dropped_reasons, 1);
    assert!(m.approx_memory_bytes() > empty);
    // Once the window is quiet the reasons are freed and a new one fits.
    m.snapshot(at(60_000));
    m.record_dropped("third", 1, at(60_000));
    let s = m.snapshot(at(60_000));
    assert_eq!(s.dropped_last_min, [("third".to_owned(), 1)].into());
}
