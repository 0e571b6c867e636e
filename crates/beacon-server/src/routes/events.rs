//! `GET /events`: events in a range, a page at a time as JSON, or the whole
//! range streamed as NDJSON or CSV.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use beacon_store::{EventQuery, Store, StoredEvent};
use bytes::Bytes;
use chrono_tz::Tz;
use serde_json::json;

use super::params::{blocking, encode_cursor, rfc3339, EventView, Params};
use crate::error::ApiError;
use crate::health::DatabaseHealth;
use crate::state::AppState;

/// Rows fetched per database round trip while exporting: a chunk is
/// serialized and sent before the next is read, so memory stays bounded
/// whatever the size of the export.
const EXPORT_CHUNK: i64 = 2000;

enum Format {
    Json,
    Ndjson,
    Csv,
}

/// Events, oldest first (by event time, then id).
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let format = match p.text("format")?.as_deref() {
        None | Some("json") => Format::Json,
        Some("ndjson") => Format::Ndjson,
        Some("csv") => Format::Csv,
        Some(_) => {
            return Err(ApiError::BadParameter {
                name: "format",
                message: "expected json, ndjson or csv".to_owned(),
            })
        }
    };
    let mut query = EventQuery {
        from_us: p.time("from", Tz::UTC)?.map(|t| t.timestamp_micros()),
        to_us: p.time("to", Tz::UTC)?.map(|t| t.timestamp_micros()),
        kind: p.text("type")?,
        session: p.text("session")?,
        url_prefix: p.text("url")?,
        label: p.text("label")?,
        after: p.cursor('e')?,
        limit: p.limit(100, 1000)?,
    };
    let store = state.store.clone();
    match format {
        Format::Json => {
            let limit = query.limit;
            let events = blocking(&state.health, move || store.list_events(&query)).await?;
            let next_cursor = (events.len() as i64 == limit)
                .then(|| events.last().map(cursor_of))
                .flatten();
            let views: Vec<EventView<'_>> = events.iter().map(EventView::of).collect();
            Ok(HttpResponse::Ok().json(json!({"events": views, "next_cursor": next_cursor})))
        }
        Format::Ndjson | Format::Csv => {
            let csv = matches!(format, Format::Csv);
            query.limit = EXPORT_CHUNK;
            // The first chunk is read before answering, so that a database
            // failure is still a proper 503 rather than a cut-off body.
            let first = {
                let (store, query) = (store.clone(), query.clone());
                blocking(&state.health, move || store.list_events(&query)).await?
            };
            let mut response = HttpResponse::Ok();
            if csv {
                response
                    .content_type("text/csv; charset=utf-8")
                    .insert_header((
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"events.csv\"",
                    ));
            } else {
                response.content_type("application/x-ndjson");
            }
            Ok(response.streaming(export(store, Arc::clone(&state.health), query, first, csv)))
        }
    }
}

fn cursor_of(e: &StoredEvent) -> String {
    encode_cursor('e', (e.occurred_at_us, e.id))
}

/// Pages through the range chunk by chunk, each chunk read on the blocking
/// pool and serialized into one body frame. A failure mid-way ends the body
/// with an error, which breaks the connection: a cut-off export cannot pass
/// for a complete one.
fn export(
    store: Store,
    health: Arc<DatabaseHealth>,
    query: EventQuery,
    first: Vec<StoredEvent>,
    csv: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, ApiError>> {
    struct State {
        store: Store,
        health: Arc<DatabaseHealth>,
        query: EventQuery,
        pending: Option<Vec<StoredEvent>>,
        header: bool,
        done: bool,
    }
    let state = State {
        store,
        health,
        query,
        pending: Some(first),
        header: csv,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        if st.header {
            st.header = false;
            return Some((Ok(Bytes::from_static(CSV_HEADER.as_bytes())), st));
        }
        if st.done {
            return None;
        }
        let chunk = match st.pending.take() {
            Some(chunk) => chunk,
            None => {
                let (store, query) = (st.store.clone(), st.query.clone());
                match blocking(&st.health, move || store.list_events(&query)).await {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        st.done = true;
                        log::warn!("event export cut off: {e}");
                        return Some((Err(e), st));
                    }
                }
            }
        };
        if (chunk.len() as i64) < st.query.limit {
            st.done = true;
        }
        let last = chunk.last()?;
        st.query.after = Some((last.occurred_at_us, last.id));
        let mut out = Vec::with_capacity(chunk.len() * 256);
        for e in &chunk {
            if csv {
                csv_line(&mut out, e);
            } else {
                // Serializing plain data into a Vec cannot fail.
                if serde_json::to_writer(&mut out, &EventView::of(e)).is_ok() {
                    out.push(b'\n');
                }
            }
        }
        Some((Ok(Bytes::from(out)), st))
    })
}

const CSV_HEADER: &str =
    "id,event_id,type,timestamp,received_at,session_token,url,referrer,label,user_agent,metadata\r\n";

/// One RFC 4180 record: fields holding a comma, quote, CR or LF are quoted,
/// quotes doubled; records end with CRLF. Values are written as stored
/// (no spreadsheet-formula neutralizing: import as text).
fn csv_line(out: &mut Vec<u8>, e: &StoredEvent) {
    let fields: [&str; 11] = [
        &e.id.to_string(),
        &e.public_id,
        &e.kind,
        &rfc3339(e.occurred_at()),
        &rfc3339(e.received_at()),
        &e.session_token,
        e.url.as_deref().unwrap_or(""),
        e.referrer.as_deref().unwrap_or(""),
        e.label.as_deref().unwrap_or(""),
        e.user_agent.as_deref().unwrap_or(""),
        &e.metadata,
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_field(out, field);
    }
    out.extend_from_slice(b"\r\n");
}

fn csv_field(out: &mut Vec<u8>, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push(b'"');
        out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("cr\r", "\"cr\r\""),
            ("{\"k\":1}", "\"{\"\"k\"\":1}\""),
        ];
        for (input, expected) in cases {
            let mut out = Vec::new();
            csv_field(&mut out, input);
            assert_eq!(
                String::from_utf8(out).unwrap_or_default(),
                expected,
                "{input:?}"
            );
        }
    }
}
