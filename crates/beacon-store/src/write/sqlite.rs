//! The write path on SQLite: multi-row `VALUES`, chunked under SQLite's
//! bound-variable limit.

use std::collections::HashMap;

use beacon_model::NewEvent;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{sql_query, RunQueryDsl};

use super::{micros, session_id, Inserted, InsertedEvent, SessionId, Upsert};
use crate::StoreError;

/// SQLite's default limit is 32,766 bound variables per statement; events
/// take 10 each, sessions 16.
const ROWS_PER_STATEMENT: usize = 1000;

const UPSERT_TAIL: &str = "
ON CONFLICT (token) DO UPDATE SET
    first_seen = MIN(sessions.first_seen, excluded.first_seen),
    last_seen  = MAX(sessions.last_seen, excluded.last_seen),
    user_agent = COALESCE(sessions.user_agent, excluded.user_agent),
    referrer   = COALESCE(sessions.referrer, excluded.referrer),
    entry_url  = COALESCE(sessions.entry_url, excluded.entry_url),
    country    = COALESCE(sessions.country, excluded.country),
    city       = COALESCE(sessions.city, excluded.city),
    region     = COALESCE(sessions.region, excluded.region),
    browser    = COALESCE(sessions.browser, excluded.browser),
    browser_version = COALESCE(sessions.browser_version, excluded.browser_version),
    os         = COALESCE(sessions.os, excluded.os),
    os_version = COALESCE(sessions.os_version, excluded.os_version),
    device     = COALESCE(sessions.device, excluded.device),
    visitor_id = COALESCE(sessions.visitor_id, excluded.visitor_id)
RETURNING id, token";

/// Upserts `sessions` (sorted by token; `ids` has the others) and inserts
/// `events`, skipping those already stored.
pub(super) fn insert(
    conn: &mut SqliteConnection,
    sessions: &[Upsert<'_, '_>],
    mut ids: HashMap<String, i64>,
    events: &[NewEvent],
) -> Result<Inserted, StoreError> {
    for chunk in sessions.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO sessions (token, user_agent, referrer, entry_url, country, city, \
             region, browser, browser_version, os, os_version, device, visitor_id, bot, \
             first_seen, last_seen) VALUES ",
        );
        push_placeholders(&mut sql, chunk.len(), 16);
        sql.push_str(UPSERT_TAIL);
        let mut query = sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>();
        for Upsert { token, agg: s, .. } in chunk {
            let p = s.profile();
            query = query
                .bind::<Text, _>(*token)
                .bind::<Nullable<Text>, _>(s.user_agent)
                .bind::<Nullable<Text>, _>(s.referrer)
                .bind::<Nullable<Text>, _>(s.entry_url)
                .bind::<Nullable<Text>, _>(s.country())
                .bind::<Nullable<Text>, _>(s.city())
                .bind::<Nullable<Text>, _>(p.region.as_deref())
                .bind::<Nullable<Text>, _>(p.browser.as_deref())
                .bind::<Nullable<Text>, _>(p.browser_version.as_deref())
                .bind::<Nullable<Text>, _>(p.os.as_deref())
                .bind::<Nullable<Text>, _>(p.os_version.as_deref())
                .bind::<Nullable<Text>, _>(p.device.as_deref())
                .bind::<Nullable<BigInt>, _>(p.visitor_id)
                .bind::<Bool, _>(p.bot)
                .bind::<BigInt, _>(s.first_seen)
                .bind::<BigInt, _>(s.last_seen);
        }
        let rows: Vec<SessionId> = query.load(conn)?;
        ids.extend(rows.into_iter().map(|r| (r.token, r.id)));
    }

    let mut inserted = Vec::with_capacity(events.len());
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO events (public_id, session_id, kind, url, referrer, user_agent, label, \
             metadata, occurred_at, received_at) VALUES ",
        );
        push_placeholders(&mut sql, chunk.len(), 10);
        sql.push_str(
            " ON CONFLICT (session_id, public_id) DO NOTHING RETURNING id, session_id, public_id",
        );
        let mut query = sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>();
        for e in chunk {
            query = query
                .bind::<Text, _>(e.id().as_str())
                .bind::<BigInt, _>(session_id(&ids, e)?)
                .bind::<Text, _>(e.kind().as_str())
                .bind::<Nullable<Text>, _>(e.url())
                .bind::<Nullable<Text>, _>(e.referrer())
                .bind::<Nullable<Text>, _>(e.user_agent())
                .bind::<Nullable<Text>, _>(e.label())
                .bind::<Text, _>(e.data_json())
                .bind::<BigInt, _>(micros(e.occurred_at()))
                .bind::<BigInt, _>(micros(e.received_at()));
        }
        inserted.extend(query.load::<InsertedEvent>(conn)?);
    }
    Ok(Inserted {
        session_ids: ids,
        rows: inserted,
        copied: vec![],
    })
}

fn push_placeholders(sql: &mut String, rows: usize, columns: usize) {
    let row = format!("({})", vec!["?"; columns].join(", "));
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
}
