//! The input of the aggregator.

use chrono::{DateTime, Utc};

/// One committed event, as fed to [`LiveMetrics::record`](crate::LiveMetrics::record).
///
/// This is the crate's own input type: the server converts its stored rows
/// into it, another service builds it from its own stream.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    /// Database id of the committed event; breaks timestamp ties.
    pub id: i64,
    /// Event type: `visit`, `click`, `scroll`, `heartbeat`, `session_end` or
    /// any custom type.
    pub kind: String,
    /// Session token.
    pub session: String,
    /// Page url, if any; an empty string counts as none for `top_pages`.
    pub url: Option<String>,
    /// Referrer, if any; an empty string counts as none for `top_referrers`.
    pub referrer: Option<String>,
    /// Event time (client time, as validated and stored by the server).
    pub timestamp: DateTime<Utc>,
    /// The pixel's `data` object; a click's label is `metadata["label"]`.
    pub metadata: serde_json::Value,
}

/// Event type of a page view.
pub const KIND_VISIT: &str = "visit";
/// Event type of a click; its label is `metadata["label"]`.
pub const KIND_CLICK: &str = "click";
/// Event type that ends a session at once.
pub const KIND_SESSION_END: &str = "session_end";
/// Label of a click whose `metadata["label"]` is absent or not a string.
pub const UNKNOWN_LABEL: &str = "unknown";

impl LiveEvent {
    /// The click label: `metadata["label"]` when it is a string, else
    /// [`UNKNOWN_LABEL`]. Meaningful for clicks only.
    pub fn label(&self) -> &str {
        self.metadata
            .get("label")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(UNKNOWN_LABEL)
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
