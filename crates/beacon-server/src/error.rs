//! The one HTTP error type: every failure is mapped to a status, a stable
//! `error` code and a message here, and logged here when it is the server's
//! fault.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use beacon_model::{ModelError, Rejection};
use beacon_store::StoreError;
use serde::Serialize;

use crate::buffer::AppendError;
use crate::ingest::IngestError;
use crate::intake::IntakeError;

/// Everything an endpoint can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body was refused as a whole.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The body is larger than the limit.
    #[error("body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read (the client broke off, or sent a
    /// malformed chunked encoding). The cause stays in the log: it is the
    /// HTTP layer's wording, not the client's business.
    #[error("the request body could not be read")]
    BodyRead(String),
    /// A `Content-Encoding` other than identity.
    #[error("Content-Encoding {0:?} is not supported; send the body uncompressed")]
    UnsupportedEncoding(String),
    /// The ingest queue is full.
    #[error("ingest queue is full, retry later")]
    Overloaded,
    /// The commit did not complete within the acknowledgement timeout.
    #[error("the database did not confirm the write in time, retry later")]
    AckTimeout,
    /// The server is shutting down.
    #[error("server is shutting down, retry later")]
    ShuttingDown,
    /// Buffered mode: Redis did not accept the events.
    #[error("the ingest buffer is unavailable, retry later")]
    BufferUnavailable,
    /// A storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The client sent its body too slowly.
    #[error("the request body was not received in time")]
    BodyTimeout,
    /// The client exceeded the per-IP rate limit.
    #[error("too many requests from this address, retry in {retry_after} s")]
    RateLimited {
        /// Seconds until a request will be allowed.
        retry_after: u32,
    },
    /// Too many open streams.
    #[error("too many open streams, retry later")]
    TooManyStreams,
    /// No such route.
    #[error("no such endpoint")]
    NotFound,
    /// The route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A read endpoint was called without the read token, or with a wrong
    /// one (which is never echoed or logged).
    #[error("{}", if *.invalid { "the read token is wrong" } else { "this endpoint needs the read token: Authorization: Bearer <token> or ?token=<token>" })]
    Unauthorized {
        /// True when a token was given but is wrong.
        invalid: bool,
    },
    /// A query parameter is malformed or out of range.
    #[error("invalid parameter {name}: {message}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The requested range is larger than the endpoint allows.
    #[error("range too large: at most {max} for this endpoint")]
    RangeTooLarge {
        /// The largest range, for humans (e.g. `31 days`).
        max: &'static str,
    },
    /// No session has this token.
    #[error("no such session")]
    SessionNotFound,
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Overloaded => Self::Overloaded,
            IngestError::AckTimeout => Self::AckTimeout,
            IngestError::ShuttingDown => Self::ShuttingDown,
            IngestError::Store(e) => Self::Store(e),
        }
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Direct(e) => e.into(),
            // The backlog at its limit is the buffered mode's full queue.
            IntakeError::Buffered(AppendError::Backlog) => Self::Overloaded,
            IntakeError::Buffered(AppendError::Unavailable) => Self::BufferUnavailable,
            IntakeError::Buffered(AppendError::ShuttingDown) => Self::ShuttingDown,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<&'a [Rejection]>,
}

impl ApiError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Model(e) => e.code(),
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyRead(_) => "invalid_body",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
            Self::Overloaded => "overloaded",
            Self::AckTimeout => "commit_timeout",
            Self::ShuttingDown => "shutting_down",
            Self::BufferUnavailable => "buffer_unavailable",
            Self::Store(e) if e.is_unavailable() => "database_unavailable",
            Self::Store(_) => "internal_error",
            Self::TooManyStreams => "too_many_streams",
            Self::BodyTimeout => "request_timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized { .. } => "unauthorized",
            Self::BadParameter { .. } => "invalid_parameter",
            Self::RangeTooLarge { .. } => "range_too_large",
            Self::SessionNotFound => "session_not_found",
        }
    }

    /// Seconds a client should wait before retrying, for 503s.
    fn retry_after(&self) -> Option<u32> {
        match self {
            Self::Overloaded | Self::TooManyStreams => Some(1),
            Self::AckTimeout | Self::ShuttingDown | Self::BufferUnavailable => Some(5),
            Self::Store(e) if e.is_unavailable() => Some(5),
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Model(ModelError::TooManyEvents { .. }) | Self::BodyTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Model(_)
            | Self::BodyRead(_)
            | Self::BadParameter { .. }
            | Self::RangeTooLarge { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::SessionNotFound => StatusCode::NOT_FOUND,
            Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded
            | Self::AckTimeout
            | Self::ShuttingDown
            | Self::BufferUnavailable
            | Self::TooManyStreams => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // Logged once, here. Client errors are the client's business and are
        // not logged (they would let anyone fill the log); messages never
        // carry payloads.
        match self {
            Self::Store(e) if !e.is_unavailable() => log::error!("storage failure: {e}"),
            // An outage is logged once, with its cause, where storage
            // calls are made (`crate::health`), not by every answer.
            Self::Store(_) => {}
            Self::AckTimeout => log::warn!("answering 503: commit not confirmed in time"),
            Self::BodyRead(cause) => log::debug!("a request body could not be read: {cause}"),
            _ => {}
        }
        let message = match self {
            // What happened, never how the inside looks: the driver's,
            // the pool's and the OS's wording names hosts, ports and paths.
            // The detail stays in the log.
            Self::Store(e) if e.is_unavailable() => {
                "the database is unavailable, retry later".to_owned()
            }
            Self::Store(_) => "internal storage error".to_owned(),
            other => other.to_string(),
        };
        let rejected = match self {
            Self::Model(ModelError::NoValidEvents { rejected }) => Some(rejected.as_slice()),
            _ => None,
        };
        let mut response = HttpResponse::build(status);
        if let Some(secs) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if matches!(self, Self::MethodNotAllowed) {
            response.insert_header((header::ALLOW, "POST, OPTIONS"));
        }
        if let Self::Unauthorized { invalid } = self {
            let challenge = if *invalid {
                r#"Bearer realm="beacon", error="invalid_token""#
            } else {
                r#"Bearer realm="beacon""#
            };
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        response.json(ErrorBody {
            error: self.code(),
            message,
            rejected,
        })
    }
}
