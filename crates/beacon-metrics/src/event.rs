//! The input of the aggregator.

use chrono::{DateTime, Utc};

/// One committed event, borrowed from the caller's own row, as fed to
/// [`LiveMetrics::record`](crate::LiveMetrics::record).
///
/// A view: building one copies nothing, and the aggregator copies from it
/// only what it keeps (a session token when the session is new, a url,
/// referrer or label the first time it is seen, the whole event when it
/// enters `recent_events`). The server builds it from its stored rows,
/// another service from its own stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveEvent<'a> {
    /// Database id of the committed event; breaks timestamp ties.
    pub id: i64,
    /// Event type: `visit`, `click`, `scroll`, `heartbeat`, `session_end` or
    /// any custom type.
    pub kind: &'a str,
    /// Session token.
    pub session: &'a str,
    /// Page url, if any; an empty string counts as none for `top_pages`.
    pub url: Option<&'a str>,
    /// Referrer, if any; an empty string counts as none for `top_referrers`.
    pub referrer: Option<&'a str>,
    /// Event time (client time, as validated and stored by the server).
    pub timestamp: DateTime<Utc>,
    /// The click label: `metadata["label"]` when it is a string, else `None`
    /// (counted as [`UNKNOWN_LABEL`]). Read for clicks only. The caller
    /// extracts it once (the server stores it in its own column), so the
    /// aggregator never parses `metadata`.
    pub label: Option<&'a str>,
    /// The pixel's `data` object as JSON text, shown in `recent_events`.
    /// Parsed only when a snapshot shows the event; text that is not valid
    /// JSON shows as `null`.
    pub metadata: &'a str,
    /// The visitor behind the session (the server's daily visitor id);
    /// `None`: the session is its own visitor (a session stored before
    /// visitor ids existed). Sessions with the same visitor count once in
    /// every `visitors` figure.
    pub visitor: Option<i64>,
    /// The session's country (the server gives ISO 3166-1 alpha-2 codes),
    /// if known.
    pub country: Option<&'a str>,
    /// The session's device type (the server gives `desktop`, `mobile`,
    /// `tablet` or `other`), if known.
    pub device: Option<&'a str>,
}

/// Event type of a page view.
pub const KIND_VISIT: &str = "visit";
/// Event type of a click; its label is `metadata["label"]`.
pub const KIND_CLICK: &str = "click";
/// Event type that ends a session at once.
pub const KIND_SESSION_END: &str = "session_end";
/// Label of a click whose `metadata["label"]` is absent or not a string.
pub const UNKNOWN_LABEL: &str = "unknown";
/// Reason of [`LiveMetrics::record_dropped`](crate::LiveMetrics::record_dropped)
/// for traffic recognised as a bot; shown as `bots_last_min`.
pub const DROP_BOT: &str = "bot";

impl LiveEvent<'_> {
    /// The click label, or [`UNKNOWN_LABEL`] when there is none.
    /// Meaningful for clicks only.
    pub fn label(&self) -> &str {
        self.label.unwrap_or(UNKNOWN_LABEL)
    }
}

/// `s` cut to at most `max` bytes, at a char boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
