//! Retention and erasure on SQLite and PostgreSQL: pruning deletes only
//! old events that are in the rollups, and the sessions they leave empty,
//! and keeps the figures of the pruned days; forgetting a session leaves
//! the rollups a rebuild of the remaining events would compute; and a
//! store that cached a deleted session's id files its next events under a
//! new session, never under the deleted one.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use beacon_model::{NewEvent, VisitorProfile};
use beacon_store::testing::TestDatabase;
use beacon_store::{EventQuery, PruneRun, Store, TimeRange, TopDimension};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

beacon_store::store_suite!(
    pruning_deletes_only_old_events_already_rolled_up_and_the_sessions_they_leave_empty,
    pruning_keeps_the_figures_of_every_range,
    pruning_in_small_steps_deletes_what_one_run_does,
    forgetting_sessions_leaves_the_rollups_a_rebuild_of_the_rest_computes,
    forgetting_an_unknown_token_changes_nothing,
    forgetting_a_partly_pruned_session_takes_out_what_can_be_attributed,
    events_after_forgetting_the_newest_session_are_still_rolled_up,
    a_rebuild_after_pruning_keeps_the_figures_of_the_pruned_days,
    forgetting_sessions_of_shared_visitors_leaves_the_rollups_a_rebuild_computes,
    pruning_sessions_of_shared_visitors_keeps_counting_them_exactly,
);

/// Tests with several stores on one database (several instances).
mod instances {
    use super::*;

    beacon_store::database_suite!(
        figures_after_pruning_and_more_traffic_equal_those_without_pruning,
        a_session_forgotten_by_one_store_is_written_anew_by_another_that_cached_it,
        a_session_pruned_by_one_store_is_written_anew_by_another_that_cached_it,
        a_store_that_missed_deletions_no_longer_logged_forgets_its_whole_cache,
    );
}

/// When the test data was received: its events span the week before.
fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 7, 12, 0, 0).unwrap()
}

/// The day pruning cuts at: about half the data is before it.
fn cutoff() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 4).unwrap()
}

fn cutoff_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 4, 0, 0, 0).unwrap()
}

fn now() -> DateTime<Utc> {
    received()
}

fn events(body: &str) -> Vec<NewEvent> {
    beacon_store::testing::parse_events(body, received(), None)
}

/// A small pseudo-random generator, so the data set is the same every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One event as the pixel sends it, at `at` (ms).
fn event(session: &str, id: &str, at: i64, kind: &str, page: &str, referrer: &str) -> String {
    let data = if kind == "click" {
        format!(r#"{{"label":"{page}"}}"#)
    } else {
        "{}".to_owned()
    };
    format!(
        r#"{{"type":"{kind}","sessionId":"{session}","id":"{id}","timestamp":{at},"url":"https://site.example{page}","referrer":"{referrer}","data":{data}}}"#
    )
}

/// `n` events of `sessions` sessions (`{prefix}0`, …) spread over the week
/// before [`received`], each session within three hours of its start, and
/// a session `{prefix}long` with events on every day.
fn week(prefix: &str, seed: u64, n: usize, sessions: u64) -> Vec<String> {
    let mut rng = Lcg(seed);
    let start = (received() - Duration::days(7) + Duration::hours(1)).timestamp_millis();
    let span = 6 * 24 * 3_600_000;
    let mut out: Vec<String> = (0..n)
        .map(|i| {
            let s = rng.next(sessions);
            let base = start + (s as i64 * span / sessions as i64);
            let at = base + rng.next(3 * 3_600_000) as i64;
            let kind = ["visit", "visit", "click", "heartbeat", "scroll"][rng.next(5) as usize];
            let page = ["/", "/pricing", "/blog/a", "/blog/b"][rng.next(4) as usize];
            let referrer =
                ["", "https://www.google.com/", "https://news.example/"][(s % 3) as usize];
            event(
                &format!("{prefix}{s}"),
                &format!("{prefix}e{i}"),
                at,
                kind,
                page,
                referrer,
            )
        })
        .collect();
    for day in 0..7 {
        let at = start + day * 24 * 3_600_000 + 600_000;
        out.push(event(
            &format!("{prefix}long"),
            &format!("{prefix}long{day}"),
            at,
            "visit",
            "/",
            "",
        ));
    }
    out
}

fn batch(items: &[String]) -> Vec<NewEvent> {
    events(&format!("{{\"batch\":[{}]}}", items.join(",")))
}

fn insert(store: &Store, items: &[String]) {
    for chunk in items.chunks(200) {
        store.insert_batch(&batch(chunk)).unwrap();
    }
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 31, 0, 0, 0).unwrap() + Duration::days(i64::from(d))
}

/// Every figure the historical API gives for ranges before, across and
/// after the cutoff, at day and uneven quarter-hour bounds, as text.
fn figures(store: &Store) -> Vec<String> {
    let mut out = vec![];
    let days: Vec<DateTime<Utc>> = (0..9).map(day).collect();
    out.push(format!("{:?}", store.bucket_stats(&days).unwrap()));
    let hours: Vec<DateTime<Utc>> = (0..40)
        .map(|i| cutoff_time() - Duration::hours(30) + Duration::minutes(105 * i))
        .collect();
    out.push(format!("{:?}", store.bucket_stats(&hours).unwrap()));
    let ranges = [
        (day(0), day(9)),
        (day(0), cutoff_time()),
        (cutoff_time(), day(9)),
        (
            day(2) + Duration::minutes(45),
            day(5) + Duration::minutes(15),
        ),
    ];
    for (from, to) in ranges {
        let range = TimeRange::covering(from, to).unwrap();
        for dim in [
            TopDimension::Pages,
            TopDimension::Referrers,
            TopDimension::Clicks,
        ] {
            out.push(format!(
                "{dim:?} {from} {to}: {:?}",
                store.top(dim, range, 10).unwrap()
            ));
        }
    }
    out
}

/// The rollup rows that make figures (no per-session rows).
fn aggregates(store: &Store) -> Vec<String> {
    store
        .rollup_fingerprint()
        .unwrap()
        .into_iter()
        .filter(|l| !l.starts_with("seen ") && !l.starts_with("session "))
        .collect()
}

fn all_events(store: &Store) -> Vec<beacon_store::StoredEvent> {
    store
        .list_events(&EventQuery {
            limit: 100_000,
            ..EventQuery::default()
        })
        .unwrap()
}

/// The rollups equal what a rebuild computes from the events.
fn assert_exact(store: &Store) {
    let incremental = store.rollup_fingerprint().unwrap();
    store.rebuild_rollups().unwrap();
    let rebuilt = store.rollup_fingerprint().unwrap();
    let only_inc: Vec<_> = incremental
        .iter()
        .filter(|l| !rebuilt.contains(l))
        .take(10)
        .collect();
    let only_reb: Vec<_> = rebuilt
        .iter()
        .filter(|l| !incremental.contains(l))
        .take(10)
        .collect();
    assert!(
        only_inc.is_empty() && only_reb.is_empty(),
        "rollups differ from a rebuild:\nonly incremental: {only_inc:#?}\nonly rebuilt: {only_reb:#?}"
    );
}

fn pruning_deletes_only_old_events_already_rolled_up_and_the_sessions_they_leave_empty(
    store: &Store,
) {
    let all = week("s", 1, 1500, 30);
    insert(store, &all);
    store.roll_up_all().unwrap();
    // Old events that are not rolled up yet stay until they are.
    let late = [event(
        "late",
        "late1",
        day(1).timestamp_millis(),
        "visit",
        "/",
        "",
    )];
    insert(store, &late);
    let before = all_events(store);
    let cut = cutoff_time().timestamp_micros();
    let ids: Vec<(String, i64)> = (0..30)
        .map(|s| format!("s{s}"))
        .chain(["slong".to_owned()])
        .filter_map(|t| Some((t.clone(), store.session(&t).unwrap()?.id)))
        .collect();

    let pruned = store.prune(cutoff(), now()).unwrap();

    let after = all_events(store);
    let old = |e: &&beacon_store::StoredEvent| e.occurred_at_us < cut;
    let expected: Vec<_> = before
        .iter()
        .filter(|e| !old(e) || e.session_token == "late")
        .collect();
    assert_eq!(after.iter().collect::<Vec<_>>(), expected, "what is left");
    assert_eq!(pruned.events as usize, before.len() - after.len());
    assert!(pruned.events > 500, "about half the events were old");
    assert_eq!(
        store.count_events().unwrap() as usize,
        after.len(),
        "no event without a session"
    );
    assert!(store.session("late").unwrap().is_some());
    let long = store
        .session("slong")
        .unwrap()
        .expect("a session with recent events stays");
    assert!(
        long.first_seen() < cutoff_time(),
        "its first event is older: it keeps its bounds"
    );
    // Sessions whose every event was old are gone, the others stay.
    let mut gone = 0;
    for s in 0..30 {
        let token = format!("s{s}");
        let stored = before.iter().any(|e| e.session_token == token);
        let left = after.iter().any(|e| e.session_token == token);
        let row = store.session(&token).unwrap();
        assert_eq!(row.is_some(), left || !stored, "session {token}");
        gone += usize::from(stored && !left);
    }
    assert_eq!(pruned.sessions as usize, gone);
    assert!(gone > 5, "about half the sessions were old");
    // The per-session rollup rows of the deleted sessions go with them
    // (each is its own visitor key); the others' stay.
    let lines = store.rollup_fingerprint().unwrap();
    for (token, id) in &ids {
        let rows = lines
            .iter()
            .filter(|l| {
                l.starts_with(&format!("session {id} ")) || l.starts_with(&format!("seen {id} "))
            })
            .count();
        let kept = store.session(token).unwrap().is_some();
        assert_eq!(rows > 0, kept, "rollup rows of {token}");
    }
    assert_eq!(store.pruned_before().unwrap(), Some(cutoff_time()));

    // The late event is pruned once it is rolled up.
    store.roll_up_all().unwrap();
    let again = store.prune(cutoff(), now()).unwrap();
    assert_eq!((again.events, again.sessions), (1, 1));
    assert!(store.session("late").unwrap().is_none());
}

fn pruning_keeps_the_figures_of_every_range(store: &Store) {
    insert(store, &week("s", 2, 2000, 40));
    store.roll_up_all().unwrap();
    let figures_before = figures(store);
    let aggregates_before = aggregates(store);
    let pruned = store.prune(cutoff(), now()).unwrap();
    assert!(pruned.events > 0 && pruned.sessions > 0);
    assert_eq!(figures(store), figures_before);
    assert_eq!(aggregates(store), aggregates_before);
}

fn pruning_in_small_steps_deletes_what_one_run_does(store: &Store) {
    let all = week("s", 3, 800, 30);
    insert(store, &all);
    store.roll_up_all().unwrap();
    let mut run = PruneRun::new(cutoff(), store.backend()).with_steps(7, 2);
    let mut steps = 0;
    while store.prune_step(&mut run, now()).unwrap() {
        steps += 1;
    }
    assert!(steps > 50, "many small steps ({steps})");
    assert!(run.is_done());
    let left = all_events(store);
    assert!(left
        .iter()
        .all(|e| e.occurred_at_us >= cutoff_time().timestamp_micros()));
    assert_eq!(run.deleted().events as usize, all.len() - left.len());
    // Nothing is left for a second run.
    assert_eq!(
        store.prune(cutoff(), now()).unwrap(),
        beacon_store::Pruned::default()
    );
}

fn figures_after_pruning_and_more_traffic_equal_those_without_pruning(db: &TestDatabase) {
    let pruned = db.store();
    let reference = TestDatabase::sqlite();
    let reference = reference.store();
    let first = week("s", 4, 1500, 30);
    // Later traffic: the long session goes on, new sessions start, and
    // events arrive out of order within the retained days.
    let mut later = week("t", 5, 600, 10)
        .into_iter()
        .filter(|e| {
            let at: i64 = e
                .split("\"timestamp\":")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            at >= cutoff_time().timestamp_millis()
        })
        .collect::<Vec<_>>();
    later.push(event(
        "slong",
        "slong-later",
        received().timestamp_millis() - 60_000,
        "visit",
        "/pricing",
        "",
    ));
    later.reverse();
    for store in [&pruned, &reference] {
        insert(store, &first);
        store.roll_up_all().unwrap();
    }
    pruned.prune(cutoff(), now()).unwrap();
    for store in [&pruned, &reference] {
        insert(store, &later);
        store.roll_up_all().unwrap();
    }
    assert_eq!(figures(&pruned), figures(&reference));
    assert_eq!(aggregates(&pruned), aggregates(&reference));
}

fn forgetting_sessions_leaves_the_rollups_a_rebuild_of_the_rest_computes(store: &Store) {
    let mut all = week("s", 6, 2000, 40);
    all.push(event(
        "s7",
        "private",
        day(3).timestamp_millis(),
        "visit",
        "/private/s7",
        "https://mail.example/s7",
    ));
    all.push(event(
        "s7",
        "private-click",
        day(3).timestamp_millis(),
        "click",
        "/private-label",
        "",
    ));
    insert(store, &all[..1500]);
    store.roll_up_all().unwrap();
    insert(store, &all[1500..]);
    // Some of the events pending: a pass folded only part of them.
    store.roll_up(100).unwrap();
    let count = store.count_events().unwrap();
    let s7 = store.session_events("s7").unwrap().len() as u64;

    let forgotten = store
        .forget_session("s7", now())
        .unwrap()
        .expect("s7 is stored");
    assert_eq!(forgotten.events, s7);
    for token in ["s3", "slong"] {
        store.forget_session(token, now()).unwrap().expect("stored");
    }

    assert!(store.session("s7").unwrap().is_none());
    assert!(store.session_events("s7").unwrap().is_empty());
    assert!(store.count_events().unwrap() < count - s7 as i64);
    store.roll_up_all().unwrap();
    let lines = store.rollup_fingerprint().unwrap();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("private") || l.contains("mail.example")),
        "an item only a forgotten session had is in no rollup row"
    );
    assert_exact(store);
}

fn forgetting_an_unknown_token_changes_nothing(store: &Store) {
    insert(store, &week("s", 7, 200, 5));
    store.roll_up_all().unwrap();
    let before = store.rollup_fingerprint().unwrap();
    assert_eq!(store.forget_session("nobody", now()).unwrap(), None);
    assert_eq!(store.rollup_fingerprint().unwrap(), before);
    assert_eq!(store.count_events().unwrap(), 207);
}

fn forgetting_a_partly_pruned_session_takes_out_what_can_be_attributed(store: &Store) {
    let all = week("s", 8, 1500, 30);
    let without: Vec<String> = all
        .iter()
        .filter(|e| !e.contains("\"slong\""))
        .cloned()
        .collect();
    let reference = TestDatabase::sqlite();
    let reference = reference.store();
    for (s, items) in [(store, &all), (&reference, &without)] {
        insert(s, items);
        s.roll_up_all().unwrap();
        s.prune(cutoff(), now()).unwrap();
    }
    assert!(store.session("slong").unwrap().is_some(), "partly pruned");
    store
        .forget_session("slong", now())
        .unwrap()
        .expect("stored");

    // After the cutoff every figure is as if it had never been; before it,
    // its visitors and its start are taken out, its pruned events' counts
    // stay (the rollups cannot tell whose they were).
    let after = TimeRange::covering(cutoff_time(), day(9)).unwrap();
    for dim in [TopDimension::Pages, TopDimension::Referrers] {
        assert_eq!(
            store.top(dim, after, 10).unwrap(),
            reference.top(dim, after, 10).unwrap()
        );
    }
    let bounds: Vec<DateTime<Utc>> = (0..9).map(day).collect();
    let ours = store.bucket_stats(&bounds).unwrap();
    let theirs = reference.bucket_stats(&bounds).unwrap();
    for (a, b) in ours.buckets.iter().zip(&theirs.buckets) {
        assert_eq!(
            a.figures.visitors, b.figures.visitors,
            "visitors from {}",
            a.start
        );
        assert_eq!(
            a.figures.sessions_started, b.figures.sessions_started,
            "sessions from {}",
            a.start
        );
        if a.start >= cutoff_time() {
            assert_eq!(a.figures, b.figures, "figures from {}", a.start);
        }
    }
    assert_eq!(ours.total.visitors, theirs.total.visitors);
    assert!(
        !store
            .rollup_fingerprint()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("session ") && l.contains(" slong")),
        "no per-session row left"
    );
}

/// SQLite gives a new row the largest id plus one: without AUTOINCREMENT,
/// deleting the newest events would hand their ids out again, at or below
/// the rollup watermark, and the rollups would never see those events.
fn events_after_forgetting_the_newest_session_are_still_rolled_up(store: &Store) {
    insert(store, &week("s", 9, 100, 5));
    insert(
        store,
        &[event(
            "newest",
            "n1",
            day(6).timestamp_millis(),
            "visit",
            "/",
            "",
        )],
    );
    store.roll_up_all().unwrap();
    store
        .forget_session("newest", now())
        .unwrap()
        .expect("stored");
    insert(
        store,
        &[event(
            "next",
            "x1",
            day(6).timestamp_millis(),
            "visit",
            "/next",
            "",
        )],
    );
    assert_eq!(
        store.roll_up_all().unwrap(),
        1,
        "the new event is rolled up"
    );
    assert_exact(store);
}

/// Events for `token` at `at`, with fresh ids.
fn visits(token: &str, ids: &[&str], at: DateTime<Utc>) -> Vec<String> {
    ids.iter()
        .map(|id| event(token, id, at.timestamp_millis(), "visit", "/again", ""))
        .collect()
}

fn a_session_forgotten_by_one_store_is_written_anew_by_another_that_cached_it(db: &TestDatabase) {
    let (a, b) = (db.store(), db.store());
    insert(&b, &visits("s", &["1", "2"], day(5)));
    insert(&b, &visits("s", &["3"], day(5))); // known to b now
    a.roll_up_all().unwrap();
    a.forget_session("s", now()).unwrap().expect("stored");

    insert(&b, &visits("s", &["4", "5"], day(6)));
    // A new row (on SQLite it may get the deleted row's id back: nothing
    // of the old one is left to mix with).
    let session = b
        .session("s")
        .unwrap()
        .expect("a new session with the token");
    assert_eq!(session.first_seen(), day(6));
    let ids: Vec<String> = b
        .session_events("s")
        .unwrap()
        .into_iter()
        .map(|e| e.public_id)
        .collect();
    assert_eq!(ids, ["4", "5"]);
    assert_eq!(
        b.count_events().unwrap(),
        2,
        "no event under the deleted session"
    );
    b.roll_up_all().unwrap();
    assert_exact(&b);
}

fn a_session_pruned_by_one_store_is_written_anew_by_another_that_cached_it(db: &TestDatabase) {
    let (a, b) = (db.store(), db.store());
    insert(&b, &visits("old", &["1"], day(1)));
    insert(&b, &visits("old", &["2"], day(1))); // known to b now
    insert(&b, &visits("new", &["1"], day(6)));
    b.roll_up_all().unwrap();
    let pruned = a.prune(cutoff(), now()).unwrap();
    assert_eq!((pruned.events, pruned.sessions), (2, 1));

    insert(&b, &visits("old", &["3"], day(6)));
    let ids: Vec<String> = b
        .session_events("old")
        .unwrap()
        .into_iter()
        .map(|e| e.public_id)
        .collect();
    assert_eq!(ids, ["3"], "filed under a new session with the token");
    assert_eq!(
        b.count_events().unwrap(),
        2,
        "no event under the deleted session"
    );
    assert_eq!(all_events(&b).len(), 2);
}

fn a_store_that_missed_deletions_no_longer_logged_forgets_its_whole_cache(db: &TestDatabase) {
    let (a, b) = (db.store(), db.store());
    for token in ["s1", "s2", "s3"] {
        insert(&b, &visits(token, &["1"], day(5)));
        insert(&b, &visits(token, &["2"], day(5)));
    }
    b.roll_up_all().unwrap();
    a.forget_session("s1", now()).unwrap().expect("stored");
    // Two days later another deletion trims the first from the log: b,
    // which has not written since, cannot tell which ids went.
    a.forget_session("s3", now() + Duration::days(2))
        .unwrap()
        .expect("stored");

    insert(&b, &visits("s1", &["3"], day(6)));
    insert(&b, &visits("s2", &["3"], day(6)));
    let ids = |token: &str| -> Vec<String> {
        b.session_events(token)
            .unwrap()
            .into_iter()
            .map(|e| e.public_id)
            .collect()
    };
    assert_eq!(ids("s1"), ["3"]);
    assert_eq!(ids("s2"), ["1", "2", "3"]);
    assert_eq!(b.count_events().unwrap(), 4);
    assert_eq!(all_events(&b).len(), 4);
}

/// A rebuild recomputes only the retained range: from the day pruning cut
/// at, even when an old event that arrived late (after the prune, or not
/// yet rolled up during it) is stored from before that day.
fn a_rebuild_after_pruning_keeps_the_figures_of_the_pruned_days(store: &Store) {
    insert(store, &week("s", 10, 1500, 30));
    store.roll_up_all().unwrap();
    // Not rolled up yet when the prune runs: it stays.
    insert(
        store,
        &[event(
            "late",
            "late1",
            day(1).timestamp_millis(),
            "visit",
            "/late",
            "",
        )],
    );
    store.prune(cutoff(), now()).unwrap();
    assert!(store.session("late").unwrap().is_some());
    store.roll_up_all().unwrap();
    let before = figures(store);
    let aggregates_before = aggregates(store);
    store.rebuild_rollups().unwrap();
    assert_eq!(figures(store), before);
    assert_eq!(aggregates(store), aggregates_before);
}

/// Who is behind session `sN` (`{prefix}N`): every fourth session has no
/// visitor id (stored before enrichment: its own visitor), every seventh
/// is a bot's, the others share one of five visitor ids (two tabs, a
/// return the same day), with a country and a device.
fn profile_of(token: &str) -> Option<Arc<VisitorProfile>> {
    let n: i64 = token
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(99);
    if n % 4 == 0 {
        return None;
    }
    Some(Arc::new(VisitorProfile {
        visitor_id: Some(-1 - n % 5),
        country: Some(["DE", "FR"][(n % 2) as usize].to_owned()),
        device: Some(["desktop", "mobile", "tablet"][(n % 3) as usize].to_owned()),
        bot: n % 7 == 3,
        ..VisitorProfile::default()
    }))
}

/// [`insert`], with the profiles of [`profile_of`].
fn insert_profiled(store: &Store, items: &[String]) {
    for chunk in items.chunks(200) {
        let events: Vec<NewEvent> = batch(chunk)
            .into_iter()
            .map(|e| match profile_of(e.session().as_str()) {
                Some(p) => e.with_profile(p),
                None => e,
            })
            .collect();
        store.insert_batch(&events).unwrap();
    }
}

fn forgetting_sessions_of_shared_visitors_leaves_the_rollups_a_rebuild_computes(store: &Store) {
    let all = week("s", 11, 2500, 40);
    insert_profiled(store, &all[..2000]);
    store.roll_up_all().unwrap();
    insert_profiled(store, &all[2000..]);
    store.roll_up(150).unwrap();
    let shared = |t: &str| store.session(t).unwrap().unwrap().visitor_id;
    assert_eq!(shared("s1"), shared("s6"), "s1 and s6 are one visitor");
    // A shared visitor's session, a bot's, one without a visitor id, and
    // then every session of one visitor.
    for token in [
        "s1", "s3", "s8", "s2", "s7", "s12", "s17", "s22", "s27", "s32", "s37",
    ] {
        if store.session(token).unwrap().is_some() {
            store.forget_session(token, now()).unwrap().expect("stored");
        }
        store.roll_up(100).unwrap();
    }
    store.roll_up_all().unwrap();
    assert_exact(store);
}

fn pruning_sessions_of_shared_visitors_keeps_counting_them_exactly(store: &Store) {
    let first = week("s", 12, 1500, 30);
    let reference = TestDatabase::sqlite();
    let reference = reference.store();
    // Later events of the retained sessions, and of sessions that share a
    // visitor id with pruned ones.
    let later: Vec<String> = (0..30)
        .map(|n| {
            event(
                &format!("s{n}"),
                &format!("later{n}"),
                received().timestamp_millis() - 60_000 * n,
                "visit",
                "/later",
                "",
            )
        })
        .collect();
    // Two sessions of one visitor (two tabs), both before the cutoff.
    let early = day(1).timestamp_millis();
    let tabs: Vec<NewEvent> = batch(&[
        event("tab1", "t1", early, "visit", "/", ""),
        event("tab2", "t2", early + 60_000, "visit", "/pricing", ""),
    ])
    .into_iter()
    .map(|e| {
        e.with_profile(Arc::new(VisitorProfile {
            visitor_id: Some(-9),
            ..VisitorProfile::default()
        }))
    })
    .collect();
    for s in [store, &reference] {
        insert_profiled(s, &first);
        s.insert_batch(&tabs).unwrap();
        s.roll_up_all().unwrap();
    }
    assert!(store
        .rollup_fingerprint()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("seen -9 ")));
    let pruned = store.prune(cutoff(), now()).unwrap();
    assert!(pruned.sessions > 0);
    // A visitor id whose sessions are all gone has no rows left; one that a
    // stored session still has keeps them (its later events need them).
    let remaining: std::collections::BTreeSet<i64> = (0..30)
        .filter_map(|n| store.session(&format!("s{n}")).unwrap())
        .filter_map(|s| s.visitor_id)
        .collect();
    let seen = store.rollup_fingerprint().unwrap();
    let mut gone = 0;
    for visitor in [-9, -5, -4, -3, -2, -1_i64] {
        let rows = seen
            .iter()
            .filter(|l| {
                l.starts_with(&format!("seen {visitor} "))
                    || l.starts_with(&format!("profile {visitor} "))
            })
            .count();
        if remaining.contains(&visitor) {
            assert!(
                rows > 0,
                "visitor {visitor} still has sessions: its rows stay"
            );
        } else {
            assert_eq!(
                rows, 0,
                "visitor {visitor} has no session left: its rows go"
            );
            gone += 1;
        }
    }
    assert!(!remaining.contains(&-9), "both tabs were pruned");
    assert!(
        gone < 6,
        "some visitor ids keep sessions: {gone} of 6 lost all"
    );
    // Sessions pruned get events again: they start anew on the pruned
    // store, so only those of sessions still stored are sent to both.
    let kept: Vec<String> = later
        .into_iter()
        .filter(|e| {
            let token = e
                .split("\"sessionId\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            store.session(token).unwrap().is_some()
        })
        .collect();
    assert!(kept.len() > 5);
    for s in [store, &reference] {
        insert_profiled(s, &kept);
        s.roll_up_all().unwrap();
    }
    assert_eq!(figures(store), figures(&reference));
    assert_eq!(aggregates(store), aggregates(&reference));
}
