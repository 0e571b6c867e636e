//! Rollups: what the rollup passes fold in equals what a rebuild from events
//! computes, on SQLite and PostgreSQL, whatever the arrival order, retries,
//! duplicates, pass boundaries, visitor ids and bots; a pass never skips an
//! event of an insert still running; and the history queries read them
//! right.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use beacon_model::{NewEvent, VisitorProfile};
use beacon_store::testing::TestDatabase;
use beacon_store::{EventQuery, SessionQuery, Store, TimeRange, TopDimension};
use chrono::{DateTime, TimeZone, Utc};

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 27, 12, 0, 0).unwrap()
}

/// The start of a quarter hour, numbered from the epoch.
fn quarter(q: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(q * 900_000_000).unwrap()
}

fn events(body: &str) -> Vec<NewEvent> {
    beacon_store::testing::parse_events(body, received(), None)
}

beacon_store::store_suite!(
    incremental_rollups_equal_a_rebuild_whatever_the_arrival_order,
    rollups_lag_until_a_pass_and_each_event_is_counted_once,
    retried_batches_are_not_counted_twice,
    stats_and_top_lists_count_distinct_sessions_exactly,
    keyset_pages_cover_every_session_and_event_once,
);

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

/// `n` events over three days, in `sessions` sessions, as JSON objects.
fn random_events(seed: u64, n: usize, sessions: u64) -> Vec<String> {
    let mut rng = Lcg(seed);
    let start = Utc
        .with_ymd_and_hms(2026, 10, 24, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    (0..n)
        .map(|i| {
            let s = rng.next(sessions);
            // Sessions live within about 3 hours of their own start.
            let base = start + (s as i64 * 3_600_000 * 72 / sessions as i64);
            let at = base + rng.next(3 * 3_600_000) as i64;
            let kind = ["visit", "visit", "click", "heartbeat", "scroll"][rng.next(5) as usize];
            let page = ["/", "/pricing", "/blog/a", "/blog/b"][rng.next(4) as usize];
            let referrer = ["", "https://www.google.com/", "https://news.example/"][(s % 3) as usize];
            let label = ["Buy", "Docs", ""][rng.next(3) as usize];
            let data = if label.is_empty() { "{}".to_owned() } else { format!(r#"{{"label":"{label}"}}"#) };
            format!(
                r#"{{"type":"{kind}","sessionId":"s{s}","id":"e{i}","timestamp":{at},"url":"https://site.example{page}","referrer":"{referrer}","data":{data}}}"#
            )
        })
        .collect()
}

fn batch(items: &[String]) -> Vec<NewEvent> {
    events(&format!("{{\"batch\":[{}]}}", items.join(",")))
}

/// Who is behind session `s{n}` of [`random_events`]: every fifth one was
/// stored without a profile (its own visitor, no place or device); the
/// others share a visitor id in threes (one of six has none), live in one
/// of three countries or none, all in a "Springfield", and every seventh
/// is a bot.
fn profile_of(token: &str) -> Option<Arc<VisitorProfile>> {
    let s: i64 = token.strip_prefix('s')?.parse().ok()?;
    if s % 5 == 0 {
        return None;
    }
    let pick = |list: &[&str], i: i64| list[i as usize % list.len()].to_owned();
    Some(Arc::new(VisitorProfile {
        visitor_id: (s % 6 != 1).then_some(-1 - s / 3),
        browser: Some(pick(&["Chrome", "Firefox", "Safari"], s)),
        browser_version: Some("131".into()),
        os: (s % 4 != 2).then(|| pick(&["Windows", "Mac OS X", "iOS"], s / 2)),
        os_version: None,
        device: Some(pick(&["desktop", "mobile", "tablet", "other"], s)),
        country: (s % 4 != 3).then(|| pick(&["US", "CA", "DE"], s)),
        region: (s % 2 == 0).then(|| pick(&["Illinois", "Manitoba"], s / 2)),
        city: Some("Springfield".into()),
        bot: s % 7 == 3,
    }))
}

/// Events with the profiles of their sessions ([`profile_of`]), as
/// enrichment gives them.
fn profiled(events: Vec<NewEvent>) -> Vec<NewEvent> {
    events
        .into_iter()
        .map(|e| match profile_of(e.session().as_str()) {
            Some(profile) => e.with_profile(profile),
            None => e,
        })
        .collect()
}

fn incremental_rollups_equal_a_rebuild_whatever_the_arrival_order(store: &Store) {
    let mut all = random_events(7, 3000, 60);
    // The earliest event starts a UTC day, so the rebuild recomputes every
    // unit (it keeps the units that start before the earliest event).
    all.push(
        r#"{"type":"visit","sessionId":"s1","id":"first","timestamp":"2026-10-24T00:00:00Z","url":"https://site.example/"}"#
            .to_owned(),
    );
    // Arrival order scrambled: later events of a session often come first.
    let mut rng = Lcg(99);
    for i in (1..all.len()).rev() {
        let j = rng.next(i as u64 + 1) as usize;
        all.swap(i, j);
    }
    // Passes of uneven sizes that cut batches anywhere, lagging behind the
    // inserts, then a last catch-up.
    let mut passes = Lcg(5);
    for chunk in all.chunks(250) {
        store.insert_batch(&profiled(batch(chunk))).unwrap();
        store.roll_up(1 + passes.next(400) as usize).unwrap();
    }
    store.roll_up_all().unwrap();
    let incremental = store.rollup_fingerprint().unwrap();
    assert!(incremental.len() > 1000, "rollups were maintained");
    for dim in 4..=9 {
        assert!(
            incremental
                .iter()
                .any(|l| l.starts_with(&format!("count 1 {dim} "))),
            "dimension {dim} has counts"
        );
    }
    // Where visitors were seen with their session dimensions is one row
    // per set of items, none per dimension.
    assert!(incremental.iter().any(|l| l.starts_with("profile ")));
    assert!(!incremental.iter().any(|l| {
        let mut words = l.split(' ');
        words.next() == Some("seen")
            && words
                .nth(1)
                .is_some_and(|dim| (4..=9).contains(&dim.parse::<i32>().unwrap_or(0)))
    }));
    store.rebuild_rollups().unwrap();
    let rebuilt = store.rollup_fingerprint().unwrap();
    if incremental != rebuilt {
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
        panic!("incremental differs from rebuild:\nonly incremental: {only_inc:#?}\nonly rebuilt: {only_reb:#?}");
    }
}

fn rollups_lag_until_a_pass_and_each_event_is_counted_once(store: &Store) {
    let all = random_events(13, 100, 5);
    store.insert_batch(&batch(&all)).unwrap();
    let day = |day: u32| Utc.with_ymd_and_hms(2026, 10, day, 0, 0, 0).unwrap();
    let (from, to) = (day(23), day(29));
    let events = |store: &Store| store.bucket_stats(&[from, to]).unwrap().total.events;
    assert_eq!(events(store), 0, "nothing is rolled up before a pass");
    let first = store.roll_up(30).unwrap();
    assert_eq!(
        first,
        beacon_store::RollupProgress {
            applied: 30,
            caught_up: false
        }
    );
    assert_eq!(events(store), 30);
    assert_eq!(store.roll_up_all().unwrap(), 70);
    assert_eq!(events(store), 100);
    let idle = store.roll_up(30).unwrap();
    assert_eq!(
        idle,
        beacon_store::RollupProgress {
            applied: 0,
            caught_up: true
        }
    );
    assert_eq!(
        events(store),
        100,
        "a pass with nothing new changes nothing"
    );
    // A rebuild moves the watermark: nothing is counted twice after it.
    let more: Vec<String> = random_events(17, 10, 2)
        .iter()
        .map(|e| e.replace(r#""id":"e"#, r#""id":"more-"#))
        .collect();
    store.insert_batch(&batch(&more)).unwrap();
    store.rebuild_rollups().unwrap();
    assert_eq!(store.roll_up_all().unwrap(), 0);
    assert_eq!(events(store), 110);
}

fn retried_batches_are_not_counted_twice(store: &Store) {
    let all = random_events(3, 400, 10);
    store.insert_batch(&batch(&all[..300])).unwrap();
    assert_eq!(store.roll_up_all().unwrap(), 300);
    // A retry of the first 200 with 100 new ones, and a duplicate within.
    let mut retry = all[..200].to_vec();
    retry.extend_from_slice(&all[300..]);
    retry.push(all[350].clone());
    store.insert_batch(&batch(&retry)).unwrap();
    assert_eq!(store.roll_up_all().unwrap(), 100, "only the new events");
    let incremental = store.rollup_fingerprint().unwrap();
    store.rebuild_rollups().unwrap();
    assert_eq!(incremental, store.rollup_fingerprint().unwrap());
    assert_eq!(store.count_events().unwrap(), 400);
}

fn stats_and_top_lists_count_distinct_sessions_exactly(store: &Store) {
    let all = random_events(11, 2000, 40);
    for chunk in all.chunks(300) {
        store.insert_batch(&batch(chunk)).unwrap();
    }
    store.roll_up_all().unwrap();
    let stored = store
        .list_events(&EventQuery {
            limit: 10_000,
            ..EventQuery::default()
        })
        .unwrap();
    assert_eq!(stored.len(), 2000);
    let q = |e: &beacon_store::StoredEvent| e.occurred_at_us.div_euclid(900_000_000);
    let first = stored.iter().map(q).min().unwrap();
    let last = stored.iter().map(q).max().unwrap() + 1;
    // Uneven buckets, as a time zone's hours and days would be.
    let mut bounds = vec![first - 3];
    while *bounds.last().unwrap() < last {
        let step = [4, 100, 92, 96, 1][bounds.len() % 5];
        bounds.push(bounds.last().unwrap() + step);
    }
    let times: Vec<DateTime<Utc>> = bounds.iter().map(|&b| quarter(b)).collect();
    let stats = store.bucket_stats(&times).unwrap();
    let total = stats.total;
    assert_eq!(stats.buckets.len(), bounds.len() - 1);
    for (i, bucket) in stats.buckets.iter().enumerate() {
        assert_eq!(bucket.start, times[i], "start of bucket {i}");
        let b = &bucket.figures;
        let inside: Vec<_> = stored
            .iter()
            .filter(|e| (bounds[i]..bounds[i + 1]).contains(&q(e)))
            .collect();
        let sessions: std::collections::HashSet<_> =
            inside.iter().map(|e| &e.session_token).collect();
        assert_eq!(b.events, inside.len() as i64, "events of bucket {i}");
        assert_eq!(
            b.page_views,
            inside.iter().filter(|e| e.kind == "visit").count() as i64,
            "page views of bucket {i}"
        );
        assert_eq!(
            b.clicks,
            inside.iter().filter(|e| e.kind == "click").count() as i64,
            "clicks of bucket {i}"
        );
        assert_eq!(b.visitors, sessions.len() as i64, "visitors of bucket {i}");
    }
    assert_eq!(total.events, 2000);
    assert_eq!(total.visitors, 40);
    assert_eq!(total.sessions_started, 40);

    // Top lists over ranges that cut days at both ends, and within one day.
    for (a, b) in [
        (first, last),
        (first + 50, last - 70),
        (first + 100, first + 130),
        (first + 96 * 2 - 5, first + 96 * 2 + 3),
    ] {
        let inside: Vec<_> = stored.iter().filter(|e| (a..b).contains(&q(e))).collect();
        for (dim, key) in [
            (
                TopDimension::Pages,
                Box::new(|e: &&beacon_store::StoredEvent| {
                    (e.kind == "visit").then(|| e.url.clone().unwrap())
                }) as Box<dyn Fn(&&beacon_store::StoredEvent) -> Option<String>>,
            ),
            (
                TopDimension::Referrers,
                Box::new(|e: &&beacon_store::StoredEvent| {
                    (e.kind == "visit")
                        .then(|| e.referrer.clone())
                        .flatten()
                        .filter(|r| !r.is_empty())
                }),
            ),
            (
                TopDimension::Clicks,
                Box::new(|e: &&beacon_store::StoredEvent| {
                    (e.kind == "click").then(|| e.label.clone().unwrap_or_else(|| "unknown".into()))
                }),
            ),
        ] {
            let mut expected: std::collections::BTreeMap<
                String,
                (i64, std::collections::HashSet<String>),
            > = Default::default();
            for e in &inside {
                if let Some(k) = key(e) {
                    let entry = expected.entry(k).or_default();
                    entry.0 += 1;
                    entry.1.insert(e.session_token.clone());
                }
            }
            let mut expected: Vec<(String, i64, i64)> = expected
                .into_iter()
                .map(|(k, (n, s))| (k, n, s.len() as i64))
                .collect();
            expected.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            let got: Vec<(String, i64, i64)> = store
                .top(
                    dim,
                    TimeRange::covering(quarter(a), quarter(b)).unwrap(),
                    100,
                )
                .unwrap()
                .into_iter()
                .map(|t| (t.item, t.count, t.visitors))
                .collect();
            assert_eq!(got, expected, "{dim:?} over {a}..{b}");
        }
    }
}

/// An insert that took its id before another insert committed, and commits
/// after it: a pass must wait for it rather than move the watermark past
/// its id and never count it.
#[test]
fn a_pass_waits_for_an_insert_still_running_below_its_ids() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let Some(db) = TestDatabase::postgres() else {
        return;
    };
    let store = db.store();
    let mut slow = diesel::PgConnection::establish(&db.raw_url).unwrap();
    slow.batch_execute(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock_shared({lock});
         INSERT INTO sessions (token, first_seen, last_seen) VALUES ('slow', 1, 1);
         INSERT INTO events (public_id, session_id, kind, occurred_at, received_at)
             SELECT 'slow-1', id, 'visit', 1, 1 FROM sessions WHERE token = 'slow';",
        lock = beacon_store::INGEST_LOCK
    ))
    .unwrap();
    // A later insert commits first, with a larger id.
    store
        .insert_batch(&batch(&random_events(19, 5, 1)))
        .unwrap();
    let pass = {
        let store = store.clone();
        std::thread::spawn(move || store.roll_up_all().unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !pass.is_finished(),
        "the pass went ahead while an insert below its ids was running"
    );
    slow.batch_execute("COMMIT").unwrap();
    assert_eq!(pass.join().unwrap(), 6, "both inserts are rolled up");
    let incremental = store.rollup_fingerprint().unwrap();
    store.rebuild_rollups().unwrap();
    assert_eq!(incremental, store.rollup_fingerprint().unwrap());
}

fn keyset_pages_cover_every_session_and_event_once(store: &Store) {
    let all = random_events(5, 500, 50);
    store.insert_batch(&batch(&all)).unwrap();
    store.roll_up_all().unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_sessions(&SessionQuery {
                before,
                limit: 7,
                ..SessionQuery::default()
            })
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some((last.session.first_seen_us, last.session.id));
        seen.extend(page.iter().map(|s| s.session.token.clone()));
    }
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(seen.len(), 50);
    assert_eq!(unique.len(), 50);
    let total: i64 = store
        .list_sessions(&SessionQuery {
            limit: 100,
            ..SessionQuery::default()
        })
        .unwrap()
        .iter()
        .map(|s| s.events)
        .sum();
    assert_eq!(total, 500, "per-session counters add up");

    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_events(&EventQuery {
                after,
                limit: 33,
                ..EventQuery::default()
            })
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.occurred_at_us, last.id));
        ids.extend(page.iter().map(|e| e.id));
    }
    assert_eq!(ids.len(), 500);
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        500
    );
}
