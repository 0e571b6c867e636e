//! Any JSON value either parses into events that the store accepts, on
//! SQLite and on PostgreSQL, and reads back as accepted, or is rejected with
//! an error code; never a panic, never a database error.
//!
//! One database per backend for each property (not one per case), so the
//! cases also meet each other's sessions and ids, as real traffic does.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use beacon_model::{check, parse_track_body, Limits, RequestContext};
use beacon_store::testing::TestDatabase;
use beacon_store::Store;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 10).unwrap()
}

// ---- strategies ----

/// Text as hostile as JSON allows: control characters, NUL, non-characters,
/// astral and combining characters, quotes and backslashes.
fn text() -> impl Strategy<Value = String> {
    let odd = prop_oneof![
        Just('\0'),
        Just('\u{1}'),
        Just('\t'),
        Just('\n'),
        Just('\r'),
        Just('\u{1b}'),
        Just('\u{7f}'),
        Just('\u{85}'),
        Just('\u{a0}'),
        Just('\u{2028}'),
        Just('\u{feff}'),
        Just('\u{fffd}'),
        Just('\u{ffff}'),
        Just('\u{10ffff}'),
        Just('\u{301}'),
        Just('é'),
        Just('😀'),
        Just('"'),
        Just('\\'),
        Just('\''),
        Just('%'),
        Just('?'),
        any::<char>(),
    ];
    prop_oneof![
        3 => "[a-z0-9 /:.-]{0,12}",
        3 => prop::collection::vec(odd, 0..24).prop_map(|c| c.into_iter().collect()),
        1 => any::<String>(),
        // Long, incompressible text: past the sizes where a database stores
        // or indexes text differently.
        1 => (1usize..6000, any::<u64>()).prop_map(|(len, seed)| noise(len, seed)),
    ]
}

/// `len` pseudo-random letters and digits.
fn noise(len: usize, mut state: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    state |= 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        Just(Value::from(0)),
        Just(Value::from(-0.0)),
        Just(Value::from(1e308)),
        Just(Value::from(5e-324)),
    ]
}

/// Keys: the event's own fields and their aliases (so arbitrary objects
/// look like events now and then), `label` and `country` of `data`, or any
/// text.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "type", "event_type", "sessionId", "session_token", "session_id", "url",
            "referrer", "timestamp", "userAgent", "user_agent", "data", "id", "batch",
            "label", "country", "city",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ]
}

/// Any JSON value, nested up to 12 levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(12, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A field's value: mostly what the pixel sends, sometimes anything.
fn field(usual: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Option<Value>> {
    prop::option::weighted(0.85, prop_oneof![4 => usual, 1 => json()])
}

fn event_time() -> impl Strategy<Value = Value> {
    prop_oneof![
        // Around the receive time, in and out of the believed window.
        (-20_000_000_000i64..2_000_000_000).prop_map(|ms| {
            let t = received() + Duration::milliseconds(ms);
            Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        }),
        (-20_000_000_000i64..2_000_000_000).prop_map(|ms| Value::from(
            (received() + Duration::milliseconds(ms)).timestamp_millis()
        )),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ]
}

/// An object shaped like an event, every field optional, any alias.
fn event() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        // Clicks twice: their label is stored and indexed apart from data.
        4 => prop::sample::select(vec!["visit", "click", "click", "scroll", "heartbeat", "session_end"])
            .prop_map(|k| Value::String(k.into())),
        1 => text().prop_map(Value::String),
    ];
    let session = prop_oneof![
        // A few shared sessions, so that cases upsert each other's.
        prop::sample::select(vec!["s-1", "s-2", "1764496800000-k3j9x2"])
            .prop_map(|s| Value::String(s.into())),
        text().prop_map(Value::String),
    ];
    let url = prop_oneof![
        text().prop_map(|t| Value::String(format!("https://site.example/{t}"))),
        (2000usize..2100, any::<u64>()).prop_map(|(n, s)| Value::String(noise(n, s))),
    ];
    // Labels and countries are stored apart from data (and indexed): long
    // ones are frequent here.
    let long = || (2000usize..8000, any::<u64>()).prop_map(|(n, s)| noise(n, s));
    let data = prop_oneof![
        1 => prop::collection::vec((key(), json()), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        2 => (prop_oneof![text(), long()], prop_oneof![text(), long()])
            .prop_map(|(label, country)| serde_json::json!({"label": label, "country": country})),
        1 => json(),
    ];
    let id = prop_oneof![
        // A few shared ids: retries and duplicates within a batch.
        prop::sample::select(vec!["e-1", "e-2", "0192F3B4-5C6D-7E8F-9A0B-1C2D3E4F5A6B"])
            .prop_map(|s| Value::String(s.into())),
        text().prop_map(Value::String),
    ];
    (
        (field(kind), any::<bool>()),
        (field(session), 0usize..3),
        field(url),
        field(text().prop_map(Value::String)),
        (field(text().prop_map(Value::String)), any::<bool>()),
        field(data),
        field(event_time()),
        field(id),
    )
        .prop_map(
            |(
                (kind, kind_alias),
                (session, session_alias),
                url,
                referrer,
                (ua, ua_alias),
                data,
                timestamp,
                id,
            )| {
                let mut event = Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        event.insert(k.to_owned(), v);
                    }
                };
                put(if kind_alias { "event_type" } else { "type" }, kind);
                put(
                    ["sessionId", "session_token", "session_id"][session_alias],
                    session,
                );
                put("url", url);
                put("referrer", referrer);
                put(if ua_alias { "user_agent" } else { "userAgent" }, ua);
                put("data", data);
                put("timestamp", timestamp);
                put("id", id);
                Value::Object(event)
            },
        )
}

/// A `/track` body: an event, a batch (of events, mostly), or anything.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        2 => event(),
        3 => prop::collection::vec(prop_oneof![6 => event(), 1 => json()], 0..8)
            .prop_map(|events| serde_json::json!({ "batch": events })),
        1 => json(),
    ];
    (
        value,
        prop::option::weighted(0.2, (any::<usize>(), raw_snippet())),
    )
        .prop_map(|(value, splice)| {
            let mut bytes = serde_json::to_vec(&value).unwrap();
            // Now and then, what serde_json never writes: lone surrogates,
            // invalid UTF-8, duplicate keys.
            if let Some((at, snippet)) = splice {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, snippet);
            }
            bytes
        })
}

fn raw_snippet() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        &b"\\ud800"[..],
        b"\\udfff",
        b"\\u0000",
        b"\xff\xfe",
        b"\xed\xa0\x80",
        b"\"url\":\"x\",",
        b"\"type\":\"click\",",
        b"\"data\":{\"k\":1,\"k\":2},",
    ])
    .prop_map(<[u8]>::to_vec)
}

/// A JSON text a pixel could never send: as well as `json()`, with raw
/// escapes of every kind in its strings.
fn json_text() -> impl Strategy<Value = Vec<u8>> {
    (
        json(),
        prop::collection::vec((any::<usize>(), raw_snippet()), 0..3),
    )
        .prop_map(|(value, splices)| {
            let mut bytes = serde_json::to_vec(&value).unwrap();
            for (at, snippet) in splices {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, snippet);
            }
            bytes
        })
}

// ---- the property ----

struct Backends {
    stores: Vec<(&'static str, Store)>,
    _dbs: Vec<TestDatabase>,
}

fn backends() -> Backends {
    let mut dbs = vec![TestDatabase::sqlite()];
    dbs.extend(TestDatabase::postgres());
    let names = ["sqlite", "postgres"];
    let stores = dbs
        .iter()
        .zip(names)
        .map(|(db, name)| (name, db.store()))
        .collect();
    Backends { stores, _dbs: dbs }
}

fn check(backends: &Backends, body: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let ctx = RequestContext {
        received_at: received(),
        user_agent: Some("proptest/1"),
    };
    let outcome = parse_track_body(body, &ctx, &limits);
    check::parse_outcome(&outcome, &limits, received()).map_err(TestCaseError::fail)?;
    let Ok(parsed) = outcome else {
        return Ok(());
    };
    for (name, store) in &backends.stores {
        let stored = store
            .insert_batch(&parsed.events)
            .map_err(|e| TestCaseError::fail(format!("{name} refused valid events: {e}")))?;
        // What was new reads back exactly as it was accepted.
        for new in &stored {
            let back = store.session_events(&new.session_token).unwrap();
            let row = back.iter().find(|r| r.id == new.id);
            prop_assert_eq!(row, Some(new), "{} reads back what it stored", name);
        }
        // Everything accepted is there, new or a duplicate of an earlier one.
        for e in &parsed.events {
            let back = store.session_events(e.session().as_str()).unwrap();
            prop_assert!(
                back.iter()
                    .filter(|r| r.public_id == e.id().as_str())
                    .count()
                    == 1,
                "{}: event {:?} of session {:?} is stored exactly once",
                name,
                e.id().as_str(),
                e.session().as_str()
            );
        }
    }
    Ok(())
}

fn run(cases: u32, strategy: impl Strategy<Value = Vec<u8>>) {
    let backends = backends();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, |body| check(&backends, &body)) {
        panic!("{e}");
    }
}

#[test]
fn event_shaped_bodies_are_stored_on_both_backends_or_rejected_with_a_code() {
    // Enough cases to find a valid click whose long label PostgreSQL cannot
    // index (5 runs in 6 at 150 cases, before that was fixed).
    run(256, body());
}

#[test]
fn any_json_text_is_stored_on_both_backends_or_rejected_with_a_code() {
    // Arbitrary JSON is rarely a valid event: fewer cases reach the store.
    run(128, json_text());
}
