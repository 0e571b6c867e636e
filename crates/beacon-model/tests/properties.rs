//! `parse_track_body` on arbitrary input: it never panics, and whatever it
//! accepts respects every limit of [`Limits`]. (The fuzz target in `fuzz/`
//! checks the same property for hours; this runs in CI.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use beacon_model::{check, parse_track_body, Limits, RequestContext};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

const FIXTURES: &[&str] = &[
    include_str!("../../../tests/fixtures/batch-pixel.json"),
    include_str!("../../../tests/fixtures/batch-heartbeat.json"),
    include_str!("../../../tests/fixtures/beacon-session-end.txt"),
    include_str!("../../../tests/fixtures/single-event.json"),
    include_str!("../../../tests/fixtures/snake-case.json"),
];

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 10).unwrap()
}

/// Parses `body`: panics (the property's failure) if the parser does, and
/// checks what it answers.
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let ctx = RequestContext {
        received_at: received(),
        user_agent: Some("proptest/1 \u{0}\r\n"),
    };
    let outcome = parse_track_body(body, &ctx, &limits);
    check::parse_outcome(&outcome, &limits, received()).map_err(TestCaseError::fail)
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
