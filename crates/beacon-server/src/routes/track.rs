//! `POST /track`: the pixel's ingestion endpoint.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use beacon_model::{parse_track_body, Rejection, RequestContext};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize)]
struct Accepted {
    ok: bool,
    accepted: usize,
    rejected: Vec<Rejection>,
}

/// Reads the body as JSON whatever its Content-Type (`navigator.sendBeacon`
/// sends `text/plain;charset=UTF-8`), stores the valid events, and answers
/// once they are committed.
pub async fn track(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(encoding) = req.headers().get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("(not text)").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(ApiError::UnsupportedEncoding(
                encoding.chars().take(32).collect(),
            ));
        }
    }
    if let (Some(limiter), Some(peer)) = (&state.rate_limiter, req.peer_addr()) {
        if let Err(not_until) = limiter.check_key(&peer.ip()) {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let retry_after = u32::try_from(wait.as_secs()).unwrap_or(u32::MAX).max(1);
            return Err(ApiError::RateLimited { retry_after });
        }
    }
    let limit = state.limits.max_body_bytes;
    // A client trickling its body is cut off rather than holding a worker's
    // connection slot for ever.
    let body = tokio::time::timeout(state.request_timeout, read_body(&req, payload, limit))
        .await
        .map_err(|_| ApiError::BodyTimeout)??;

    let received_at = chrono::Utc::now();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let ctx = RequestContext {
        received_at,
        user_agent,
    };
    let parsed = parse_track_body(&body, &ctx, &state.limits)?;
    let accepted = parsed.events.len();
    state.ingestor.submit(parsed.events).await?;
    Ok(HttpResponse::Ok().json(Accepted {
        ok: true,
        accepted,
        rejected: parsed.rejected,
    }))
}

/// Reads at most `limit` bytes; refuses a larger body from its
/// Content-Length before reading any of it, or as soon as it grows past the
/// limit.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
