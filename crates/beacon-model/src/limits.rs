use chrono::Duration;

/// The bounds every accepted event satisfies. `Limits::default()` is the
/// documented contract (`docs/api.md`); tests may tighten it.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (enforced by the server before parsing).
    pub max_body_bytes: usize,
    /// Most events in one batch.
    pub max_batch_events: usize,
    /// Longest event type, in characters.
    pub max_type_chars: usize,
    /// Longest `url`, in bytes; a longer one rejects the event.
    pub max_url_bytes: usize,
    /// Longest `referrer`, in bytes; a longer one is truncated.
    pub max_referrer_bytes: usize,
    /// Longest user agent, in bytes; a longer one is truncated.
    pub max_user_agent_bytes: usize,
    /// Largest `data` object once serialized, in bytes.
    pub max_data_bytes: usize,
    /// Deepest nesting of `data` (the object itself is depth 1).
    pub max_data_depth: usize,
    /// Longest session id, in characters.
    pub max_session_chars: usize,
    /// Longest client-supplied event `id`, in characters.
    pub max_id_chars: usize,
    /// How far before the receive time a client timestamp is still believed.
    pub max_past: Duration,
    /// How far after the receive time a client timestamp is still believed.
    pub max_future: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 512 * 1024,
            max_batch_events: 500,
            max_type_chars: 64,
            max_url_bytes: 2048,
            max_referrer_bytes: 2048,
            max_user_agent_bytes: 512,
            max_data_bytes: 16 * 1024,
            max_data_depth: 8,
            max_session_chars: 128,
            max_id_chars: 100,
            max_past: Duration::days(7),
            max_future: Duration::minutes(10),
        }
    }
}
