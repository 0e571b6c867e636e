#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, TimeZone};

use super::*;
use crate::VisitorProfile;

const PIXEL: &str = include_str!("../../../../tests/fixtures/batch-pixel.json");
const HEARTBEAT: &str = include_str!("../../../../tests/fixtures/batch-heartbeat.json");
const SESSION_END: &str = include_str!("../../../../tests/fixtures/beacon-session-end.txt");
const SINGLE: &str = include_str!("../../../../tests/fixtures/single-event.json");
const SNAKE: &str = include_str!("../../../../tests/fixtures/snake-case.json");

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
}

fn ctx() -> RequestContext<'static> {
    RequestContext {
        received_at: received(),
        user_agent: Some("header-agent/1.0"),
    }
}

fn parse(body: &str) -> Result<ParsedBatch, ModelError> {
    parse_track_body(body.as_bytes(), &ctx(), &Limits::default())
}

fn one_rejection(body: &str) -> &'static str {
    // Wrap the event under test with a valid one, so the batch is accepted
    // and the bad event shows up in `rejected`.
    let batch = format!(r#"{{"batch":[{{"type":"visit","sessionId":"ok"}},{body}]}}"#);
    let parsed = parse(&batch).unwrap_or_else(|e| panic!("{body}: whole body refused: {e}"));
    assert_eq!(parsed.events.len(), 1, "{body}: the valid event is kept");
    assert_eq!(parsed.rejected.len(), 1, "{body}: one rejection");
    assert_eq!(
        parsed.rejected[0].index, 1,
        "{body}: index of the bad event"
    );
    parsed.rejected[0].error
}

#[test]
fn pixel_batch_parses_every_field() {
    let parsed = parse(PIXEL).unwrap();
    assert!(parsed.rejected.is_empty());
    assert_eq!(parsed.events.len(), 4);
    let visit = &parsed.events[0];
    assert_eq!(visit.kind(), &EventKind::Visit);
    assert_eq!(visit.session().as_str(), "1764496800000-k3j9x2");
    assert_eq!(visit.url(), Some("https://portfolio.example/"));
    assert_eq!(visit.referrer(), Some("https://www.google.com/"));
    assert!(visit
        .user_agent()
        .unwrap()
        .starts_with("Mozilla/5.0 (Macintosh"));
    assert_eq!(visit.data_str("country"), Some("Germany"));
    assert_eq!(
        visit.occurred_at(),
        Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap()
    );
    assert_eq!(visit.received_at(), received());
    let click = &parsed.events[1];
    assert_eq!(click.label(), Some("Projects"));
    assert_eq!(
        click.occurred_at(),
        Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 2).unwrap() + Duration::milliseconds(120)
    );
    assert_eq!(parsed.events[2].kind(), &EventKind::Scroll);
    assert_eq!(parsed.events[2].data_json(), r#"{"depth":50}"#);
}

#[test]
fn every_contract_fixture_is_accepted_whole() {
    for (name, body, count) in [
        ("batch-pixel", PIXEL, 4),
        ("batch-heartbeat", HEARTBEAT, 1),
        ("beacon-session-end", SESSION_END, 1),
        ("single-event", SINGLE, 1),
        ("snake-case", SNAKE, 1),
    ] {
        let parsed = parse(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.events.len(), count, "{name}");
        assert!(parsed.rejected.is_empty(), "{name}: {:?}", parsed.rejected);
    }
}

#[test]
fn send_beacon_body_takes_the_request_user_agent() {
    let parsed = parse(SESSION_END).unwrap();
    let event = &parsed.events[0];
    assert_eq!(event.kind(), &EventKind::SessionEnd);
    assert_eq!(event.user_agent(), Some("header-agent/1.0"));
    assert_eq!(event.referrer(), None);
}

#[test]
fn snake_case_aliases_are_understood() {
    let event = &parse(SNAKE).unwrap().events[0];
    assert_eq!(event.kind(), &EventKind::Click);
    assert_eq!(event.session().as_str(), "api-client-7");
    assert_eq!(event.user_agent(), Some("curl/8.5.0"));
    assert_eq!(event.label(), Some("Contact"));
}

#[test]
fn whole_body_errors_have_their_codes() {
    let cases: &[(&str, &str)] = &[
        ("", "invalid_json"),
        ("not json", "invalid_json"),
        ("{\"batch\": [", "invalid_json"),
        ("[]", "not_an_object"),
        ("42", "not_an_object"),
        ("\"text\"", "not_an_object"),
        ("{\"batch\": {}}", "invalid_batch"),
        ("{\"batch\": \"x\"}", "invalid_batch"),
        ("{\"batch\": []}", "empty_batch"),
        ("{\"batch\": [1, \"x\", null]}", "no_valid_events"),
        ("{\"batch\": [], \"batch\": []}", "invalid_json"),
    ];
    for (body, code) in cases {
        let err = parse(body).expect_err(body);
        assert_eq!(err.code(), *code, "body {body:?}: {err}");
    }
}

#[test]
fn batch_over_the_limit_is_refused_and_at_the_limit_accepted() {
    let event = r#"{"type":"heartbeat","sessionId":"s"}"#;
    let at = format!("{{\"batch\":[{}]}}", vec![event; 500].join(","));
    assert_eq!(parse(&at).unwrap().events.len(), 500);
    let over = format!("{{\"batch\":[{}]}}", vec![event; 501].join(","));
    let err = parse(&over).unwrap_err();
    assert_eq!(err.code(), "too_many_events");
}

#[test]
fn bad_events_are_rejected_alone_with_their_code() {
    let long_url = format!(
        r#"{{"type":"visit","sessionId":"s","url":"https://x/{}"}}"#,
        "a".repeat(2048)
    );
    let long_type = format!(r#"{{"type":"{}","sessionId":"s"}}"#, "t".repeat(65));
    let long_session = format!(r#"{{"type":"visit","sessionId":"{}"}}"#, "s".repeat(129));
    let long_id = format!(
        r#"{{"type":"visit","sessionId":"s","id":"{}"}}"#,
        "i".repeat(101)
    );
    let big_data = format!(
        r#"{{"type":"visit","sessionId":"s","data":{{"k":"{}"}}}}"#,
        "d".repeat(16 * 1024)
    );
    let deep = |n: usize| {
        format!(
            r#"{{"type":"visit","sessionId":"s","data":{}1{}}}"#,
            "{\"a\":".repeat(n),
            "}".repeat(n)
        )
    };
    let cases: Vec<(String, &str)> = vec![
        ("1".into(), "invalid_event"),
        ("[]".into(), "invalid_event"),
        (r#"{"sessionId":"s"}"#.into(), "missing_type"),
        (r#"{"type":"","sessionId":"s"}"#.into(), "invalid_type"),
        (long_type, "invalid_type"),
        (r#"{"type":"visit"}"#.into(), "missing_session_id"),
        (
            r#"{"type":"visit","sessionId":""}"#.into(),
            "invalid_session_id",
        ),
        (
            r#"{"type":"visit","sessionId":"a\nb"}"#.into(),
            "invalid_session_id",
        ),
        (long_session, "invalid_session_id"),
        (r#"{"type":"visit","sessionId":5}"#.into(), "invalid_event"),
        (
            r#"{"type":"visit","sessionId":"s","url":{}}"#.into(),
            "invalid_event",
        ),
        (long_url, "url_too_long"),
        (
            r#"{"type":"visit","sessionId":"s","data":"x"}"#.into(),
            "invalid_data",
        ),
        (
            r#"{"type":"visit","sessionId":"s","data":[1]}"#.into(),
            "invalid_data",
        ),
        (big_data, "data_too_large"),
        (deep(9), "data_too_deep"),
        (
            r#"{"type":"visit","sessionId":"s","id":7}"#.into(),
            "invalid_id",
        ),
        (
            r#"{"type":"visit","sessionId":"s","id":""}"#.into(),
            "invalid_id",
        ),
        (long_id, "invalid_id"),
        (
            r#"{"type":"visit","sessionId":"\ud800"}"#.into(),
            "invalid_event",
        ),
        (
            r#"{"type":"visit","type":"click","sessionId":"s"}"#.into(),
            "invalid_event",
        ),
    ];
    for (body, code) in &cases {
        assert_eq!(one_rejection(body), *code, "event {body:.80}");
    }
    // Eight levels, `data` itself included, is the limit and still fine.
    assert_eq!(parse(&deep(8)).unwrap().events.len(), 1);
}

#[test]
fn control_characters_are_cleaned_never_stored() {
    let body = r#"{"type":"cl\u0000ick","sessionId":"s","url":"https://x/\u0000a\r\nb",
        "referrer":"r\u0007","userAgent":"ua\u0000","data":{"label":"La\u0000bel","text":"two\nlines",
        "k\u0000ey":["\u0001x"]}}"#;
    let event = &parse(body).unwrap().events[0];
    assert_eq!(event.kind(), &EventKind::Click);
    assert_eq!(event.url(), Some("https://x/ab"));
    assert_eq!(event.referrer(), Some("r"));
    assert_eq!(event.user_agent(), Some("ua"));
    assert_eq!(event.label(), Some("Label"));
    assert_eq!(event.data_str("text"), Some("two\nlines"));
    assert!(!event.data_json().contains("\\u0000"));
    assert!(event.data().contains_key("key"));
}

#[test]
fn long_user_agent_and_referrer_are_truncated_not_rejected() {
    let body = format!(
        r#"{{"type":"visit","sessionId":"s","userAgent":"{}","referrer":"{}"}}"#,
        "u".repeat(600),
        "r".repeat(3000)
    );
    let event = &parse(&body).unwrap().events[0];
    assert_eq!(event.user_agent().unwrap().len(), 512);
    assert_eq!(event.referrer().unwrap().len(), 2048);
}

#[test]
fn client_timestamps_are_kept_only_when_plausible() {
    let at = |ts: &str| {
        let body = format!(r#"{{"type":"visit","sessionId":"s","timestamp":{ts}}}"#);
        parse(&body).unwrap().events[0].occurred_at()
    };
    let r = received();
    assert_eq!(at("\"2026-11-30T11:59:00Z\""), r - Duration::minutes(1));
    assert_eq!(
        at("\"2026-11-23T12:00:00Z\""),
        r - Duration::days(7),
        "edge: 7 days"
    );
    assert_eq!(at("\"2026-11-23T11:59:59Z\""), r, "just past 7 days");
    assert_eq!(
        at("\"2026-11-30T12:10:00Z\""),
        r + Duration::minutes(10),
        "edge: +10 min"
    );
    assert_eq!(at("\"2026-11-30T12:10:01Z\""), r, "just past +10 min");
    assert_eq!(at("\"3026-01-01T00:00:00Z\""), r, "far future");
    assert_eq!(at("\"1970-01-01T00:00:00Z\""), r, "far past");
    assert_eq!(at("\"yesterday\""), r, "unparseable");
    assert_eq!(at("null"), r);
    let millis = (r - Duration::minutes(1)).timestamp_millis().to_string();
    assert_eq!(at(&millis), r - Duration::minutes(1), "epoch millis");
    assert_eq!(
        at("\"2026-11-30T13:30:00+01:30\""),
        r,
        "offsets are honoured"
    );
}

#[test]
fn client_ids_are_kept_and_uuids_canonicalised() {
    let id = |raw: &str| {
        let body = format!(r#"{{"type":"visit","sessionId":"s","id":{raw}}}"#);
        parse(&body).unwrap().events[0].id().as_str().to_owned()
    };
    assert_eq!(
        id("\"0192F3B4-5C6D-7E8F-9A0B-1C2D3E4F5A6B\""),
        "0192f3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"
    );
    assert_eq!(id("\"evt-42\""), "evt-42");
    let generated = id("null");
    assert_eq!(
        uuid::Uuid::parse_str(&generated).unwrap().get_version_num(),
        7
    );
    assert_ne!(generated, id("null"), "each generated id is new");
}

#[test]
fn generated_ids_are_marked_so_the_store_can_skip_the_duplicate_check() {
    let generated = |event: &str| parse(event).unwrap().events[0].id_is_generated();
    for (event, expected) in [
        (r#"{"type":"visit","sessionId":"s"}"#, true),
        (r#"{"type":"visit","sessionId":"s","id":null}"#, true),
        (r#"{"type":"visit","sessionId":"s","id":"evt-42"}"#, false),
        (
            r#"{"type":"visit","sessionId":"s","id":"0192f3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"}"#,
            false,
        ),
    ] {
        assert_eq!(generated(event), expected, "{event}");
    }
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    let mut body = br#"{"type":"visit","sessionId":"s","url":"https://x/"#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}"#);
    let parsed = parse_track_body(&body, &ctx(), &Limits::default()).unwrap();
    assert_eq!(parsed.events[0].url(), Some("https://x/\u{fffd}\u{fffd}"));
}

#[test]
fn very_deep_bodies_are_refused_without_overflowing_the_stack() {
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(parse(&body).unwrap_err().code(), "not_an_object");
    let body = format!(
        "{{\"batch\":[{}{}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(parse(&body).unwrap_err().code(), "no_valid_events");
    let body = format!(
        r#"{{"type":"visit","sessionId":"s","data":{}1{}}}"#,
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    match parse(&body).unwrap_err() {
        ModelError::NoValidEvents { rejected } => assert_eq!(rejected[0].error, "invalid_event"),
        other => panic!("expected no_valid_events, got {other}"),
    }
}

#[test]
fn long_click_labels_are_cut_for_the_label_column_but_kept_in_data() {
    // 'é' is two bytes; after one ASCII byte, byte 256 falls inside one.
    let label = format!("x{}", "é".repeat(300));
    let body = format!(r#"{{"type":"click","sessionId":"s","data":{{"label":"{label}"}}}}"#);
    let event = &parse(&body).unwrap().events[0];
    let cut = event.label().unwrap();
    assert_eq!(
        cut.len(),
        255,
        "cut on the character boundary below 256 bytes"
    );
    assert!(label.starts_with(cut));
    assert_eq!(
        event.data_str("label"),
        Some(label.as_str()),
        "data keeps it whole"
    );
    let short = r#"{"type":"click","sessionId":"s","data":{"label":"Projects"}}"#;
    assert_eq!(parse(short).unwrap().events[0].label(), Some("Projects"));
}

#[test]
fn numbers_in_data_are_kept_exactly_as_sent() {
    // Shortest forms as JSON.stringify writes them; serde_json's default
    // parser read each of these one unit in the last place off (found by the
    // fuzz target in fuzz/).
    for number in [
        "0.9856906946328695",
        "1027267.8324723083",
        "4.9136036776664564",
        "245725584.18916282",
        "2.0000004e65",
        "1.0715660391465826e-75",
    ] {
        let body = format!(r#"{{"type":"scroll","sessionId":"s","data":{{"n":{number}}}}}"#);
        let event = &parse(&body).unwrap().events[0];
        let sent: f64 = number.parse().unwrap();
        let parsed = event.data()["n"].as_f64().unwrap();
        assert_eq!(
            parsed.to_bits(),
            sent.to_bits(),
            "{number} parsed as {parsed:e}"
        );
        let stored: Value = serde_json::from_str(event.data_json()).unwrap();
        assert_eq!(
            stored["n"].as_f64().unwrap().to_bits(),
            sent.to_bits(),
            "{number} stored as {}",
            event.data_json()
        );
    }
}

#[test]
fn the_pixels_address_fields_never_reach_the_event() {
    let parsed = parse(PIXEL).unwrap();
    let first = &parsed.events[0];
    assert!(first.data().get("ip").is_none(), "{:?}", first.data());
    assert!(
        !first.data_json().contains("203.0.11"),
        "{}",
        first.data_json()
    );
    assert_eq!(
        first.data_str("country"),
        Some("Germany"),
        "other fields stay"
    );

    let every_key = r#"{"type":"visit","sessionId":"s","data":{"ip":"192.0.2.1",
        "ip_address":"192.0.2.2","ipAddress":"192.0.2.3","client_ip":"192.0.2.4",
        "clientIp":"192.0.2.5","kept":1}}"#;
    let parsed = parse(every_key).unwrap();
    assert_eq!(parsed.events[0].data_json(), r#"{"kept":1}"#);
}

#[test]
fn a_parsed_event_has_no_profile_until_the_server_gives_it_one() {
    let parsed = parse(SINGLE).unwrap();
    let event = parsed.events[0].clone();
    assert_eq!(event.profile(), None);
    let profile = VisitorProfile {
        visitor_id: Some(-42),
        country: Some("DE".into()),
        ..VisitorProfile::default()
    };
    let event = event.with_profile(std::sync::Arc::new(profile.clone()));
    assert_eq!(event.profile(), Some(&profile));
}
