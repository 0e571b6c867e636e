//! `POST /track`: the pixel's ingestion endpoint.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use beacon_model::{parse_track_body, Rejection, RequestContext};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Serialize;
use std::time::Duration;

use crate::error::ApiError;
use crate::live::DropReason;
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
    let declared = declared_length(&req);
    let client = state.enrichment.client(&req);
    if let Some(refusal) = refusal_before_reading(&req, &state, client.ip, declared) {
        // The body is never parsed, but a declared one that arrives promptly
        // is read to its end and thrown away, so the client keeps its
        // connection (see `discard`).
        discard(payload, declared, state.request_timeout).await;
        return Err(refusal);
    }
    let limit = state.limits.max_body_bytes;
    // A client trickling its body is cut off rather than holding a worker's
    // connection slot for ever.
    let body = tokio::time::timeout(state.request_timeout, read_body(payload, declared, limit))
        .await
        .map_err(|_| ApiError::BodyTimeout)??;

    let received_at = state.clock.now();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let ctx = RequestContext {
        received_at,
        user_agent,
    };
    let parsed = parse_track_body(&body, &ctx, &state.limits)?;
    // Bots are answered as people are: nothing to learn for an evader.
    let accepted = parsed.events.len();
    let enriched = state
        .enrichment
        .enrich(&client, &req, parsed.events, received_at);
    state.dropped(DropReason::Bot, enriched.bots);
    if !enriched.events.is_empty() {
        state.ingestor.submit(enriched.events).await?;
    }
    Ok(HttpResponse::Ok().json(Accepted {
        ok: true,
        accepted,
        rejected: parsed.rejected,
    }))
}

/// The request's `Content-Length`, when it has a valid one.
fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The answer due before any of the body is read: an encoding we do not
/// inflate, a client over its rate, or a declared length over the limit.
fn refusal_before_reading(
    req: &HttpRequest,
    state: &AppState,
    client: std::net::IpAddr,
    declared: Option<u64>,
) -> Option<ApiError> {
    if let Some(encoding) = req.headers().get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("(not text)").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return Some(ApiError::UnsupportedEncoding(
                encoding.chars().take(32).collect(),
            ));
        }
    }
    if let Some(limiter) = &state.rate_limiter {
        if let Err(not_until) = limiter.check_key(&client) {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let retry_after = u32::try_from(wait.as_secs()).unwrap_or(u32::MAX).max(1);
            return Some(ApiError::RateLimited { retry_after });
        }
    }
    let limit = state.limits.max_body_bytes;
    if declared.is_some_and(|n| n > limit as u64) {
        return Some(ApiError::BodyTooLarge { limit });
    }
    None
}

/// Largest declared body that is read and thrown away after a refusal so
/// that the connection can carry the client's next request. Beyond it the
/// answer goes out at once and the connection is closed.
const DISCARD_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// How long the body may pause while it is thrown away. A client that
/// waits for the answer before sending the rest (the way `Expect:
/// 100-continue` clients do) gets it after this pause, with `Connection:
/// close`.
const DISCARD_IDLE: Duration = Duration::from_millis(200);

/// Reads and drops the body of a refused request: never buffered, never
/// parsed. HTTP/1.1 can only carry a next request on this connection once
/// the declared body has been consumed, and actix closes the connection
/// when a handler answers before that; so a body of at most
/// [`DISCARD_MAX_BYTES`] that keeps arriving (no pause over
/// [`DISCARD_IDLE`], all of it within `deadline`) is drained first. Anything
/// else is answered at once and the connection closes after the answer.
async fn discard(mut payload: web::Payload, declared: Option<u64>, deadline: Duration) {
    if declared.is_none_or(|n| n == 0 || n > DISCARD_MAX_BYTES) {
        // Chunked bodies are drained by actix itself after the answer.
        return;
    }
    let deadline = tokio::time::Instant::now() + deadline;
    loop {
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(DISCARD_IDLE);
        match tokio::time::timeout(wait, payload.next()).await {
            Ok(Some(Ok(_chunk))) => continue,
            // The end of the body, a broken body, a pause or the deadline.
            Ok(None) | Ok(Some(Err(_))) | Err(_) => return,
        }
    }
}

/// Reads at most `limit` bytes, refusing the body as soon as it grows past
/// the limit (a declared length over it was refused before reading).
async fn read_body(
    mut payload: web::Payload,
    declared: Option<u64>,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    let capacity = declared.map_or(1024, |n| usize::try_from(n).unwrap_or(limit));
    let mut body = BytesMut::with_capacity(capacity.min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
