//! One storage suite, run on SQLite always and on PostgreSQL whenever
//! `TEST_DATABASE_URL` is set. Each test gets a fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use beacon_model::{NewEvent, VisitorProfile};
use beacon_store::testing::TestDatabase;
use beacon_store::Store;
use chrono::{DateTime, Duration, TimeZone, Utc};

const PIXEL: &str = include_str!("../../../tests/fixtures/batch-pixel.json");

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 10).unwrap()
}

fn events(body: &str) -> Vec<NewEvent> {
    beacon_store::testing::parse_events(body, received(), Some("header/1"))
}

beacon_store::store_suite!(
    pixel_batch_round_trips_field_by_field,
    retried_batch_is_stored_once,
    duplicate_id_within_a_batch_is_stored_once,
    generated_and_client_ids_mix_in_one_batch,
    sessions_merge_across_batches,
    large_batches_are_chunked_and_complete,
    concurrent_writers_on_shared_sessions_do_not_deadlock,
    unusual_text_round_trips,
    recent_and_since_queries_order_correctly,
    live_reads_carry_the_sessions_profile_and_leave_bots_out,
    migrations_are_idempotent,
    a_sessions_profile_is_set_by_its_first_event_and_never_changed,
    every_instance_gets_the_salt_the_first_one_stored,
    the_country_migration_agrees_with_the_enricher,
);

fn pixel_batch_round_trips_field_by_field(store: &Store) {
    let input = events(PIXEL);
    let stored = store.insert_batch(&input).unwrap();
    assert_eq!(stored.len(), 4);
    let back = store.session_events("1764496800000-k3j9x2").unwrap();
    assert_eq!(back, stored, "what insert returns is what a read returns");
    for (e, row) in input.iter().zip(&back) {
        assert_eq!(row.public_id, e.id().as_str());
        assert_eq!(row.kind, e.kind().as_str());
        assert_eq!(row.url.as_deref(), e.url());
        assert_eq!(row.referrer.as_deref(), e.referrer());
        assert_eq!(row.user_agent.as_deref(), e.user_agent());
        assert_eq!(row.label.as_deref(), e.label());
        let meta: serde_json::Value = serde_json::from_str(&row.metadata).unwrap();
        assert_eq!(meta, serde_json::Value::Object(e.data().clone()));
        assert_eq!(row.occurred_at(), e.occurred_at());
        assert_eq!(row.received_at(), received());
    }
    assert_eq!(back[1].label.as_deref(), Some("Projects"));
    let session = store.session("1764496800000-k3j9x2").unwrap().unwrap();
    assert_eq!(session.country.as_deref(), Some("Germany"));
    assert_eq!(session.city.as_deref(), Some("Berlin"));
    assert_eq!(session.referrer.as_deref(), Some("https://www.google.com/"));
    assert_eq!(
        session.entry_url.as_deref(),
        Some("https://portfolio.example/")
    );
    assert_eq!(session.first_seen(), input[0].occurred_at());
    assert_eq!(session.last_seen(), input[3].occurred_at());
    assert!(store.session("nope").unwrap().is_none());
}

fn retried_batch_is_stored_once(store: &Store) {
    let body = r#"{"batch":[{"type":"visit","sessionId":"s1","id":"e1"},
                            {"type":"click","sessionId":"s1","id":"e2"}]}"#;
    assert_eq!(store.insert_batch(&events(body)).unwrap().len(), 2);
    assert_eq!(
        store.insert_batch(&events(body)).unwrap().len(),
        0,
        "retry adds nothing"
    );
    assert_eq!(store.count_events().unwrap(), 2);
    // The same id in another session is another event.
    let other = r#"{"type":"visit","sessionId":"s2","id":"e1"}"#;
    assert_eq!(store.insert_batch(&events(other)).unwrap().len(), 1);
    assert_eq!(store.count_events().unwrap(), 3);
}

fn duplicate_id_within_a_batch_is_stored_once(store: &Store) {
    let body = r#"{"batch":[{"type":"visit","sessionId":"s","id":"same"},
                            {"type":"visit","sessionId":"s","id":"same"}]}"#;
    let stored = store.insert_batch(&events(body)).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(store.count_events().unwrap(), 1);
}

/// On PostgreSQL, events without an id are copied and the others inserted
/// with a duplicate check: one batch of both must come back whole, each
/// event with its own stored row, in input order.
fn generated_and_client_ids_mix_in_one_batch(store: &Store) {
    let first = r#"{"type":"visit","sessionId":"x","id":"c0"}"#;
    assert_eq!(store.insert_batch(&events(first)).unwrap().len(), 1);
    let body = r#"{"batch":[{"type":"visit","sessionId":"x","url":"https://a/"},
                            {"type":"click","sessionId":"x","id":"c1"},
                            {"type":"click","sessionId":"y","data":{"label":"gen"}},
                            {"type":"click","sessionId":"x","id":"c1"},
                            {"type":"scroll","sessionId":"x","id":"c0"},
                            {"type":"heartbeat","sessionId":"y","id":"c2"},
                            {"type":"session_end","sessionId":"x"}]}"#;
    let input = events(body);
    let stored = store.insert_batch(&input).unwrap();
    let kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["visit", "click", "click", "heartbeat", "session_end"],
        "input order, the repeated c1 and the stored c0 left out"
    );
    let public: Vec<&str> = stored.iter().map(|e| e.public_id.as_str()).collect();
    assert_eq!(public[1], "c1");
    assert_eq!(public[3], "c2");
    for (at, e) in [(0, &input[0]), (2, &input[2]), (4, &input[6])] {
        assert!(e.id_is_generated());
        assert_eq!(public[at], e.id().as_str());
    }
    assert_eq!(store.count_events().unwrap(), 6);
    let mut back = store.session_events("x").unwrap();
    back.extend(store.session_events("y").unwrap());
    for e in &stored {
        let row = back.iter().find(|r| r.id == e.id).expect("stored row");
        assert_eq!(row, e, "what insert returns is the row with that id");
    }
    assert_eq!(
        store.session_events("y").unwrap()[0].label.as_deref(),
        Some("gen")
    );
}

fn sessions_merge_across_batches(store: &Store) {
    let later = r#"{"type":"heartbeat","sessionId":"m","timestamp":"2026-11-30T10:00:05Z",
                    "referrer":"https://late.example/","userAgent":"late"}"#;
    let earlier = r#"{"type":"visit","sessionId":"m","timestamp":"2026-11-30T10:00:01Z",
                      "url":"https://site/","data":{"country":"France","city":"Paris"}}"#;
    store.insert_batch(&events(later)).unwrap();
    store.insert_batch(&events(earlier)).unwrap();
    let s = store.session("m").unwrap().unwrap();
    assert_eq!(
        s.first_seen(),
        Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 1).unwrap()
    );
    assert_eq!(
        s.last_seen(),
        Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 5).unwrap()
    );
    assert_eq!(
        s.country.as_deref(),
        Some("France"),
        "country fills in later"
    );
    assert_eq!(s.entry_url.as_deref(), Some("https://site/"));
    assert_eq!(
        s.user_agent.as_deref(),
        Some("late"),
        "first stored UA is kept"
    );
}

fn large_batches_are_chunked_and_complete(store: &Store) {
    let mut all = Vec::new();
    for i in 0..5 {
        let batch: Vec<String> = (0..500)
            .map(|j| {
                format!(
                    r#"{{"type":"click","sessionId":"s{}","data":{{"label":"L{j}"}}}}"#,
                    (i * 500 + j) % 1300
                )
            })
            .collect();
        all.extend(events(&format!("{{\"batch\":[{}]}}", batch.join(","))));
    }
    assert_eq!(all.len(), 2500);
    let stored = store.insert_batch(&all).unwrap();
    assert_eq!(stored.len(), 2500);
    assert_eq!(store.count_events().unwrap(), 2500);
    let ids: std::collections::HashSet<i64> = stored.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 2500, "every stored event has its own id");
}

fn concurrent_writers_on_shared_sessions_do_not_deadlock(store: &Store) {
    // Rollup passes run beside the writers: they move the same sessions'
    // bounds.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let passes = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                store.roll_up(7).unwrap();
            }
        })
    };
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    // Every batch upserts its sessions, as a writer that has
                    // not seen them does.
                    store.forget_known_sessions();
                    // Each writer touches the same sessions in its own order.
                    let mut batch: Vec<String> = (0..10)
                        .map(|k| format!(r#"{{"type":"heartbeat","sessionId":"shared-{k}","id":"{t}-{round}-{k}"}}"#))
                        .collect();
                    if t % 2 == 1 {
                        batch.reverse();
                    }
                    let body = format!("{{\"batch\":[{}]}}", batch.join(","));
                    store.insert_batch(&events(&body)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    passes.join().unwrap();
    assert_eq!(store.count_events().unwrap(), 4 * 20 * 10);
}

/// A writer skips the session upsert for a session it wrote before and has
/// nothing to fill (`known.rs`); the rollup pass, or a rebuild, moves the
/// bounds instead. Two stores stand for two instances.
fn known_sessions_get_their_bounds_from_the_pass(db: &TestDatabase) {
    let (a, b) = (db.store(), db.store());
    let event = |kind: &str, second: u32, extra: &str| {
        events(&format!(
            r#"{{"type":"{kind}","sessionId":"k","timestamp":"2026-11-30T10:00:{second:02}Z"{extra}}}"#
        ))
    };
    let at = |second: u32| Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, second).unwrap();
    let bounds = || {
        let s = a.session("k").unwrap().unwrap();
        (s.first_seen(), s.last_seen())
    };
    a.insert_batch(&event(
        "visit",
        1,
        r#","url":"https://site/","referrer":"https://ref/","data":{"country":"FR","city":"Paris"}"#,
    ))
    .unwrap();
    // Known to `a`, nothing to fill: later and earlier events alike.
    a.insert_batch(&event("heartbeat", 5, "")).unwrap();
    a.insert_batch(&event("click", 0, "")).unwrap();
    // Unknown to `b`: its upsert widens the bounds at once.
    b.insert_batch(&event("heartbeat", 9, "")).unwrap();
    a.roll_up_all().unwrap();
    assert_eq!(bounds(), (at(0), at(9)));
    assert_eq!(a.session_events("k").unwrap().len(), 4);
    let s = a.session("k").unwrap().unwrap();
    assert_eq!(s.entry_url.as_deref(), Some("https://site/"));
    assert_eq!(s.country.as_deref(), Some("FR"));

    // A rebuild folds events without a pass: it moves the bounds too.
    a.insert_batch(&event("heartbeat", 12, "")).unwrap();
    a.rebuild_rollups().unwrap();
    assert_eq!(bounds(), (at(0), at(12)));

    // A known session that a batch can fill a field of is upserted: the
    // field is there at once.
    let other = |kind: &str, extra: &str| {
        events(&format!(
            r#"{{"type":"{kind}","sessionId":"f","timestamp":"2026-11-30T10:00:20Z"{extra}}}"#
        ))
    };
    a.insert_batch(&other("heartbeat", "")).unwrap();
    a.insert_batch(&other("visit", r#","url":"https://site/late""#))
        .unwrap();
    let s = a.session("f").unwrap().unwrap();
    assert_eq!(s.entry_url.as_deref(), Some("https://site/late"));
}

#[test]
fn known_sessions_get_their_bounds_from_the_pass_sqlite() {
    known_sessions_get_their_bounds_from_the_pass(&TestDatabase::sqlite());
}

#[test]
fn known_sessions_get_their_bounds_from_the_pass_postgres() {
    if let Some(db) = TestDatabase::postgres() {
        known_sessions_get_their_bounds_from_the_pass(&db);
    }
}

/// The rollup pass locks the sessions whose bounds it moves in the order
/// the writers' upserts lock them: byte order of the token, as Rust sorts
/// them. A database whose default collation sorts otherwise ("a-1" before
/// "B-1" in en-US, after it in bytes) must not change the pass's order, or
/// a pass and a writer can each hold a row the other waits for.
#[test]
fn the_pass_locks_sessions_in_byte_order_whatever_the_collation() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection, RunQueryDsl};

    let Some(db) = TestDatabase::postgres_icu("en-US") else {
        return;
    };
    let store = db.store();
    let batch = |second: u32| {
        events(&format!(
            r#"{{"batch":[{{"type":"visit","sessionId":"a-1","timestamp":"2026-11-30T10:00:{second:02}Z"}},
                          {{"type":"visit","sessionId":"B-1","timestamp":"2026-11-30T10:00:{second:02}Z"}}]}}"#
        ))
    };
    store.insert_batch(&batch(1)).unwrap();
    store.roll_up_all().unwrap();
    // Known sessions: the pass, not the writer, moves these bounds.
    store.insert_batch(&batch(5)).unwrap();

    // A writer's upsert would lock "B-1" first (byte order); hold it.
    let mut writer = PgConnection::establish(&db.raw_url).unwrap();
    writer
        .batch_execute("BEGIN; SELECT 1 FROM sessions WHERE token = 'B-1' FOR UPDATE")
        .unwrap();
    let pass = {
        let store = store.clone();
        std::thread::spawn(move || store.roll_up_all())
    };
    let mut probe = PgConnection::establish(&db.raw_url).unwrap();
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    // Wait until the pass waits for the row the writer holds.
    let mut waits = false;
    for _ in 0..600 {
        let waiting: Waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .get_result(&mut probe)
        .unwrap();
        if waiting.n > 0 {
            waits = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(waits, "the pass never waited for the writer's row");
    // Had the pass sorted by the collation, it would hold "a-1" now.
    let other = probe.batch_execute(
        "BEGIN; SELECT 1 FROM sessions WHERE token = 'a-1' FOR UPDATE NOWAIT; ROLLBACK",
    );
    writer.batch_execute("ROLLBACK").unwrap();
    pass.join().unwrap().unwrap();
    assert!(
        other.is_ok(),
        "the pass locked \"a-1\" before \"B-1\": {other:?}"
    );
    let s = store.session("a-1").unwrap().unwrap();
    assert_eq!(
        s.last_seen(),
        Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 5).unwrap()
    );
}

fn unusual_text_round_trips(store: &Store) {
    let body = r#"{"type":"click","sessionId":"ü-😀-'\"; DROP TABLE events;--","url":"https://x/?q='\"%00",
                   "data":{"label":"naïve 😀 \u0000 text","nested":{"a":[1,2.5,true,null]}}}"#;
    let input = events(body);
    store.insert_batch(&input).unwrap();
    let back = store.session_events(input[0].session().as_str()).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].label.as_deref(), Some("naïve 😀  text"));
    assert_eq!(back[0].url.as_deref(), Some("https://x/?q='\"%00"));
    assert_eq!(store.count_events().unwrap(), 1);
}

fn recent_and_since_queries_order_correctly(store: &Store) {
    let batch: Vec<String> = (0..30)
        .map(|i| {
            format!(
                r#"{{"type":"visit","sessionId":"r{}","timestamp":"2026-11-30T09:{:02}:00Z"}}"#,
                i % 3,
                59 - i
            )
        })
        .collect();
    store
        .insert_batch(&events(&format!("{{\"batch\":[{}]}}", batch.join(","))))
        .unwrap();
    let recent = store.recent_events(25).unwrap();
    assert_eq!(recent.len(), 25);
    assert!(recent
        .windows(2)
        .all(|w| w[0].occurred_at_us >= w[1].occurred_at_us));
    assert_eq!(
        recent[0].occurred_at(),
        Utc.with_ymd_and_hms(2026, 11, 30, 9, 59, 0).unwrap()
    );
    let since = store
        .live_events_since(received() - Duration::minutes(11), 1000)
        .unwrap();
    assert_eq!(since.len(), 10, "09:50..=09:59");
    assert!(since
        .windows(2)
        .all(|w| w[0].event.occurred_at_us <= w[1].event.occurred_at_us));
    let recent_live = store.recent_live_events(25).unwrap();
    assert_eq!(
        recent_live.into_iter().map(|r| r.event).collect::<Vec<_>>(),
        recent
    );
}

fn live_reads_carry_the_sessions_profile_and_leave_bots_out(store: &Store) {
    let with = |profile: VisitorProfile| {
        let profile = Arc::new(profile);
        move |e: NewEvent| e.with_profile(Arc::clone(&profile))
    };
    let person = VisitorProfile {
        visitor_id: Some(-42),
        country: Some("FR".into()),
        device: Some("mobile".into()),
        ..VisitorProfile::default()
    };
    let bot = VisitorProfile {
        device: Some("other".into()),
        bot: true,
        ..VisitorProfile::default()
    };
    let visit = |session: &str, minute: u32| {
        format!(
            r#"{{"type":"visit","sessionId":"{session}","timestamp":"2026-11-30T09:{minute:02}:00Z"}}"#
        )
    };
    let batch = |session: &str, minute: u32| events(&visit(session, minute));
    let mut all: Vec<NewEvent> = batch("person", 55).into_iter().map(with(person)).collect();
    all.extend(batch("crawler", 56).into_iter().map(with(bot)));
    all.extend(batch("old", 57)); // stored without a profile
    store.insert_batch(&all).unwrap();

    let since = store
        .live_events_since(received() - Duration::minutes(11), 1000)
        .unwrap();
    let seen: Vec<_> = since
        .iter()
        .map(|r| {
            (
                r.event.session_token.as_str(),
                r.visitor_id,
                r.country.as_deref(),
                r.device.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("person", Some(-42), Some("FR"), Some("mobile")),
            ("old", None, None, None),
        ]
    );
    let recent = store.recent_live_events(25).unwrap();
    let tokens: Vec<&str> = recent
        .iter()
        .map(|r| r.event.session_token.as_str())
        .collect();
    assert_eq!(tokens, ["old", "person"], "newest first, no bot");
    assert_eq!(
        store.recent_events(25).unwrap().len(),
        3,
        "the bot is stored"
    );
}

fn migrations_are_idempotent(store: &Store) {
    assert!(
        store.run_migrations().unwrap().is_empty(),
        "nothing left to apply"
    );
    store.ping().unwrap();
}

fn a_sessions_profile_is_set_by_its_first_event_and_never_changed(store: &Store) {
    let first = VisitorProfile {
        visitor_id: Some(-7_000_000_000_000_000_001),
        browser: Some("Chrome".into()),
        browser_version: Some("131".into()),
        os: Some("Mac OS X".into()),
        os_version: Some("10".into()),
        device: Some("desktop".into()),
        country: Some("DE".into()),
        region: Some("Berlin".into()),
        city: Some("Berlin".into()),
        bot: true,
    };
    let with = |profile: &VisitorProfile| {
        let profile = Arc::new(profile.clone());
        move |e: NewEvent| e.with_profile(Arc::clone(&profile))
    };
    let batch: Vec<NewEvent> = events(PIXEL).into_iter().map(with(&first)).collect();
    store.insert_batch(&batch).unwrap();
    let other = VisitorProfile {
        visitor_id: Some(-1),
        browser: Some("Firefox".into()),
        country: Some("FR".into()),
        ..VisitorProfile::default()
    };
    let later: Vec<NewEvent> = events(
        r#"{"type":"visit","sessionId":"1764496800000-k3j9x2","id":"later-1","url":"https://portfolio.example/x"}"#,
    )
    .into_iter()
    .map(with(&other))
    .collect();
    store.insert_batch(&later).unwrap();
    let session = store.session("1764496800000-k3j9x2").unwrap().unwrap();
    let stored = VisitorProfile {
        visitor_id: session.visitor_id,
        browser: session.browser.clone(),
        browser_version: session.browser_version.clone(),
        os: session.os.clone(),
        os_version: session.os_version.clone(),
        device: session.device.clone(),
        country: session.country.clone(),
        region: session.region.clone(),
        city: session.city.clone(),
        bot: session.bot,
    };
    assert_eq!(stored, first, "the profile of the session's first batch");
}

fn every_instance_gets_the_salt_the_first_one_stored(store: &Store) {
    let day = 20_429;
    let first = store.visitor_salt(day, [1; 32]).unwrap();
    assert_eq!(first, [1; 32]);
    assert_eq!(
        store.visitor_salt(day, [2; 32]).unwrap(),
        [1; 32],
        "a later offer loses"
    );
    assert_eq!(
        store.visitor_salt(day + 1, [3; 32]).unwrap(),
        [3; 32],
        "days are apart"
    );
    assert_eq!(store.delete_salts_before(day + 1).unwrap(), 1);
    assert_eq!(
        store.visitor_salt(day, [4; 32]).unwrap(),
        [4; 32],
        "a deleted day starts over"
    );
}

fn the_country_migration_agrees_with_the_enricher(store: &Store) {
    let (script, non_ascii) = match store.backend() {
        beacon_store::Backend::Postgres => (
            include_str!("../../../migrations/postgres/2026-12-07-000003_country_codes/up.sql"),
            include_str!(
                "../../../migrations/postgres/2026-12-09-000002_country_codes_non_ascii/up.sql"
            ),
        ),
        beacon_store::Backend::Sqlite => (
            include_str!("../../../migrations/sqlite/2026-12-07-000003_country_codes/up.sql"),
            include_str!(
                "../../../migrations/sqlite/2026-12-09-000002_country_codes_non_ascii/up.sql"
            ),
        ),
    };
    // Every name the enricher maps, the migration maps the same way.
    for (name, code) in beacon_enrich::country_names() {
        let row = format!(
            "('{}', '{}')",
            name.to_lowercase().replace('\'', "''"),
            code.as_str()
        );
        assert!(
            script.contains(&row),
            "{name} -> {} missing: {row}",
            code.as_str()
        );
        // A lower() that folds ASCII only (SQLite; PostgreSQL under the C
        // locale) leaves a non-ASCII letter as stored: the second script
        // holds each name with it in upper case, which covers every casing
        // of a name with one such letter.
        let foreign: Vec<char> = name.chars().filter(|c| !c.is_ascii()).collect();
        if foreign.is_empty() {
            continue;
        }
        assert_eq!(foreign.len(), 1, "{name}: one non-ASCII letter at most");
        let upper: String = name
            .chars()
            .flat_map(|c| {
                if c.is_ascii() {
                    vec![c.to_ascii_lowercase()]
                } else {
                    c.to_uppercase().collect()
                }
            })
            .collect();
        let row = format!(
            "WHEN '{}' THEN '{}'",
            upper.replace('\'', "''"),
            code.as_str()
        );
        assert!(non_ascii.contains(&row), "{name}: missing {row}");
    }
    // Names as the seed pixel stored them, a code in lower case, and what
    // does not map.
    let stored = [
        ("s-germany", "Germany", "DE"),
        ("s-us", "United States", "US"),
        ("s-lower", "fr", "FR"),
        ("s-unknown", "Unknown", "Unknown"),
        ("s-narnia", "Narnia", "Narnia"),
        ("s-aland", "Åland Islands", "AX"),
        ("s-curacao", "CURAÇAO", "CW"),
        ("s-turkiye", "Türkiye", "TR"),
    ];
    let mut insert = String::new();
    for (token, country, _) in stored {
        insert.push_str(&format!(
            "INSERT INTO sessions (token, country, first_seen, last_seen) VALUES ('{token}', '{country}', 0, 0);"
        ));
    }
    store.execute_script(&insert).unwrap();
    store.execute_script(script).unwrap();
    store.execute_script(non_ascii).unwrap();
    for (token, before, after) in stored {
        let session = store.session(token).unwrap().unwrap();
        assert_eq!(session.country.as_deref(), Some(after), "{before}");
    }
}
