use serde::Serialize;

/// Why a whole `/track` body was refused. Nothing of such a body is stored.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The body is not valid JSON (or nests deeper than the parser allows).
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON but not an object.
    #[error("body must be a JSON object (an event or {{\"batch\": [...]}})")]
    NotAnObject,
    /// `batch` is present but not an array of events.
    #[error("batch must be an array of event objects")]
    BatchNotArray,
    /// `batch` is an empty array.
    #[error("batch is empty")]
    EmptyBatch,
    /// More events than [`crate::Limits::max_batch_events`].
    #[error("batch has {count} events, the limit is {max}")]
    TooManyEvents {
        /// Events in the batch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Every event of the body was rejected; the reasons are listed.
    #[error("no valid event in the body ({} rejected)", rejected.len())]
    NoValidEvents {
        /// Why each event was rejected.
        rejected: Vec<Rejection>,
    },
}

impl ModelError {
    /// Stable machine-readable code, used as the `error` field of responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::BatchNotArray => "invalid_batch",
            Self::EmptyBatch => "empty_batch",
            Self::TooManyEvents { .. } => "too_many_events",
            Self::NoValidEvents { .. } => "no_valid_events",
        }
    }
}

/// One event of a batch that was refused, next to the ones that were kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the event in the batch (0 for a single-event body).
    pub index: usize,
    /// Stable machine-readable code, for example `invalid_session_id`.
    pub error: &'static str,
    /// Human-readable reason.
    pub message: String,
}
