//! Every promise [`parse_track_body`](crate::parse_track_body) makes about
//! its answer, as one checker for the property tests (here and in
//! `beacon-store`) and the fuzz target in `fuzz/`. Not part of the API:
//! hidden from the docs, and free to change with the tests.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::event::MAX_LABEL_BYTES;
use crate::{Limits, ModelError, NewEvent, ParsedBatch};

/// Whole-body error codes (`ModelError::code`).
pub const BODY_CODES: &[&str] = &[
    "invalid_json",
    "not_an_object",
    "invalid_batch",
    "empty_batch",
    "too_many_events",
    "no_valid_events",
];

/// Per-event rejection codes (`Rejection::error`).
pub const EVENT_CODES: &[&str] = &[
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

/// Checks an answer of `parse_track_body` for a request received at
/// `received`: an accepted batch holds at least one event, no more than
/// the batch limit, and only events that keep every limit; every error and
/// rejection carries a known code. `Err` says what is broken.
pub fn parse_outcome(
    outcome: &Result<ParsedBatch, ModelError>,
    limits: &Limits,
    received: DateTime<Utc>,
) -> Result<(), String> {
    let rejected = match outcome {
        Ok(parsed) => {
            if parsed.events.is_empty() {
                return Err("accepted without an event".into());
            }
            if parsed.events.len() + parsed.rejected.len() > limits.max_batch_events {
                return Err(format!(
                    "{} events accepted and {} rejected",
                    parsed.events.len(),
                    parsed.rejected.len()
                ));
            }
            for e in &parsed.events {
                accepted_event(e, limits, received)
                    .map_err(|why| format!("accepted event breaks a limit: {why}"))?;
            }
            &parsed.rejected
        }
        Err(e) => {
            if !BODY_CODES.contains(&e.code()) {
                return Err(format!("unknown body code {}", e.code()));
            }
            match e {
                ModelError::NoValidEvents { rejected } if rejected.is_empty() => {
                    return Err("no_valid_events without a rejection".into())
                }
                ModelError::NoValidEvents { rejected } => rejected,
                _ => return Ok(()),
            }
        }
    };
    match rejected.iter().find(|r| !EVENT_CODES.contains(&r.error)) {
        Some(r) => Err(format!("unknown event code {}", r.error)),
        None => Ok(()),
    }
}

/// Every promise an accepted event makes (see `Limits` and `docs/api.md`).
pub fn accepted_event(
    e: &NewEvent,
    limits: &Limits,
    received: DateTime<Utc>,
) -> Result<(), String> {
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
    // Single-line fields: bounded, no control character at all.
    for (name, value, max) in [
        ("url", e.url(), limits.max_url_bytes),
        ("referrer", e.referrer(), limits.max_referrer_bytes),
        ("user agent", e.user_agent(), limits.max_user_agent_bytes),
    ] {
        if let Some(v) = value {
            if v.len() > max || controls(v) {
                return Err(format!("{name} of {} bytes: {v:?}", v.len()));
            }
        }
    }
    // The label comes from `data`, which keeps tab, LF and CR; never NUL.
    if let Some(label) = e.label() {
        if label.len() > MAX_LABEL_BYTES || label.contains('\0') {
            return Err(format!("label of {} bytes: {label:?}", label.len()));
        }
    }
    let json = e.data_json();
    if json.len() > limits.max_data_bytes {
        return Err(format!("data of {} bytes", json.len()));
    }
    let data = Value::Object(e.data().clone());
    if depth(&data) > limits.max_data_depth {
        return Err(format!("data {} deep", depth(&data)));
    }
    // No NUL in `data`; `data_json` is `data` (checked next), so none there
    // either. (A substring test on the JSON text would be wrong: the JSON
    // string `"\\u0000"` is six harmless characters, not a NUL.)
    if has_nul(&data) {
        return Err("NUL in data".into());
    }
    if serde_json::from_str::<Value>(json).ok() != Some(data) {
        return Err("data_json is not data".into());
    }
    if e.received_at() != received {
        return Err(format!(
            "receive time {} instead of {received}",
            e.received_at()
        ));
    }
    let t = e.occurred_at();
    if t != received && (t < received - limits.max_past || t > received + limits.max_future) {
        return Err(format!("event time {t} for receive time {received}"));
    }
    Ok(())
}

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
