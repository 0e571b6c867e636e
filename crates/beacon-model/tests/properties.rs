//! `parse_track_body` on arbitrary input: it never panics, and whatever it
//! accepts respects every limit of [`Limits`]. (The fuzz target in `fuzz/`
//! checks the same property for hours; this runs in CI.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use beacon_model::{parse_track_body, Limits, ModelError, NewEvent, RequestContext};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::Value;

const FIXTURES: &[&str] = &[
    include_str!("../../../tests/fixtures/batch-pixel.json"),
    include_str!("../../../tests/fixtures/batch-heartbeat.json"),
    include_str!("../../../tests/fixtures/beacon-session-end.txt"),
    include_str!("../../../tests/fixtures/single-event.json"),
    include_str!("../../../tests/fixtures/snake-case.json"),
];

const BODY_CODES: &[&str] = &[
    "invalid_json",
    "not_an_object",
    "invalid_batch",
    "empty_batch",
    "too_many_events",
    "no_valid_events",
];

const EVENT_CODES: &[&str] = &[
    "invalid_event",
    "missing_type",
    "invalid_type",
    "missing_session_id",
    "invalid_session_id",
    "url_too_long",
    "invalid_data",
    "data_too_large",
    "data_too_deep",
    "invalid_id",
];

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 10).unwrap()
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Every promise an accepted event makes (see `Limits` and `docs/api.md`).
fn check_event(e: &NewEvent, limits: &Limits) -> Result<(), String> {
    let controls = |s: &str| s.chars().any(char::is_control);
    let kind = e.kind().as_str();
    if kind.is_empty() || kind.chars().count() > limits.max_type_chars || controls(kind) {
        return Err(format!("type {kind:?}"));
    }
    let session = e.session().as_str();
    if session.is_empty() || session.chars().count() > limits.max_session_chars || controls(session)
    {
        return Err(format!("session {session:?}"));
    }
    let id = e.id().as_str();
    if id.is_empty() || id.chars().count() > limits.max_id_chars.max(36) || controls(id) {
        return Err(format!("id {id:?}"));
    }
    for (name, value, max) in [
        ("url", e.url(), limits.max_url_bytes),
        ("referrer", e.referrer(), limits.max_referrer_bytes),
        ("user agent", e.user_agent(), limits.max_user_agent_bytes),
        ("label", e.label(), 256),
    ] {
        if let Some(v) = value {
            if v.len() > max || controls(v) && name != "label" || v.contains('\0') {
                return Err(format!("{name} of {} bytes: {v:?}", v.len()));
            }
        }
    }
    if e.data_json().len() > limits.max_data_bytes {
        return Err(format!("data of {} bytes", e.data_json().len()));
    }
    let data = Value::Object(e.data().clone());
    if depth(&data) > limits.max_data_depth {
        return Err(format!("data {} deep", depth(&data)));
    }
    // `data_json` is `data` (checked next), so no NUL there either.
    if has_nul(&data) {
        return Err("NUL in data".into());
    }
    if serde_json::from_str::<Value>(e.data_json()).ok() != Some(data) {
        return Err("data_json is not data".into());
    }
    let r = e.received_at();
    if e.occurred_at() != r
        && (e.occurred_at() < r - limits.max_past || e.occurred_at() > r + limits.max_future)
    {
        return Err(format!(
            "event time {} for receive time {r}",
            e.occurred_at()
        ));
    }
    Ok(())
}

/// Parses `body`: panics (the property's failure) if the parser does, and
/// checks what it answers.
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let ctx = RequestContext {
        received_at: received(),
        user_agent: Some("proptest/1 \u{0}\r\n"),
    };
    match parse_track_body(body, &ctx, &limits) {
        Ok(parsed) => {
            prop_assert!(!parsed.events.is_empty(), "accepted without an event");
            prop_assert!(parsed.events.len() + parsed.rejected.len() <= limits.max_batch_events);
            for e in &parsed.events {
                if let Err(why) = check_event(e, &limits) {
                    return Err(TestCaseError::fail(format!(
                        "accepted event breaks a limit: {why}"
                    )));
                }
            }
            for r in &parsed.rejected {
                prop_assert!(EVENT_CODES.contains(&r.error), "unknown code {}", r.error);
            }
        }
        Err(e) => {
            prop_assert!(BODY_CODES.contains(&e.code()), "unknown code {}", e.code());
            if let ModelError::NoValidEvents { rejected } = &e {
                prop_assert!(!rejected.is_empty());
                for r in rejected {
                    prop_assert!(EVENT_CODES.contains(&r.error), "unknown code {}", r.error);
                }
            }
        }
    }
    Ok(())
}

/// One change to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippets: Vec<Vec<u8>> = [
        &b"\\u0000"[..],
        b"\\ud800",
        b"\\udc00x",
        b"\\ud83d\\ude00",
        b"\xff",
        b"\xed\xa0\x80",
        b"\0",
        b"\r\n",
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b",",
        b":",
        b"{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}}",
        b"\"type\":\"click\",",
        b"\"url\":",
        b"\"data\":",
        b"\"id\":",
        b"\"timestamp\":",
        b"1e999",
        b"-0",
        b"9223372036854775808",
        b"null",
    ]
    .into_iter()
    .map(<[u8]>::to_vec)
    .collect();
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), prop::sample::select(snippets)).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(mut body: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = body.len();
        match m {
            Mutation::Flip(i, b) if len > 0 => body[i % len] = *b,
            Mutation::Insert(i, s) => {
                let at = i % (len + 1);
                body.splice(at..at, s.iter().copied());
            }
            Mutation::Remove(i, n) if len > 0 => {
                let at = i % len;
                body.drain(at..(at + n).min(len));
            }
            _ => {}
        }
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_body(&body)?;
    }

    #[test]
    fn parse_never_panics_on_mutated_fixtures(
        fixture in prop::sample::select(FIXTURES),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        check_body(&apply(fixture.as_bytes().to_vec(), &mutations))?;
    }
}
