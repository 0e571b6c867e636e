//! What the history endpoints share: query-string parsing into typed values
//! (every failure is a 400 naming the parameter), opaque cursors, time zones
//! and the JSON shapes of sessions and events.

use std::collections::HashMap;

use actix_web::web;
use beacon_store::{SessionSummary, StoredEvent};
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::error::ApiError;
use crate::health::DatabaseHealth;

/// Longest text filter accepted (urls are at most 2048 bytes when stored).
const MAX_FILTER_CHARS: usize = 2048;

/// The query string of a request, by name (unknown names are ignored;
/// `token` is the read token's).
pub struct Params(HashMap<String, String>);

fn bad(name: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::BadParameter {
        name,
        message: message.into(),
    }
}

impl Params {
    /// Parses a query string.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        web::Query::<HashMap<String, String>>::from_query(query)
            .map(|q| Self(q.into_inner()))
            .map_err(|e| bad("query", e.to_string()))
    }

    /// A text parameter; empty counts as absent.
    pub fn text(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.0.get(name).filter(|v| !v.is_empty()) {
            Some(v) if v.chars().count() > MAX_FILTER_CHARS => Err(bad(
                name,
                format!("longer than {MAX_FILTER_CHARS} characters"),
            )),
            Some(v) => Ok(Some(v.clone())),
            None => Ok(None),
        }
    }

    /// An ISO 3166-1 alpha-2 country code, in either case (stored upper
    /// case).
    pub fn country(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.text(name)? {
            Some(code) if code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Ok(Some(code.to_ascii_uppercase()))
            }
            Some(_) => Err(bad(
                name,
                "expected a two-letter ISO 3166-1 country code such as DE",
            )),
            None => Ok(None),
        }
    }

    /// An integer in `1..=max`, `default` when absent.
    pub fn limit(&self, default: i64, max: i64) -> Result<i64, ApiError> {
        match self.text("limit")? {
            None => Ok(default),
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(bad("limit", format!("expected an integer from 1 to {max}"))),
            },
        }
    }

    /// A time: RFC 3339 (`2026-10-25T00:00:00Z`, `…+02:00`) or a date
    /// (`2026-10-25`, the start of that day in `tz`).
    pub fn time(&self, name: &'static str, tz: Tz) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(raw) = self.text(name)? else {
            return Ok(None);
        };
        if let Ok(t) = DateTime::parse_from_rfc3339(&raw) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
        if let Ok(date) = NaiveDate::parse_from_str(&raw, "%Y-%m-%d") {
            return Ok(Some(start_of_day(tz, date)));
        }
        Err(bad(
            name,
            "expected an RFC 3339 time (2026-10-25T00:00:00Z) or a date (2026-10-25)",
        ))
    }

    /// The `tz` parameter: an IANA time-zone name, UTC when absent.
    pub fn tz(&self) -> Result<Tz, ApiError> {
        match self.text("tz")? {
            None => Ok(Tz::UTC),
            Some(name) => name.parse::<Tz>().map_err(|_| {
                bad(
                    "tz",
                    "expected an IANA time-zone name such as Europe/Berlin",
                )
            }),
        }
    }

    /// A cursor made by [`encode_cursor`] with the same `kind`.
    pub fn cursor(&self, kind: char) -> Result<Option<(i64, i64)>, ApiError> {
        let Some(raw) = self.text("cursor")? else {
            return Ok(None);
        };
        decode_cursor(kind, &raw)
            .map(Some)
            .ok_or_else(|| bad("cursor", "not a cursor returned by this endpoint"))
    }
}

/// The first instant of a local date (the earliest one when midnight is
/// repeated; the first existing one when midnight is skipped by DST).
pub fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut local = date.and_time(chrono::NaiveTime::MIN);
    for _ in 0..8 {
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.with_timezone(&Utc);
        }
        local += chrono::Duration::minutes(15);
    }
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

/// An opaque pagination cursor for the position `(time, id)`: hex of
/// `kind time.id`, so that clients treat it as a token, and a cursor of one
/// endpoint is refused by another.
pub fn encode_cursor(kind: char, (time, id): (i64, i64)) -> String {
    format!("{kind}{time}.{id}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_cursor(kind: char, raw: &str) -> Option<(i64, i64)> {
    if !raw.len().is_multiple_of(2) || raw.len() > 128 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(raw.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (time, id) = text.strip_prefix(kind)?.split_once('.')?;
    Some((time.parse().ok()?, id.parse().ok()?))
}

/// Runs a storage call on the blocking pool (diesel is synchronous), and
/// tells `health` whether the database answered, so that an outage is
/// logged once rather than by every read that meets it.
pub async fn blocking<T, F>(health: &DatabaseHealth, f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, beacon_store::StoreError> + Send + 'static,
    T: Send + 'static,
{
    let outcome = web::block(f)
        .await
        .map_err(|e| beacon_store::StoreError::Unavailable(e.to_string()))
        .and_then(|result| result);
    health.observe(&outcome);
    outcome.map_err(ApiError::Store)
}

/// RFC 3339 in UTC, with as many fraction digits as needed.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An event as the history endpoints show it.
#[derive(Serialize)]
pub struct EventView<'a> {
    id: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    received_at: String,
    session_token: &'a str,
    url: Option<&'a str>,
    referrer: Option<&'a str>,
    label: Option<&'a str>,
    user_agent: Option<&'a str>,
    metadata: Option<&'a serde_json::value::RawValue>,
    event_id: &'a str,
}

impl<'a> EventView<'a> {
    /// The view of a stored event (its metadata is stored JSON, passed
    /// through as is; should it not parse, `null` is shown rather than
    /// failing a whole page).
    pub fn of(e: &'a StoredEvent) -> Self {
        let metadata = serde_json::from_str(&e.metadata).ok();
        Self {
            id: e.id,
            kind: &e.kind,
            timestamp: rfc3339(e.occurred_at()),
            received_at: rfc3339(e.received_at()),
            session_token: &e.session_token,
            url: e.url.as_deref(),
            referrer: e.referrer.as_deref(),
            label: e.label.as_deref(),
            user_agent: e.user_agent.as_deref(),
            metadata,
            event_id: &e.public_id,
        }
    }
}

/// A session as the history endpoints show it.
#[derive(Serialize)]
pub struct SessionView<'a> {
    token: &'a str,
    first_seen: String,
    last_seen: String,
    duration_seconds: f64,
    events: i64,
    page_views: i64,
    entry_url: Option<&'a str>,
    referrer: Option<&'a str>,
    country: Option<&'a str>,
    region: Option<&'a str>,
    city: Option<&'a str>,
    browser: Option<&'a str>,
    browser_version: Option<&'a str>,
    os: Option<&'a str>,
    os_version: Option<&'a str>,
    device: Option<&'a str>,
    /// The daily visitor id, as a string (JSON numbers lose precision
    /// past 2^53 in JavaScript).
    visitor_id: Option<String>,
    bot: bool,
    user_agent: Option<&'a str>,
}

impl<'a> SessionView<'a> {
    /// The view of a session summary.
    pub fn of(summary: &'a SessionSummary) -> Self {
        let s = &summary.session;
        Self {
            token: &s.token,
            first_seen: rfc3339(s.first_seen()),
            last_seen: rfc3339(s.last_seen()),
            duration_seconds: seconds(s.last_seen_us - s.first_seen_us),
            events: summary.events,
            page_views: summary.page_views,
            entry_url: s.entry_url.as_deref(),
            referrer: s.referrer.as_deref(),
            country: s.country.as_deref(),
            region: s.region.as_deref(),
            city: s.city.as_deref(),
            browser: s.browser.as_deref(),
            browser_version: s.browser_version.as_deref(),
            os: s.os.as_deref(),
            os_version: s.os_version.as_deref(),
            device: s.device.as_deref(),
            visitor_id: s.visitor_id.map(|id| id.to_string()),
            bot: s.bot,
            user_agent: s.user_agent.as_deref(),
        }
    }
}

/// Microseconds as seconds, to the millisecond.
pub fn seconds(micros: i64) -> f64 {
    (micros as f64 / 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_endpoint() {
        let c = encode_cursor('e', (1_761_350_400_000_000, 42));
        assert_eq!(decode_cursor('e', &c), Some((1_761_350_400_000_000, 42)));
        assert_eq!(decode_cursor('s', &c), None);
        for bad in ["", "zz", "6", "65", "653132", "not a cursor"] {
            assert_eq!(decode_cursor('e', bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_start_at_local_midnight() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        assert_eq!(rfc3339(start_of_day(berlin, date)), "2026-10-24T22:00:00Z");
        // Midnight skipped by DST (Santiago, 2026-09-06): the day starts at 01:00.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        assert_eq!(
            rfc3339(start_of_day(santiago, date)),
            "2026-09-06T04:00:00Z"
        );
    }
}
