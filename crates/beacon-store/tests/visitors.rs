//! Who the rollups count, on SQLite and PostgreSQL: visitors are distinct
//! visitor ids (a session stored without one is its own visitor), bots are
//! in no figure, places and devices are top lists of their own, and a
//! rebuild after old events were deleted keeps the figures of their
//! periods.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use beacon_model::{NewEvent, VisitorProfile};
use beacon_store::testing::TestDatabase;
use beacon_store::{BucketFigures, DatabaseUrl, SessionQuery, Store, TimeRange, TopDimension};
use chrono::{DateTime, TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::Connection;

beacon_store::store_suite!(
    sessions_of_one_visitor_id_are_one_visitor_and_old_sessions_each_their_own,
    bots_are_in_no_figure_and_their_events_do_not_hold_up_the_rollups,
    places_browsers_systems_and_devices_are_ranked_by_page_views,
);

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 27, 12, 0, 0).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// One event of `session` at `time` (UTC), of `kind`, on `page`, with the
/// session's profile (none: stored without enrichment).
fn event(
    session: &str,
    kind: &str,
    time: &str,
    page: &str,
    profile: Option<&Arc<VisitorProfile>>,
) -> NewEvent {
    let body = format!(
        r#"{{"type":"{kind}","sessionId":"{session}","timestamp":"{time}","url":"https://site.example{page}","data":{{"label":"Buy"}}}}"#
    );
    let event = beacon_store::testing::parse_events(&body, received(), None)
        .pop()
        .unwrap();
    match profile {
        Some(p) => event.with_profile(Arc::clone(p)),
        None => event,
    }
}

fn profile(visitor_id: i64, edit: impl FnOnce(&mut VisitorProfile)) -> Arc<VisitorProfile> {
    let mut p = VisitorProfile {
        visitor_id: Some(visitor_id),
        ..VisitorProfile::default()
    };
    edit(&mut p);
    Arc::new(p)
}

fn totals(store: &Store, from: &str, to: &str) -> BucketFigures {
    store.bucket_stats(&[at(from), at(to)]).unwrap().total
}

fn top(store: &Store, dim: TopDimension, from: &str, to: &str) -> Vec<(String, i64, i64)> {
    let range = TimeRange::covering(at(from), at(to)).unwrap();
    store
        .top(dim, range, 100)
        .unwrap()
        .into_iter()
        .map(|t| (t.item, t.count, t.visitors))
        .collect()
}

/// The rollups equal a rebuild's.
fn assert_rebuild_agrees(store: &Store) {
    let incremental = store.rollup_fingerprint().unwrap();
    store.rebuild_rollups().unwrap();
    assert_eq!(incremental, store.rollup_fingerprint().unwrap());
}

fn sessions_of_one_visitor_id_are_one_visitor_and_old_sessions_each_their_own(store: &Store) {
    let person = profile(-5, |_| ());
    let other = profile(-6, |_| ());
    store
        .insert_batch(&[
            // One person, two tabs (two sessions), in two hours.
            event("tab-1", "visit", "2026-10-26T10:00:00Z", "/", Some(&person)),
            event("tab-1", "visit", "2026-10-26T11:10:00Z", "/", Some(&person)),
            event("tab-2", "visit", "2026-10-26T10:05:00Z", "/", Some(&person)),
            event("other", "visit", "2026-10-26T10:10:00Z", "/", Some(&other)),
            // Stored before visitor ids: each is its own visitor.
            event("old-1", "visit", "2026-10-26T10:20:00Z", "/", None),
            event("old-2", "visit", "2026-10-26T11:20:00Z", "/", None),
        ])
        .unwrap();
    store.roll_up_all().unwrap();
    let day = totals(store, "2026-10-26T00:00:00Z", "2026-10-27T00:00:00Z");
    assert_eq!(
        (day.page_views, day.visitors, day.sessions_started),
        (6, 4, 5),
        "two tabs are one visitor; sessions stay sessions"
    );
    let hours = store
        .bucket_stats(&[
            at("2026-10-26T10:00:00Z"),
            at("2026-10-26T11:00:00Z"),
            at("2026-10-26T12:00:00Z"),
        ])
        .unwrap();
    let visitors: Vec<i64> = hours.buckets.iter().map(|b| b.figures.visitors).collect();
    assert_eq!(visitors, [3, 2], "the person is a visitor of both hours");
    assert_eq!(hours.total.visitors, 4, "and one visitor of the two");
    assert_eq!(
        top(
            store,
            TopDimension::Pages,
            "2026-10-26T00:00:00Z",
            "2026-10-27T00:00:00Z"
        ),
        [("https://site.example/".to_owned(), 6, 4)]
    );
    assert_rebuild_agrees(store);
}

fn bots_are_in_no_figure_and_their_events_do_not_hold_up_the_rollups(store: &Store) {
    let bot = profile(-7, |p| {
        p.bot = true;
        p.country = Some("US".into());
        p.device = Some("other".into());
    });
    let person = profile(-8, |p| p.country = Some("US".into()));
    let mut events = vec![event(
        "person",
        "visit",
        "2026-10-26T10:00:00Z",
        "/",
        Some(&person),
    )];
    for (i, kind) in ["visit", "click", "visit"].iter().enumerate() {
        let time = format!("2026-10-26T10:0{i}:30Z");
        events.push(event("crawler", kind, &time, "/bot", Some(&bot)));
    }
    store.insert_batch(&events).unwrap();
    let pass = store.roll_up(100).unwrap();
    assert_eq!(
        (pass.applied, pass.caught_up),
        (4, true),
        "the watermark moves past the bot's events"
    );
    let day = totals(store, "2026-10-26T00:00:00Z", "2026-10-27T00:00:00Z");
    assert_eq!(
        (
            day.events,
            day.page_views,
            day.clicks,
            day.visitors,
            day.sessions_started
        ),
        (1, 1, 0, 1, 1)
    );
    let (from, to) = ("2026-10-26T00:00:00Z", "2026-10-27T00:00:00Z");
    assert_eq!(
        top(store, TopDimension::Pages, from, to),
        [("https://site.example/".to_owned(), 1, 1)]
    );
    assert_eq!(top(store, TopDimension::Clicks, from, to), []);
    assert_eq!(
        top(store, TopDimension::Countries, from, to),
        [("US".to_owned(), 1, 1)]
    );
    assert_eq!(top(store, TopDimension::Devices, from, to), []);
    // Kept with --keep-bots and listed, flagged, without counters.
    let sessions = store
        .list_sessions(&SessionQuery {
            limit: 10,
            ..SessionQuery::default()
        })
        .unwrap();
    let crawler = sessions
        .iter()
        .find(|s| s.session.token == "crawler")
        .unwrap();
    assert!(crawler.session.bot);
    assert_eq!((crawler.events, crawler.page_views), (0, 0));
    assert_rebuild_agrees(store);
}

fn places_browsers_systems_and_devices_are_ranked_by_page_views(store: &Store) {
    let place = |visitor, country: Option<&str>, region: &str, city: &str| {
        let (country, region, city) = (country.map(Into::into), region.to_owned(), city.to_owned());
        profile(visitor, move |p| {
            p.country = country;
            p.region = Some(region);
            p.city = Some(city);
            p.browser = Some("Firefox".into());
            p.browser_version = Some("131".into());
            p.os = Some("Linux".into());
            p.device = Some("desktop".into());
        })
    };
    let us = place(-1, Some("US"), "Illinois", "Springfield");
    let ca = place(-2, Some("CA"), "Manitoba", "Springfield");
    let nowhere = place(-3, None, "", "Atlantis");
    store
        .insert_batch(&[
            event("us", "visit", "2026-10-26T10:00:00Z", "/", Some(&us)),
            event("us", "visit", "2026-10-26T10:01:00Z", "/a", Some(&us)),
            event("us", "heartbeat", "2026-10-26T10:02:00Z", "/a", Some(&us)),
            event("ca", "visit", "2026-10-26T10:00:00Z", "/", Some(&ca)),
            event(
                "nowhere",
                "visit",
                "2026-10-26T10:00:00Z",
                "/",
                Some(&nowhere),
            ),
            // Its page view was before the range; its heartbeat is inside.
            event("ca", "heartbeat", "2026-10-26T12:00:00Z", "/", Some(&ca)),
        ])
        .unwrap();
    store.roll_up_all().unwrap();
    let range =
        TimeRange::covering(at("2026-10-26T00:00:00Z"), at("2026-10-27T00:00:00Z")).unwrap();
    let cities: Vec<(Option<String>, String, i64, i64)> = store
        .top(TopDimension::Cities, range, 10)
        .unwrap()
        .into_iter()
        .map(|t| (t.country, t.item, t.count, t.visitors))
        .collect();
    let line = |country: Option<&str>, city: &str, count, visitors| {
        (country.map(Into::into), city.to_owned(), count, visitors)
    };
    assert_eq!(
        cities,
        [
            line(Some("US"), "Springfield", 2, 1),
            line(None, "Atlantis", 1, 1),
            line(Some("CA"), "Springfield", 1, 1),
        ],
        "a heartbeat is no page view; places of one name stay apart by country"
    );
    let (from, to) = ("2026-10-26T00:00:00Z", "2026-10-27T00:00:00Z");
    assert_eq!(
        top(store, TopDimension::Regions, from, to),
        [("Illinois".to_owned(), 2, 1), ("Manitoba".to_owned(), 1, 1)],
        "an empty region is none"
    );
    assert_eq!(
        top(store, TopDimension::Browsers, from, to),
        [("Firefox".to_owned(), 4, 3)]
    );
    assert_eq!(
        top(store, TopDimension::OperatingSystems, from, to),
        [("Linux".to_owned(), 4, 3)]
    );
    // Visitors count whoever had an event in the range, page view or not.
    assert_eq!(
        top(store, TopDimension::Countries, "2026-10-26T11:00:00Z", to),
        []
    );
    let late = TimeRange::covering(at("2026-10-26T10:00:00Z"), at(to)).unwrap();
    let countries = store.top(TopDimension::Countries, late, 10).unwrap();
    assert_eq!(
        countries
            .iter()
            .map(|t| (t.item.as_str(), t.count, t.visitors, t.country.is_none()))
            .collect::<Vec<_>>(),
        [("US", 2, 1, true), ("CA", 1, 1, true)]
    );
    assert_rebuild_agrees(store);
}

/// Runs `sql` on the test database directly, as an operator (or the
/// retention job) would.
fn execute(db: &TestDatabase, sql: &str) {
    match &db.url {
        DatabaseUrl::Postgres(url) => diesel::PgConnection::establish(url)
            .unwrap()
            .batch_execute(sql)
            .unwrap(),
        DatabaseUrl::SqliteFile(path) => {
            diesel::SqliteConnection::establish(path.to_str().unwrap())
                .unwrap()
                .batch_execute(sql)
                .unwrap();
        }
        DatabaseUrl::SqliteMemory => unreachable!("a test database is a file or a server"),
    }
}

/// Events over three days (the 24th to the 26th), in sessions that are
/// partly their own visitors.
fn three_days() -> Vec<NewEvent> {
    let person = profile(-11, |p| p.country = Some("DE".into()));
    let mut events = vec![];
    for day in 24..=26 {
        for (minute, session) in [(0, "a"), (5, "b"), (30, "c"), (50, "d")] {
            let session = format!("{session}-{day}");
            let time = format!("2026-10-{day}T10:{minute:02}:00Z");
            let profile = (minute == 5).then_some(&person);
            events.push(event(&session, "visit", &time, "/", profile));
            let later = format!("2026-10-{day}T11:{minute:02}:00Z");
            events.push(event(&session, "click", &later, "/", profile));
        }
    }
    events
}

/// What retention does: the events before `cut` deleted, and the sessions
/// left with none; the rollups stay.
fn prune(cut: DateTime<Utc>) -> String {
    format!(
        "DELETE FROM events WHERE occurred_at < {};
         DELETE FROM sessions WHERE NOT EXISTS \
         (SELECT 1 FROM events e WHERE e.session_id = sessions.id);",
        cut.timestamp_micros()
    )
}

/// Two databases go through the same history: old events deleted (up to
/// a cut inside a quarter, 2026-10-26T10:27:00Z), then new events, some of
/// them in the units the rebuild keeps (a session started before the
/// cut, a page view in the cut's own quarter). One folds them in with
/// passes, the other with a rebuild: the rollups agree, and the figures of
/// the days whose events are gone are what they were.
fn a_rebuild_after_old_events_are_deleted_keeps_their_units(a: &TestDatabase, b: &TestDatabase) {
    let cut = at("2026-10-26T10:27:00Z");
    let (passes, rebuilt) = (a.store(), b.store());
    for store in [&passes, &rebuilt] {
        store.insert_batch(&three_days()).unwrap();
        store.roll_up_all().unwrap();
    }
    let before_days = |store: &Store| {
        store
            .bucket_stats(&[
                at("2026-10-24T00:00:00Z"),
                at("2026-10-25T00:00:00Z"),
                at("2026-10-26T00:00:00Z"),
                at("2026-10-26T10:15:00Z"),
                at("2026-10-26T10:30:00Z"),
            ])
            .unwrap()
    };
    let old = before_days(&rebuilt);
    assert_eq!(
        old.total.page_views, 10,
        "two days and a quarter and a half"
    );
    let old_pages = top(
        &rebuilt,
        TopDimension::Pages,
        "2026-10-24T00:00:00Z",
        "2026-10-27T00:00:00Z",
    );
    for db in [a, b] {
        execute(db, &prune(cut));
    }
    for store in [&passes, &rebuilt] {
        // As after a restart: no session is known to the writer.
        store.forget_known_sessions();
        store
            .insert_batch(&[
                // In the quarter that holds the cut, and in a session that
                // started before it.
                event("late", "visit", "2026-10-26T10:29:00Z", "/late", None),
                event("a-26", "visit", "2026-10-26T12:00:00Z", "/", None),
                event("new", "visit", "2026-10-26T13:00:00Z", "/", None),
            ])
            .unwrap();
    }
    passes.roll_up_all().unwrap();
    rebuilt.rebuild_rollups().unwrap();
    assert_eq!(
        rebuilt.roll_up_all().unwrap(),
        0,
        "the rebuild folded everything"
    );
    assert_eq!(
        passes.rollup_fingerprint().unwrap(),
        rebuilt.rollup_fingerprint().unwrap()
    );
    let now = before_days(&rebuilt);
    assert_eq!(
        now.buckets[..2],
        old.buckets[..2],
        "the days whose events are gone"
    );
    let (was, is) = (&old.buckets[2].figures, &now.buckets[2].figures);
    assert_eq!(
        (is.page_views, is.events, is.visitors, is.sessions_started),
        (
            was.page_views,
            was.events,
            was.visitors,
            was.sessions_started
        ),
        "the morning before the cut"
    );
    assert_eq!(
        is.duration_sum_us - was.duration_sum_us,
        3_600_000_000,
        "a session of that morning got an event an hour after its last"
    );
    assert_eq!(
        now.buckets[3].figures.page_views,
        old.buckets[3].figures.page_views + 1,
        "the quarter of the cut: what it held, and the late page view"
    );
    let pages = top(
        &rebuilt,
        TopDimension::Pages,
        "2026-10-24T00:00:00Z",
        "2026-10-27T00:00:00Z",
    );
    assert_eq!(pages[0].1, old_pages[0].1 + 2, "{pages:?}");
    assert_eq!(
        rebuilt.count_events().unwrap(),
        6 + 3,
        "the events after the cut"
    );
    // A second rebuild changes nothing.
    let once = rebuilt.rollup_fingerprint().unwrap();
    rebuilt.rebuild_rollups().unwrap();
    assert_eq!(once, rebuilt.rollup_fingerprint().unwrap());
}

#[test]
fn a_rebuild_after_old_events_are_deleted_keeps_their_units_sqlite() {
    a_rebuild_after_old_events_are_deleted_keeps_their_units(
        &TestDatabase::sqlite(),
        &TestDatabase::sqlite(),
    );
}

#[test]
fn a_rebuild_after_old_events_are_deleted_keeps_their_units_postgres() {
    if let (Some(a), Some(b)) = (TestDatabase::postgres(), TestDatabase::postgres()) {
        a_rebuild_after_old_events_are_deleted_keeps_their_units(&a, &b);
    }
}
