//! `GET /sessions` and `GET /sessions/{token}`.

use actix_web::{web, HttpRequest, HttpResponse};
use beacon_model::Limits;
use beacon_store::{EventQuery, SessionQuery};
use chrono_tz::Tz;
use serde_json::json;

use super::params::{blocking, encode_cursor, EventView, Params, SessionView};
use crate::error::ApiError;
use crate::state::AppState;

/// Sessions, newest first (by first seen, then id), a page at a time.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let query = SessionQuery {
        from_us: p.time("from", Tz::UTC)?.map(|t| t.timestamp_micros()),
        to_us: p.time("to", Tz::UTC)?.map(|t| t.timestamp_micros()),
        country: p.country("country")?,
        device: p.text("device")?,
        browser: p.text("browser")?,
        referrer: p.text("referrer")?,
        before: p.cursor('s')?,
        limit: p.limit(50, 1000)?,
    };
    let limit = query.limit;
    let store = state.store.clone();
    let sessions = blocking(&state.health, move || store.list_sessions(&query)).await?;
    // A full page may have a next one; the cursor is the last row's key.
    let next_cursor = (sessions.len() as i64 == limit)
        .then(|| {
            sessions
                .last()
                .map(|s| encode_cursor('s', (s.session.first_seen_us, s.session.id)))
        })
        .flatten();
    let views: Vec<SessionView<'_>> = sessions.iter().map(SessionView::of).collect();
    Ok(HttpResponse::Ok().json(json!({"sessions": views, "next_cursor": next_cursor})))
}

/// One session with all its events, in event-time order.
pub async fn one(
    token: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let token = token.into_inner();
    if token.is_empty() || token.chars().count() > Limits::default().max_session_chars {
        return Err(ApiError::SessionNotFound);
    }
    let store = state.store.clone();
    let found = blocking(&state.health, move || {
        let Some(session) = store.session_summary(&token)? else {
            return Ok(None);
        };
        let events = store.list_events(&EventQuery {
            session: Some(token),
            limit: session.events.max(1) + 1000,
            ..EventQuery::default()
        })?;
        Ok(Some((session, events)))
    })
    .await?;
    let Some((session, events)) = found else {
        return Err(ApiError::SessionNotFound);
    };
    let events: Vec<EventView<'_>> = events.iter().map(EventView::of).collect();
    Ok(HttpResponse::Ok().json(json!({"session": SessionView::of(&session), "events": events})))
}
