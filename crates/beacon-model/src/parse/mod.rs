use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event::{EventId, EventKind, NewEvent, SessionToken};
use crate::text::{strip_controls, strip_controls_keep_whitespace, truncate_bytes};
use crate::{Limits, ModelError, Rejection};

/// What the server knows about the request beside its body.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// When the request arrived.
    pub received_at: DateTime<Utc>,
    /// The request's `User-Agent` header, used for events that carry none
    /// (`navigator.sendBeacon` bodies).
    pub user_agent: Option<&'a str>,
}

/// The outcome of a body that was not refused as a whole: at least one valid
/// event, and the rejected ones by index.
#[derive(Debug, Clone)]
pub struct ParsedBatch {
    /// Valid events, in the order of the batch.
    pub events: Vec<NewEvent>,
    /// Events that were refused, with the reason.
    pub rejected: Vec<Rejection>,
}

/// The body's outer shape. Events stay raw here so that each one is parsed
/// on its own: a bad event is rejected alone.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    batch: Option<&'a RawValue>,
}

/// One event as the pixel sends it, field names and aliases included.
#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type", alias = "event_type")]
    kind: Option<String>,
    data: Option<Value>,
    url: Option<String>,
    referrer: Option<String>,
    timestamp: Option<Value>,
    #[serde(rename = "sessionId", alias = "session_token", alias = "session_id")]
    session: Option<String>,
    #[serde(rename = "userAgent", alias = "user_agent")]
    user_agent: Option<String>,
    id: Option<Value>,
}

/// Parses a `/track` body: `{"batch": [...]}` or one event object, read as
/// JSON whatever the Content-Type. Invalid UTF-8 is replaced by U+FFFD
/// rather than costing the event.
///
/// The body size limit is the caller's to enforce before reading; the batch
/// size and every per-event limit are enforced here.
pub fn parse_track_body(
    body: &[u8],
    ctx: &RequestContext<'_>,
    limits: &Limits,
) -> Result<ParsedBatch, ModelError> {
    // Valid UTF-8 (nearly every body) is checked by the fast validator and
    // borrowed; only a body that fails it pays for the replacement.
    let text = match std::str::from_utf8(body) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(body),
    };
    let trimmed = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if !trimmed.starts_with('{') {
        return Err(
            match serde_json::from_str::<serde::de::IgnoredAny>(trimmed) {
                Ok(_) => ModelError::NotAnObject,
                Err(e) => ModelError::InvalidJson(e.to_string()),
            },
        );
    }
    let envelope: Envelope<'_> =
        serde_json::from_str(trimmed).map_err(|e| ModelError::InvalidJson(e.to_string()))?;

    let raw_events: Vec<&RawValue> = match envelope.batch {
        None => vec![],
        Some(batch) => serde_json::from_str(batch.get()).map_err(|_| ModelError::BatchNotArray)?,
    };
    let single;
    let raw_events: &[&RawValue] = if envelope.batch.is_none() {
        single = [serde_json::from_str::<&RawValue>(trimmed)
            .map_err(|e| ModelError::InvalidJson(e.to_string()))?];
        &single
    } else {
        &raw_events
    };

    if raw_events.is_empty() {
        return Err(ModelError::EmptyBatch);
    }
    if raw_events.len() > limits.max_batch_events {
        return Err(ModelError::TooManyEvents {
            count: raw_events.len(),
            max: limits.max_batch_events,
        });
    }

    let mut events = Vec::with_capacity(raw_events.len());
    let mut rejected = Vec::new();
    for (index, raw) in raw_events.iter().enumerate() {
        match parse_event(raw.get(), ctx, limits) {
            Ok(event) => events.push(event),
            Err((error, message)) => rejected.push(Rejection {
                index,
                error,
                message,
            }),
        }
    }
    if events.is_empty() {
        return Err(ModelError::NoValidEvents { rejected });
    }
    Ok(ParsedBatch { events, rejected })
}

type EventError = (&'static str, String);

fn parse_event(
    raw: &str,
    ctx: &RequestContext<'_>,
    limits: &Limits,
) -> Result<NewEvent, EventError> {
    if !raw.starts_with('{') {
        return Err(("invalid_event", "event must be a JSON object".into()));
    }
    let wire: WireEvent =
        serde_json::from_str(raw).map_err(|e| ("invalid_event", e.to_string()))?;

    let kind = match wire.kind {
        None => return Err(("missing_type", "event has no type".into())),
        Some(kind) => {
            let kind = strip_controls(kind);
            let chars = kind.chars().count();
            if chars == 0 || chars > limits.max_type_chars {
                return Err((
                    "invalid_type",
                    format!(
                        "event type must have 1 to {} characters, it has {chars}",
                        limits.max_type_chars
                    ),
                ));
            }
            EventKind::from_name(&kind)
        }
    };

    let session = match wire.session {
        None => return Err(("missing_session_id", "event has no sessionId".into())),
        Some(raw) => SessionToken::parse(raw, limits.max_session_chars)
            .map_err(|m| ("invalid_session_id", m))?,
    };

    let url = match wire.url.map(strip_controls) {
        Some(url) if url.len() > limits.max_url_bytes => {
            return Err((
                "url_too_long",
                format!(
                    "url has {} bytes, the limit is {}",
                    url.len(),
                    limits.max_url_bytes
                ),
            ))
        }
        other => other,
    };
    let referrer = wire
        .referrer
        .map(|r| truncate_bytes(strip_controls(r), limits.max_referrer_bytes));
    let user_agent = wire
        .user_agent
        .or_else(|| ctx.user_agent.map(str::to_owned))
        .map(|ua| truncate_bytes(strip_controls(ua), limits.max_user_agent_bytes));

    let mut data = match wire.data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(("invalid_data", "data must be a JSON object".into())),
    };
    let depth = object_depth(&data);
    if depth > limits.max_data_depth {
        return Err((
            "data_too_deep",
            format!(
                "data nests {depth} levels deep, the limit is {}",
                limits.max_data_depth
            ),
        ));
    }
    clean_object(&mut data);
    strip_addresses(&mut data);
    let data_json = serde_json::to_string(&data)
        .map_err(|e| ("invalid_data", format!("data cannot be serialized: {e}")))?;
    if data_json.len() > limits.max_data_bytes {
        return Err((
            "data_too_large",
            format!(
                "data is {} bytes serialized, the limit is {}",
                data_json.len(),
                limits.max_data_bytes
            ),
        ));
    }

    let (id, id_generated) = match wire.id {
        None | Some(Value::Null) => (EventId::generate(), true),
        Some(Value::String(s)) => (
            EventId::parse(&s, limits.max_id_chars).map_err(|m| ("invalid_id", m))?,
            false,
        ),
        Some(_) => return Err(("invalid_id", "id must be a string".into())),
    };

    let occurred_at = wire
        .timestamp
        .as_ref()
        .and_then(parse_timestamp)
        .filter(|t| {
            *t >= ctx.received_at - limits.max_past && *t <= ctx.received_at + limits.max_future
        })
        .unwrap_or(ctx.received_at);

    Ok(NewEvent {
        id,
        id_generated,
        kind,
        session,
        url,
        referrer,
        user_agent,
        data,
        data_json,
        occurred_at,
        received_at: ctx.received_at,
        profile: None,
    })
}

/// RFC 3339 strings (what the pixel's `toISOString()` makes) or a number of
/// milliseconds since the Unix epoch.
fn parse_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Value::Number(n) => n.as_i64().and_then(DateTime::<Utc>::from_timestamp_millis),
        _ => None,
    }
}

/// Nesting depth, the object itself counting as 1. Iterative, so no input can
/// exhaust the stack.
fn object_depth(map: &Map<String, Value>) -> usize {
    let mut max = 1;
    let mut stack: Vec<(&Value, usize)> = map.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Object(m) => {
                max = max.max(depth);
                stack.extend(m.values().map(|v| (v, depth + 1)));
            }
            Value::Array(a) => {
                max = max.max(depth);
                stack.extend(a.iter().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    max
}

/// Keys of `data` that carry the visitor's IP address (the seed pixel sends
/// `ip`). Beacon stores no address, whole or partial (docs/privacy.md), so
/// they are dropped before anything else sees the event.
const ADDRESS_KEYS: [&str; 5] = ["ip", "ip_address", "ipAddress", "client_ip", "clientIp"];

/// Removes the [`ADDRESS_KEYS`] from the top level of `data`.
fn strip_addresses(map: &mut Map<String, Value>) {
    for key in ADDRESS_KEYS {
        map.remove(key);
    }
}

/// Removes NUL and other control characters (tab and line breaks stay) from
/// every string and key of `data`.
fn clean_object(map: &mut Map<String, Value>) {
    if map
        .keys()
        .any(|k| strip_controls_keep_whitespace(k).is_some())
    {
        let old = std::mem::take(map);
        for (k, v) in old {
            let k = strip_controls_keep_whitespace(&k).unwrap_or(k);
            map.insert(k, v);
        }
    }
    for value in map.values_mut() {
        clean_value(value);
    }
}

fn clean_value(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(clean) = strip_controls_keep_whitespace(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(clean_value),
        Value::Object(map) => clean_object(map),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
