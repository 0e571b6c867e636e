//! `parse_track_body` on arbitrary bytes: it must never panic, and every
//! event it accepts must respect every limit it promises (`Limits`,
//! `docs/api.md`). A violated limit is turned into a panic, so libFuzzer
//! reports it like a crash.

#![no_main]

use beacon_model::{parse_track_body, Limits, ModelError, NewEvent, RequestContext};
use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

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

/// The longest click label kept apart from `data` (`NewEvent::label`).
const MAX_LABEL_BYTES: usize = 256;

fn depth(value: &Value) -> usize {
    // Accepted data is at most 8 deep, so recursion is bounded here.
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

fn check(e: &NewEvent, limits: &Limits, received: DateTime<Utc>) {
    let controls = |s: &str| s.chars().any(char::is_control);
    let kind = e.kind().as_str();
    assert!(
        !kind.is_empty() && kind.chars().count() <= limits.max_type_chars && !controls(kind),
        "type {kind:?}"
    );
    let session = e.session().as_str();
    assert!(
        !session.is_empty()
            && session.chars().count() <= limits.max_session_chars
            && !controls(session),
        "session {session:?}"
    );
    let id = e.id().as_str();
    assert!(
        !id.is_empty() && id.chars().count() <= limits.max_id_chars.max(36) && !controls(id),
        "id {id:?}"
    );
    // Single-line fields: bounded, no control character at all.
    for (name, value, max) in [
        ("url", e.url(), limits.max_url_bytes),
        ("referrer", e.referrer(), limits.max_referrer_bytes),
        ("user agent", e.user_agent(), limits.max_user_agent_bytes),
    ] {
        if let Some(v) = value {
            assert!(v.len() <= max, "{name} of {} bytes", v.len());
            assert!(!controls(v), "{name} {v:?} holds a control character");
        }
    }
    if let Some(label) = e.label() {
        assert!(
            label.len() <= MAX_LABEL_BYTES,
            "label of {} bytes",
            label.len()
        );
        assert!(!label.contains('\0'), "NUL in the label");
    }
    let json = e.data_json();
    assert!(
        json.len() <= limits.max_data_bytes,
        "data of {} bytes",
        json.len()
    );
    let data = Value::Object(e.data().clone());
    assert!(
        depth(&data) <= limits.max_data_depth,
        "data {} deep",
        depth(&data)
    );
    // No NUL in `data`; `data_json` is `data` (checked next), so none there
    // either. (A substring test on the JSON text would be wrong: the JSON
    // string `"\\u0000"` is six harmless characters, not a NUL.)
    assert!(!has_nul(&data), "NUL in data");
    assert_eq!(
        serde_json::from_str::<Value>(json).ok().as_ref(),
        Some(&data),
        "data_json is data"
    );
    let t = e.occurred_at();
    assert!(
        t == received || (t >= received - limits.max_past && t <= received + limits.max_future),
        "event time {t} for receive time {received}"
    );
    assert_eq!(e.received_at(), received);
}

fuzz_target!(|body: &[u8]| {
    let limits = Limits::default();
    let received = Utc
        .with_ymd_and_hms(2026, 11, 30, 10, 0, 10)
        .single()
        .unwrap_or_default();
    let ctx = RequestContext {
        received_at: received,
        // Control characters in the header too: they must not reach an event.
        user_agent: Some("fuzz/1 \u{0}\r\nX: y"),
    };
    match parse_track_body(body, &ctx, &limits) {
        Ok(parsed) => {
            assert!(!parsed.events.is_empty(), "accepted without an event");
            assert!(parsed.events.len() + parsed.rejected.len() <= limits.max_batch_events);
            for e in &parsed.events {
                check(e, &limits, received);
            }
            for r in &parsed.rejected {
                assert!(EVENT_CODES.contains(&r.error), "unknown code {}", r.error);
            }
        }
        Err(e) => {
            assert!(BODY_CODES.contains(&e.code()), "unknown code {}", e.code());
            if let ModelError::NoValidEvents { rejected } = &e {
                assert!(!rejected.is_empty());
                for r in rejected {
                    assert!(EVENT_CODES.contains(&r.error), "unknown code {}", r.error);
                }
            }
        }
    }
});
