use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::VisitorProfile;

/// What happened. The pixel sends the five named kinds; anything else is kept
/// as a custom event under its own name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A page view.
    Visit,
    /// A click on an element marked `data-track`.
    Click,
    /// Scroll depth reached.
    Scroll,
    /// The pixel's periodic "still here".
    Heartbeat,
    /// The page was closed or hidden for good.
    SessionEnd,
    /// Any other type, 1..=64 characters, no control characters.
    Custom(String),
}

impl EventKind {
    /// The name stored in the database and sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Visit => "visit",
            Self::Click => "click",
            Self::Scroll => "scroll",
            Self::Heartbeat => "heartbeat",
            Self::SessionEnd => "session_end",
            Self::Custom(name) => name,
        }
    }

    /// Maps a stored or received name to its kind (never fails: unknown
    /// names are custom kinds).
    pub fn from_name(name: &str) -> Self {
        match name {
            "visit" => Self::Visit,
            "click" => Self::Click,
            "scroll" => Self::Scroll,
            "heartbeat" => Self::Heartbeat,
            "session_end" => Self::SessionEnd,
            other => Self::Custom(other.to_owned()),
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session token as the pixel makes it (`"1764496800000-k3j9x2"`):
/// 1..=128 characters, none of them a control character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionToken(String);

impl SessionToken {
    /// Checks the token; `max_chars` is [`crate::Limits::max_session_chars`].
    pub fn parse(raw: String, max_chars: usize) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err("session id is empty".into());
        }
        if chars > max_chars {
            return Err(format!(
                "session id has {chars} characters, the limit is {max_chars}"
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err("session id contains control characters".into());
        }
        Ok(Self(raw))
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The public, idempotency-giving id of an event: a client-supplied UUID
/// (stored in canonical lowercase form) or string of 1..=100 characters, or
/// a server-assigned UUIDv7.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    /// Checks a client-supplied id.
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, String> {
        if let Ok(uuid) = uuid::Uuid::try_parse(raw) {
            return Ok(Self(uuid.hyphenated().to_string()));
        }
        let chars = raw.chars().count();
        if chars == 0 {
            return Err("id is empty".into());
        }
        if chars > max_chars {
            return Err(format!(
                "id has {chars} characters, the limit is {max_chars}"
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err("id contains control characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// A fresh time-ordered UUIDv7.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().hyphenated().to_string())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Longest click label stored apart from `data`, in bytes. The label is a
/// key of the rollups, and PostgreSQL cannot index a text much longer than
/// 2.7 KB: an unbounded one would fail the insert (and the good events of
/// its request). Live metrics cut labels at the same length.
pub(crate) const MAX_LABEL_BYTES: usize = 256;

/// A click label as stored apart from `data` (and counted live): cut to
/// at most 256 bytes on a character boundary.
pub fn cut_label(label: &str) -> &str {
    let mut end = label.len().min(MAX_LABEL_BYTES);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

/// A validated event, ready to store. Only [`crate::parse_track_body`] makes
/// one, so holding it proves every limit of [`crate::Limits`] holds.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub(crate) id: EventId,
    pub(crate) id_generated: bool,
    pub(crate) kind: EventKind,
    pub(crate) session: SessionToken,
    pub(crate) url: Option<String>,
    pub(crate) referrer: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) data: Map<String, Value>,
    pub(crate) data_json: String,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) received_at: DateTime<Utc>,
    pub(crate) profile: Option<Arc<VisitorProfile>>,
}

impl NewEvent {
    /// Public id (client-supplied or generated).
    pub fn id(&self) -> &EventId {
        &self.id
    }
    /// True when the server generated the id (the event came without one,
    /// as the pixel's do): a fresh UUIDv7, so no stored event can have it
    /// and the store may skip the duplicate check.
    pub fn id_is_generated(&self) -> bool {
        self.id_generated
    }
    /// Event type.
    pub fn kind(&self) -> &EventKind {
        &self.kind
    }
    /// Session the event belongs to.
    pub fn session(&self) -> &SessionToken {
        &self.session
    }
    /// Page url, at most 2048 bytes, no control characters.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
    /// Referrer, at most 2048 bytes (truncated), no control characters.
    pub fn referrer(&self) -> Option<&str> {
        self.referrer.as_deref()
    }
    /// User agent of the event, or of the request when the event had none.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }
    /// The `data` object, cleaned of NUL and control characters.
    pub fn data(&self) -> &Map<String, Value> {
        &self.data
    }
    /// `data` serialized once (at most 16 KiB), as stored.
    pub fn data_json(&self) -> &str {
        &self.data_json
    }
    /// Event time: the client's timestamp when plausible, else `received_at`.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.occurred_at
    }
    /// When the server received the event.
    pub fn received_at(&self) -> DateTime<Utc> {
        self.received_at
    }
    /// The click label (`data.label`) of a click, when it is a string, cut
    /// to at most 256 bytes on a character boundary (`data` keeps it whole).
    pub fn label(&self) -> Option<&str> {
        match self.kind {
            EventKind::Click => self.data_str("label").map(cut_label),
            _ => None,
        }
    }
    /// Who is behind the event, once the server has enriched it.
    pub fn profile(&self) -> Option<&VisitorProfile> {
        self.profile.as_deref()
    }
    /// The event with its visitor profile (enrichment sets it before the
    /// event is stored).
    pub fn with_profile(mut self, profile: Arc<VisitorProfile>) -> Self {
        self.profile = Some(profile);
        self
    }
    /// A string field of `data` (e.g. `country` of a visit).
    pub fn data_str(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }
}

/// The fields of an event that a Beacon server validated earlier and kept
/// outside the process (the Redis buffer's entries), to be rebuilt into a
/// [`NewEvent`] by [`NewEvent::restore`].
///
/// Only for data that came out of a [`NewEvent`] (through its accessors):
/// the limits are not checked again, since the event passed them when it
/// was received. Fields added to [`NewEvent`] later get a default here, so
/// that data written by an older server still restores.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredEvent {
    /// [`NewEvent::id`].
    pub id: String,
    /// [`NewEvent::id_is_generated`].
    pub id_generated: bool,
    /// [`NewEvent::kind`], by name.
    pub kind: String,
    /// [`NewEvent::session`].
    pub session: String,
    /// [`NewEvent::url`].
    pub url: Option<String>,
    /// [`NewEvent::referrer`].
    pub referrer: Option<String>,
    /// [`NewEvent::user_agent`].
    pub user_agent: Option<String>,
    /// [`NewEvent::data_json`]: a JSON object.
    pub data_json: String,
    /// [`NewEvent::occurred_at`].
    pub occurred_at: DateTime<Utc>,
    /// [`NewEvent::received_at`].
    pub received_at: DateTime<Utc>,
    /// [`NewEvent::profile`].
    pub profile: Option<VisitorProfile>,
}

/// Why restored fields do not make an event: they did not come from a
/// [`NewEvent`] (damaged or foreign data).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a validated event: {0}")]
pub struct RestoreError(String);

impl NewEvent {
    /// Rebuilds an event from fields taken from a [`NewEvent`] earlier (see
    /// [`RestoredEvent`]). Checks only what the store relies on: a
    /// non-empty id and session, and `data_json` being a JSON object.
    pub fn restore(parts: RestoredEvent) -> Result<Self, RestoreError> {
        if parts.id.is_empty() || parts.session.is_empty() || parts.kind.is_empty() {
            return Err(RestoreError("empty id, session or type".into()));
        }
        let data: Map<String, Value> =
            serde_json::from_str(&parts.data_json).map_err(|e| RestoreError(e.to_string()))?;
        Ok(Self {
            id: EventId(parts.id),
            id_generated: parts.id_generated,
            kind: EventKind::from_name(&parts.kind),
            session: SessionToken(parts.session),
            url: parts.url,
            referrer: parts.referrer,
            user_agent: parts.user_agent,
            data,
            data_json: parts.data_json,
            occurred_at: parts.occurred_at,
            received_at: parts.received_at,
            profile: parts.profile.map(Arc::new),
        })
    }

    /// The same event, marked as possibly stored already: the store checks
    /// it for a duplicate even if its id was generated (an event delivered
    /// again after a commit whose outcome was not seen).
    pub fn into_checked(mut self) -> Self {
        self.id_generated = false;
        self
    }
}

#[cfg(test)]
mod restore_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{parse_track_body, Limits, RequestContext};

    fn parts(e: &NewEvent) -> RestoredEvent {
        RestoredEvent {
            id: e.id().as_str().to_owned(),
            id_generated: e.id_is_generated(),
            kind: e.kind().as_str().to_owned(),
            session: e.session().as_str().to_owned(),
            url: e.url().map(str::to_owned),
            referrer: e.referrer().map(str::to_owned),
            user_agent: e.user_agent().map(str::to_owned),
            data_json: e.data_json().to_owned(),
            occurred_at: e.occurred_at(),
            received_at: e.received_at(),
            profile: e.profile().cloned(),
        }
    }

    #[test]
    fn an_event_restored_from_its_fields_equals_the_original() {
        let ctx = RequestContext {
            received_at: "2026-11-30T10:00:00Z".parse().unwrap(),
            user_agent: Some("Mozilla/5.0"),
        };
        let body = br#"{"batch":[{"type":"click","sessionId":"s1","url":"https://a/","data":{"label":"Go","n":1.5}},{"type":"promo","id":"x-1","sessionId":"s2"}]}"#;
        let parsed = parse_track_body(body, &ctx, &Limits::default()).unwrap();
        for e in parsed.events {
            let restored = NewEvent::restore(parts(&e)).unwrap();
            assert_eq!(restored, e);
            assert_eq!(restored.label(), e.label());
            assert!(!restored.into_checked().id_is_generated());
        }
    }

    #[test]
    fn fields_that_did_not_come_from_an_event_are_refused() {
        let ctx = RequestContext {
            received_at: "2026-11-30T10:00:00Z".parse().unwrap(),
            user_agent: None,
        };
        let parsed = parse_track_body(
            br#"{"type":"visit","sessionId":"s"}"#,
            &ctx,
            &Limits::default(),
        )
        .unwrap();
        let good = parts(&parsed.events[0]);
        for (case, bad) in [
            (
                "data not an object",
                RestoredEvent {
                    data_json: "[1]".into(),
                    ..good.clone()
                },
            ),
            (
                "data not JSON",
                RestoredEvent {
                    data_json: "{".into(),
                    ..good.clone()
                },
            ),
            (
                "empty session",
                RestoredEvent {
                    session: String::new(),
                    ..good.clone()
                },
            ),
            (
                "empty id",
                RestoredEvent {
                    id: String::new(),
                    ..good.clone()
                },
            ),
        ] {
            assert!(NewEvent::restore(bad).is_err(), "{case}");
        }
    }
}
