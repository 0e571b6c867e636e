//! `GET /stream`: live metrics over Server-Sent Events.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::live::{Frame, StreamGuard};
use crate::state::AppState;

/// Opens a stream: the `stream-open` frame and the latest snapshot at once,
/// then one snapshot per tick, each followed by a `: heartbeat` comment.
pub async fn stream(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let live = Arc::clone(&state.live);
    if live.is_closed() {
        return Err(ApiError::ShuttingDown);
    }
    if live.open_streams() >= state.stream_max {
        return Err(ApiError::TooManyStreams);
    }
    let guard = live.stream_guard();
    let (first, receiver) = live.open(state.clock.now());

    struct Client {
        first: Option<Bytes>,
        receiver: tokio::sync::broadcast::Receiver<Frame>,
        _guard: StreamGuard,
    }
    let client = Client {
        first: Some(first),
        receiver,
        _guard: guard,
    };
    // When the client goes away actix drops this stream, and with it the
    // receiver and the guard: the client is forgotten at once.
    let body = futures_util::stream::unfold(client, |mut client| async move {
        if let Some(first) = client.first.take() {
            return Some((Ok::<_, std::convert::Infallible>(first), client));
        }
        loop {
            match client.receiver.recv().await {
                Ok(Frame::Data(frame)) => return Some((Ok(frame), client)),
                Ok(Frame::Close) | Err(RecvError::Closed) => return None,
                // Fell behind: skip to the newest frames.
                Err(RecvError::Lagged(_)) => continue,
            }
        }
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
