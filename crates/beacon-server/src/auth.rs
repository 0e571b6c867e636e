//! Read access control: when a read token is configured, every read
//! endpoint requires it, as `Authorization: Bearer <token>` or, for
//! `EventSource` (which cannot send headers), as `?token=<token>`; or,
//! from the built-in dashboard, as its session cookie.
//!
//! Applied as a middleware on each read resource (inside CORS, so a
//! preflight is answered and a 401 still carries CORS headers). The token is
//! compared in constant time and is never logged: Beacon has no access log,
//! and no message includes a query string or an `Authorization` header.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest};

use crate::error::ApiError;
use crate::session_cookie;
use crate::state::AppState;

/// Lets the request through when no token is configured or the right one is
/// given; answers 401 with `WWW-Authenticate: Bearer` otherwise.
pub async fn require_read_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        authorized(req.request(), state)?;
    }
    next.call(req).await
}

/// Whether the request may read: no token is configured, or it carries the
/// token (bearer header, else `token` query parameter), or, carrying
/// neither, a valid dashboard session cookie ([`crate::session_cookie`]),
/// unexpired by the application's clock.
pub fn authorized(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(expected) = state.read_token.as_ref() else {
        return Ok(());
    };
    match presented(req) {
        Some(given) if constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized { invalid: true }),
        None => match req.cookie(session_cookie::NAME) {
            Some(cookie)
                if session_cookie::verify(expected.expose(), cookie.value(), state.clock.now()) =>
            {
                Ok(())
            }
            Some(_) => Err(ApiError::Unauthorized { invalid: true }),
            None => Err(ApiError::Unauthorized { invalid: false }),
        },
    }
}

/// The token the request carries: the `Authorization: Bearer` header first,
/// else the `token` query parameter.
fn presented(req: &HttpRequest) -> Option<String> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    web::Query::<TokenParam>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().token)
}

#[derive(serde::Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// Compares two byte strings in time that depends only on the length of
/// `expected` (the configured token), not on where they differ: every byte
/// is looked at and differences are OR-ed together, without an early exit.
/// The length of the token is not treated as secret. Hand-rolled (ten lines)
/// rather than a dependency; `black_box` keeps the optimizer from turning the
/// fold back into an early-exit comparison.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= std::hint::black_box(g ^ e);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_accepts_only_the_same_bytes() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        for wrong in [
            &b""[..],
            b"s3cre",
            b"s3cret!",
            b"S3cret",
            b"x3cret",
            b"s3creT",
        ] {
            assert!(!constant_time_eq(wrong, b"s3cret"), "{wrong:?}");
        }
    }
}
