//! The planning of a pass, without a database.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::rollup::units::QUARTERS_PER_DAY;

const Q: i64 = crate::rollup::units::QUARTER_US;

fn event(session_id: i64, kind: &str, quarter: i64) -> PendingEvent {
    PendingEvent {
        session_id,
        kind: kind.to_owned(),
        url: Some(format!("/page-{session_id}")),
        referrer: Some("https://ref.example/".to_owned()),
        label: None,
        occurred_at: quarter * Q + 1,
    }
}

/// A session that is its own visitor, with no session dimensions.
fn session(id: i64) -> PassSession {
    PassSession {
        id,
        visitor: id,
        ..PassSession::default()
    }
}

/// The profiles of the sessions of `events`, each its own visitor.
fn own(events: &[PendingEvent]) -> HashMap<i64, Profile> {
    let sessions: Vec<PassSession> = events.iter().map(|e| session(e.session_id)).collect();
    profiles(&sessions)
}

fn set(q: &[i64]) -> BTreeSet<i64> {
    q.iter().copied().collect()
}

fn unit(grain: Grain, unit: i64, prev: i64) -> VisitorUnit {
    VisitorUnit { grain, unit, prev }
}

fn span(id: i64, first_seen: i64, last_seen: i64, recorded: Option<(i64, i64)>) -> SessionSpan {
    SessionSpan {
        id,
        first_seen,
        last_seen,
        quarter: recorded.map(|r| r.0),
        duration_us: recorded.map(|r| r.1),
    }
}

/// The visitor rows of a plan for one dimension, as `(grain, unit, prev, n)`.
fn visitors(plan: &Plan, dim: Dim) -> Vec<(Grain, i64, i64, i64)> {
    plan.visitors
        .iter()
        .filter(|(k, _)| k.dim == dim)
        .map(|(k, n)| (k.grain, k.unit, k.prev, *n))
        .collect()
}

#[test]
fn a_visit_counts_its_page_and_referrer_and_a_click_its_label() {
    let mut click = event(1, "click", 3);
    click.label = Some("Buy".to_owned());
    let mut unlabelled = event(1, "click", 3);
    unlabelled.label = None;
    let mut no_referrer = event(2, "visit", 3);
    no_referrer.referrer = Some(String::new());
    let events = [event(1, "visit", 3), click, unlabelled, no_referrer];
    let profiles = own(&events);
    let items: Vec<Vec<(Dim, &str)>> = facts(&events, &profiles)
        .into_iter()
        .map(|f| f.items)
        .collect();
    assert_eq!(
        items,
        vec![
            vec![
                (Dim::All, ""),
                (Dim::Page, "/page-1"),
                (Dim::Referrer, "https://ref.example/")
            ],
            vec![(Dim::All, ""), (Dim::Click, "Buy")],
            vec![(Dim::All, ""), (Dim::Click, "unknown")],
            vec![(Dim::All, ""), (Dim::Page, "/page-2")],
        ]
    );
}

#[test]
fn a_new_session_adds_counts_stats_and_its_first_visitor_units() {
    let events = [event(7, "visit", 100), event(7, "click", 101)];
    let profiles = own(&events);
    let facts = facts(&events, &profiles);
    let first = events[0].occurred_at;
    let last = events[1].occurred_at;
    let plan = plan(&facts, vec![], vec![], vec![span(7, first, last, None)]);

    assert_eq!(
        plan.stats.get(&100),
        Some(&StatsDelta {
            events: 1,
            page_views: 1,
            clicks: 0,
            sessions: 1,
            duration_us: last - first,
        })
    );
    assert_eq!(
        plan.stats.get(&101),
        Some(&StatsDelta {
            events: 1,
            clicks: 1,
            ..StatsDelta::default()
        })
    );
    let page = |grain, unit| CountKey {
        grain,
        dim: Dim::Page,
        unit,
        item: "/page-7".to_owned(),
    };
    assert_eq!(plan.counts.get(&page(Grain::Quarter, 100)), Some(&1));
    assert_eq!(plan.counts.get(&page(Grain::Day, 1)), Some(&1));
    assert!(
        plan.counts.keys().all(|k| k.dim != Dim::All),
        "every event is counted in the stats, not as an item"
    );
    assert_eq!(
        visitors(&plan, Dim::All),
        vec![
            (Grain::Quarter, 100, -1, 1),
            (Grain::Quarter, 101, 100, 1),
            (Grain::Day, 1, -1, 1)
        ]
    );
    assert_eq!(
        plan.sessions.get(&7),
        Some(&SessionRollup {
            quarter: 100,
            duration_us: last - first,
            events: 2,
            page_views: 1,
        })
    );
    assert_eq!(plan.seen.len(), 2 + 1 + 1 + 1, "all, page, referrer, click");
}

#[test]
fn a_late_event_moves_the_prev_of_the_units_after_it() {
    // The session was seen in quarter 10; an event of quarter 5 arrives.
    let seen = vec![SeenRow {
        visitor: 1,
        dim: Dim::All.stored(),
        item: String::new(),
        quarter: 10,
    }];
    let events = [event(1, "heartbeat", 5)];
    let plan = plan(&facts(&events, &own(&events)), seen, vec![], vec![]);
    assert_eq!(
        visitors(&plan, Dim::All),
        vec![
            (Grain::Quarter, 5, -1, 1),
            (Grain::Quarter, 10, -1, -1),
            (Grain::Quarter, 10, 5, 1),
        ],
        "the day's unit is unchanged, so it is left out"
    );
    let added: Vec<i64> = plan.seen.iter().map(|s| s.quarter).collect();
    assert_eq!(added, vec![5]);
}

#[test]
fn quarters_already_seen_add_no_visitor_units() {
    let seen = vec![SeenRow {
        visitor: 1,
        dim: Dim::All.stored(),
        item: String::new(),
        quarter: 10,
    }];
    let events = [event(1, "heartbeat", 10)];
    let plan = plan(&facts(&events, &own(&events)), seen, vec![], vec![]);
    assert!(plan.visitors.is_empty());
    assert!(plan.seen.is_empty());
    assert_eq!(plan.stats.get(&10).map(|s| s.events), Some(1));
}

#[test]
fn a_session_that_starts_earlier_moves_its_start_and_duration() {
    let q = |quarter: i64| quarter * Q;
    // Recorded as starting in quarter 20 and lasting 100 µs; it now starts
    // in quarter 19 and ends where it did.
    let spans = vec![span(4, q(19), q(20) + 100, Some((20, 100)))];
    let events = [event(4, "heartbeat", 19)];
    let plan = plan(&facts(&events, &own(&events)), vec![], vec![], spans);
    assert_eq!(
        plan.stats.get(&20),
        Some(&StatsDelta {
            sessions: -1,
            duration_us: -100,
            ..StatsDelta::default()
        })
    );
    assert_eq!(plan.stats.get(&19).map(|s| s.sessions), Some(1));
    assert_eq!(plan.stats.get(&19).map(|s| s.duration_us), Some(Q + 100));
    assert_eq!(plan.sessions.get(&4).map(|s| s.quarter), Some(19));
}

#[test]
fn an_unchanged_session_without_new_events_is_left_alone() {
    let spans = vec![span(4, 20 * Q, 20 * Q + 100, Some((20, 100)))];
    let plan = plan(&[], vec![], vec![], spans);
    assert!(plan.sessions.is_empty());
    assert!(plan.stats.is_empty());
}

#[test]
fn session_bounds_widen_the_spans_they_cover() {
    let mut events = vec![event(2, "visit", 50), event(1, "visit", 40)];
    events.push(event(2, "visit", 30));
    let bounds = session_bounds(&events);
    assert_eq!(
        bounds,
        vec![
            SessionBounds {
                session_id: 1,
                first: 40 * Q + 1,
                last: 40 * Q + 1
            },
            SessionBounds {
                session_id: 2,
                first: 30 * Q + 1,
                last: 50 * Q + 1
            },
        ]
    );
    let with_bounds = |id, first_seen, last_seen| PassSession {
        first_seen,
        last_seen,
        ..session(id)
    };
    let mut spans = vec![with_bounds(2, 35 * Q, 36 * Q), with_bounds(3, 0, 1)];
    widen(&mut spans, &bounds);
    assert_eq!(
        (spans[0].first_seen, spans[0].last_seen),
        (30 * Q + 1, 50 * Q + 1)
    );
    assert_eq!(
        (spans[1].first_seen, spans[1].last_seen),
        (0, 1),
        "not in the batch"
    );
}

#[test]
fn sessions_of_one_visitor_count_once_and_bots_not_at_all() {
    let visitor = -42;
    let at = 10 * Q + 1;
    let started = |id| PassSession {
        first_seen: at,
        last_seen: at,
        ..session(id)
    };
    let sessions = vec![
        PassSession {
            visitor,
            ..started(1)
        },
        PassSession {
            visitor,
            ..started(2)
        },
        PassSession {
            bot: true,
            ..started(3)
        },
    ];
    let events = [
        event(1, "visit", 10),
        event(2, "visit", 10),
        event(3, "visit", 10),
    ];
    let profiles = profiles(&sessions);
    let facts = facts(&events, &profiles);
    assert_eq!(facts.len(), 2, "the bot's event is left out");
    assert_eq!(visitors_of(&facts), vec![visitor]);
    let plan = plan(&facts, vec![], vec![], spans(&sessions));
    assert_eq!(
        visitors(&plan, Dim::All),
        vec![(Grain::Quarter, 10, -1, 1), (Grain::Day, 0, -1, 1)],
        "two sessions, one visitor"
    );
    assert_eq!(
        plan.stats.get(&10).map(|s| (s.events, s.sessions)),
        Some((2, 2))
    );
    assert!(!plan.sessions.contains_key(&3), "no counters for the bot");
}

#[test]
fn session_dimensions_see_every_event_and_count_page_views() {
    let sessions = vec![PassSession {
        country: Some("US".to_owned()),
        region: Some("Illinois".to_owned()),
        city: Some("Springfield".to_owned()),
        browser: Some("Firefox".to_owned()),
        os: Some(String::new()),
        device: Some("desktop".to_owned()),
        ..session(5)
    }];
    let events = [event(5, "visit", 10), event(5, "heartbeat", 11)];
    let profiles = profiles(&sessions);
    let facts = facts(&events, &profiles);
    let city = place_item(Some("US"), "Springfield");
    let region = place_item(Some("US"), "Illinois");
    let of_session: Vec<(Dim, &str)> = vec![
        (Dim::Country, "US"),
        (Dim::Region, &region),
        (Dim::City, &city),
        (Dim::Browser, "Firefox"),
        (Dim::Device, "desktop"),
    ];
    let items: Vec<(Dim, &str)> = facts[1].profile.items().collect();
    assert_eq!(items, of_session, "an empty OS is none");
    let plan = plan(&facts, vec![], vec![], spans(&sessions));
    let count = |dim, unit: i64, item: &str| {
        let key = CountKey {
            grain: Grain::Quarter,
            dim,
            unit,
            item: item.to_owned(),
        };
        plan.counts.get(&key).copied()
    };
    assert_eq!(count(Dim::City, 10, &city), Some(1), "the page view");
    assert_eq!(
        count(Dim::City, 11, &city),
        None,
        "a heartbeat is no page view"
    );
    assert_eq!(
        visitors(&plan, Dim::City),
        vec![
            (Grain::Quarter, 10, -1, 1),
            (Grain::Quarter, 11, 10, 1),
            (Grain::Day, 0, -1, 1)
        ],
        "seen with every event"
    );
}

/// A session with every session dimension but the OS, of visitor `visitor`.
fn profiled(id: i64, visitor: i64, country: &str) -> PassSession {
    PassSession {
        visitor,
        country: Some(country.to_owned()),
        city: Some("Springfield".to_owned()),
        browser: Some("Firefox".to_owned()),
        device: Some("desktop".to_owned()),
        ..session(id)
    }
}

fn profile_row(visitor: i64, quarter: i64, items: &SessionItems) -> SeenProfileRow {
    let [country, region, city, browser, os, device] = items.0.clone();
    SeenProfileRow {
        visitor,
        quarter,
        country,
        region,
        city,
        browser,
        os,
        device,
    }
}

#[test]
fn session_items_are_seen_as_one_row_per_visitor_and_quarter() {
    let sessions = vec![profiled(5, -9, "US"), profiled(6, -9, "US")];
    let events = [
        event(5, "visit", 10),
        event(5, "click", 10),
        event(6, "visit", 10),
        event(6, "heartbeat", 11),
    ];
    let profiles = profiles(&sessions);
    let plan = plan(&facts(&events, &profiles), vec![], vec![], spans(&sessions));
    let rows: Vec<(i64, i64)> = plan
        .seen_profiles
        .iter()
        .map(|r| (r.visitor, r.quarter))
        .collect();
    assert_eq!(rows, vec![(-9, 10), (-9, 11)], "two tabs, one visitor");
    let items = &plan.seen_profiles.first().unwrap().items;
    let city = place_item(Some("US"), "Springfield");
    assert_eq!(items.0, ["US", "", city.as_str(), "Firefox", "", "desktop"]);
    assert!(
        plan.seen.iter().all(|r| !r.dim.of_session()),
        "no rollup_seen row of a session dimension"
    );
    assert_eq!(
        visitors(&plan, Dim::Country),
        vec![
            (Grain::Quarter, 10, -1, 1),
            (Grain::Quarter, 11, 10, 1),
            (Grain::Day, 0, -1, 1)
        ]
    );
}

#[test]
fn sightings_held_either_way_are_not_counted_again() {
    let sessions = vec![profiled(5, -9, "US")];
    let events = [event(5, "visit", 10), event(5, "heartbeat", 12)];
    let profiles = profiles(&sessions);
    let facts = facts(&events, &profiles);
    let items = facts[0].profile.clone();
    // Quarter 10 as a set of items; quarter 12's country as a row of its
    // own dimension, as passes wrote it before `rollup_seen_profile`.
    let held = vec![profile_row(-9, 10, &items)];
    let legacy = vec![SeenRow {
        visitor: -9,
        dim: Dim::Country.stored(),
        item: "US".to_owned(),
        quarter: 12,
    }];
    let plan = plan(&facts, legacy, held, vec![]);
    let rows: Vec<i64> = plan.seen_profiles.iter().map(|r| r.quarter).collect();
    assert_eq!(rows, vec![12], "quarter 10's set is held already");
    assert_eq!(
        visitors(&plan, Dim::Country),
        vec![],
        "both quarters were counted already"
    );
    assert_eq!(
        visitors(&plan, Dim::Browser),
        vec![(Grain::Quarter, 12, 10, 1)],
        "the browser was seen in quarter 10 only"
    );
}

#[test]
fn a_visitor_seen_with_two_sets_counts_once_per_item() {
    // Two sessions of one visitor id placed in two countries (a GeoIP
    // file replaced between them), in one quarter.
    let sessions = vec![profiled(5, -9, "US"), profiled(6, -9, "CA")];
    let events = [event(5, "visit", 10), event(6, "visit", 10)];
    let profiles = profiles(&sessions);
    let plan = plan(&facts(&events, &profiles), vec![], vec![], vec![]);
    assert_eq!(plan.seen_profiles.len(), 2);
    assert_eq!(
        visitors(&plan, Dim::Browser).len(),
        2,
        "quarter and day, once"
    );
    let countries: Vec<String> = plan
        .visitors
        .keys()
        .filter(|k| k.dim == Dim::Country && k.grain == Grain::Quarter)
        .map(|k| k.item.clone())
        .collect();
    assert_eq!(countries, vec!["CA", "US"]);
}

#[test]
fn visitor_units_carry_the_last_quarter_before_each_unit() {
    // Two quarters of day 0, then one of day 2.
    let units = visitor_units(&set(&[3, 4, 200]));
    assert_eq!(
        units,
        vec![
            unit(Grain::Quarter, 3, -1),
            unit(Grain::Day, 0, -1),
            unit(Grain::Quarter, 4, 3),
            unit(Grain::Quarter, 200, 4),
            unit(Grain::Day, 2, 4),
        ]
    );
}

/// Counting units with `prev < A` over any range gives the distinct
/// sessions, whichever way the range is cut into quarters and days.
#[test]
fn distinct_sessions_of_any_range_are_the_units_with_prev_before_its_start() {
    let sessions: Vec<BTreeSet<i64>> = vec![
        set(&[1, 2, 3]),
        set(&[95, 96, 97]),
        set(&[10, 300]),
        set(&[190]),
        set(&[0, 191, 192, 400]),
    ];
    for a in 0..410 {
        for b in (a + 1..=410).step_by(7) {
            let expected = sessions
                .iter()
                .filter(|s| s.range(a..b).next().is_some())
                .count() as i64;
            let d1 = (a + QUARTERS_PER_DAY - 1).div_euclid(QUARTERS_PER_DAY);
            let d2 = b.div_euclid(QUARTERS_PER_DAY);
            let mut got = 0;
            for s in &sessions {
                for VisitorUnit { grain, unit, prev } in visitor_units(s) {
                    let inside = if d1 < d2 {
                        match grain {
                            Grain::Quarter => {
                                (a..d1 * QUARTERS_PER_DAY).contains(&unit)
                                    || (d2 * QUARTERS_PER_DAY..b).contains(&unit)
                            }
                            Grain::Day => (d1..d2).contains(&unit),
                        }
                    } else {
                        grain == Grain::Quarter && (a..b).contains(&unit)
                    };
                    if inside && prev < a {
                        got += 1;
                    }
                }
            }
            assert_eq!(got, expected, "range {a}..{b}");
        }
    }
}
