//! The stream entry: what of an event goes into Redis, and back.
//!
//! An entry has two fields: `v`, the format version, and `e`, the event as
//! a JSON object. JSON because `data` is JSON already (it travels as the
//! stored text, never re-encoded), because `redis-cli XRANGE` shows an
//! operator something readable, and because serde skips the fields it does
//! not know and defaults the ones that are missing: a new optional field
//! (the visitor profile, say) needs no new version, and old and new
//! instances share one stream during a rolling upgrade. `v` changes only
//! for a change an older reader cannot ignore; a reader leaves entries of
//! a newer version to the instances that know it (see `drain.rs`).
//!
//! There is no field for the client's address: it never reaches Redis.

use beacon_model::{NewEvent, RestoreError, RestoredEvent, VisitorProfile};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// An event as written (borrowed from the [`NewEvent`]).
#[derive(Serialize)]
struct Out<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    generated: bool,
    #[serde(rename = "type")]
    kind: &'a str,
    session: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    /// `data` as the stored JSON text.
    data: &'a str,
    /// Microseconds since the epoch, as stored.
    occurred_us: i64,
    received_us: i64,
    /// Who is behind it (enrichment), when the server enriched it.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a VisitorProfile>,
}

/// An event as read. Unknown fields are ignored; optional ones default.
#[derive(Deserialize)]
struct In {
    id: String,
    #[serde(default)]
    generated: bool,
    #[serde(rename = "type")]
    kind: String,
    session: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    referrer: Option<String>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default = "empty_object")]
    data: String,
    occurred_us: i64,
    received_us: i64,
    #[serde(default)]
    profile: Option<VisitorProfile>,
}

fn empty_object() -> String {
    "{}".to_owned()
}

/// Why an entry cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The entry was written by a newer format this build does not know:
    /// left to an instance that does.
    #[error("entry format version {0} is newer than this build's ({VERSION})")]
    NewerVersion(u32),
    /// Not an entry Beacon wrote, or damaged.
    #[error("malformed entry: {0}")]
    Malformed(String),
}

impl From<RestoreError> for EntryError {
    fn from(e: RestoreError) -> Self {
        Self::Malformed(e.to_string())
    }
}

/// The `e` field of an event's entry.
pub fn encode(e: &NewEvent) -> String {
    let out = Out {
        id: e.id().as_str(),
        generated: e.id_is_generated(),
        kind: e.kind().as_str(),
        session: e.session().as_str(),
        url: e.url(),
        referrer: e.referrer(),
        user_agent: e.user_agent(),
        data: e.data_json(),
        occurred_us: e.occurred_at().timestamp_micros(),
        received_us: e.received_at().timestamp_micros(),
        profile: e.profile(),
    };
    // Serializing strings, bools and integers cannot fail.
    serde_json::to_string(&out).unwrap_or_default()
}

/// The fields of an entry's event as the live view needs them: `data`
/// stays JSON text (no parsing), unlike [`decode`].
#[derive(Debug)]
pub struct View {
    /// Public id.
    pub id: String,
    /// Event type.
    pub kind: String,
    /// Session token.
    pub session: String,
    /// Page url.
    pub url: Option<String>,
    /// Referrer.
    pub referrer: Option<String>,
    /// `data` as JSON text.
    pub data: String,
    /// Event time.
    pub occurred_at: DateTime<Utc>,
    /// Who is behind it, when the server enriched it.
    pub profile: Option<VisitorProfile>,
}

impl View {
    /// The click label, cut as [`NewEvent::label`] cuts it; parses `data`
    /// for clicks only.
    pub fn label(&self) -> Option<String> {
        if self.kind != "click" {
            return None;
        }
        let data: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&self.data).ok()?;
        Some(beacon_model::cut_label(data.get("label")?.as_str()?).to_owned())
    }
}

/// The wire form of an entry, its version checked.
fn wire(version: Option<&[u8]>, event: Option<&[u8]>) -> Result<In, EntryError> {
    let version: u32 = version
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| EntryError::Malformed("no format version".into()))?;
    if version > VERSION {
        return Err(EntryError::NewerVersion(version));
    }
    let event = event.ok_or_else(|| EntryError::Malformed("no event".into()))?;
    serde_json::from_slice(event).map_err(|e| EntryError::Malformed(e.to_string()))
}

/// The live view's fields of an entry's event.
pub fn view(version: Option<&[u8]>, event: Option<&[u8]>) -> Result<View, EntryError> {
    let wire = wire(version, event)?;
    Ok(View {
        occurred_at: DateTime::<Utc>::from_timestamp_micros(wire.occurred_us)
            .ok_or_else(|| EntryError::Malformed("time out of range".into()))?,
        id: wire.id,
        kind: wire.kind,
        session: wire.session,
        url: wire.url,
        referrer: wire.referrer,
        data: wire.data,
        profile: wire.profile,
    })
}

/// The event of an entry, from its `v` and `e` fields.
pub fn decode(version: Option<&[u8]>, event: Option<&[u8]>) -> Result<NewEvent, EntryError> {
    let wire = wire(version, event)?;
    let time = |us: i64| {
        DateTime::<Utc>::from_timestamp_micros(us)
            .ok_or_else(|| EntryError::Malformed("time out of range".into()))
    };
    Ok(NewEvent::restore(RestoredEvent {
        id: wire.id,
        id_generated: wire.generated,
        kind: wire.kind,
        session: wire.session,
        url: wire.url,
        referrer: wire.referrer,
        user_agent: wire.user_agent,
        data_json: wire.data,
        occurred_at: time(wire.occurred_us)?,
        received_at: time(wire.received_us)?,
        profile: wire.profile,
    })?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use beacon_model::{parse_track_body, Limits, RequestContext};

    fn events(body: &str) -> Vec<NewEvent> {
        let ctx = RequestContext {
            received_at: "2026-11-30T10:00:00.123456Z".parse().unwrap(),
            user_agent: Some("Mozilla/5.0 (X11)"),
        };
        parse_track_body(body.as_bytes(), &ctx, &Limits::default())
            .unwrap()
            .events
    }

    #[test]
    fn an_event_comes_back_from_its_entry_unchanged() {
        let body = r#"{"batch":[
            {"type":"click","sessionId":"s1","url":"https://a.example/","referrer":"https://g/","data":{"label":"Go \"now\"","x":[1,2.5,null]}},
            {"type":"custom-thing","id":"client-1","sessionId":"s2","timestamp":"2026-11-30T09:59:00Z"}]}"#;
        let profile = std::sync::Arc::new(VisitorProfile {
            visitor_id: Some(-42),
            browser: Some("Firefox".into()),
            country: Some("DE".into()),
            device: Some("desktop".into()),
            ..VisitorProfile::default()
        });
        let with_profile = events(body)
            .into_iter()
            .map(|e| e.with_profile(std::sync::Arc::clone(&profile)));
        for e in events(body).into_iter().chain(with_profile) {
            let entry = encode(&e);
            let back = decode(Some(b"1"), Some(entry.as_bytes())).unwrap();
            assert_eq!(back, e);
            assert_eq!(back.profile(), e.profile(), "the profile travels");
            let view = view(Some(b"1"), Some(entry.as_bytes())).unwrap();
            assert_eq!(view.label().as_deref(), e.label(), "the live view's label");
            assert_eq!(view.data, e.data_json());
            assert_eq!(view.occurred_at, e.occurred_at());
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_optional_ones_default() {
        let e = decode(
            Some(b"1"),
            Some(br#"{"id":"a","type":"visit","session":"s","occurred_us":1,"received_us":2,"visitor":{"browser":"Firefox"}}"#),
        )
        .unwrap();
        assert_eq!(e.data_json(), "{}");
        assert_eq!(e.url(), None);
        assert!(
            !e.id_is_generated(),
            "an entry that does not say so is checked"
        );
    }

    #[test]
    fn a_newer_version_is_told_apart_from_a_damaged_entry() {
        assert!(matches!(
            decode(Some(b"2"), Some(b"{}")),
            Err(EntryError::NewerVersion(2))
        ));
        for (case, v, e) in [
            ("no version", None, Some(&b"{}"[..])),
            ("no event", Some(&b"1"[..]), None),
            ("not JSON", Some(&b"1"[..]), Some(&b"{"[..])),
            (
                "no session",
                Some(&b"1"[..]),
                Some(&br#"{"id":"a","type":"visit","occurred_us":1,"received_us":2}"#[..]),
            ),
        ] {
            assert!(
                matches!(decode(v, e), Err(EntryError::Malformed(_))),
                "{case}"
            );
        }
    }

    #[test]
    fn the_entry_has_no_field_for_an_address() {
        let e = &events(r#"{"type":"visit","sessionId":"s","data":{"page_title":"Home"}}"#)[0];
        let json: serde_json::Value = serde_json::from_str(&encode(e)).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "data",
                "generated",
                "id",
                "occurred_us",
                "received_us",
                "session",
                "type",
                "user_agent"
            ]
        );
    }
}
