//! The write path on PostgreSQL: the session upsert and the duplicate-checking
//! event insert bind one array per column (a fixed statement text, prepared
//! once per connection), and events whose id the server generated go in
//! with one binary `COPY`.

use std::collections::HashMap;

use beacon_model::{NewEvent, VisitorProfile};
use diesel::connection::SimpleConnection;
use diesel::pg::{Pg, PgConnection};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Untyped};
use diesel::{ExecuteCopyFromDsl, Insertable, QueryResult, QueryableByName, RunQueryDsl};

use super::{micros, session_id, Inserted, SessionId, Upsert};
use crate::StoreError;

/// The advisory lock that every insert transaction holds in shared mode,
/// and a rollup pass briefly in exclusive mode to find the largest settled
/// id (see the rollups' module docs). Anything else that inserts into
/// `events` must hold it too (`SELECT pg_advisory_xact_lock_shared(INGEST_LOCK)`).
pub const INGEST_LOCK: i64 = 0x6265_6163_6f6e; // "beacon"

/// The session upsert of a PostgreSQL batch: one row per session, as
/// arrays expanded by `unnest`.
///
/// Unlike `sql_query`, which diesel never caches, this statement has a fixed
/// text whatever the batch size, so diesel prepares it once per connection
/// and PostgreSQL skips parsing and planning it for every batch.
struct PgUpsertSessions<'a> {
    token: Vec<&'a str>,
    user_agent: Vec<Option<&'a str>>,
    referrer: Vec<Option<&'a str>>,
    entry_url: Vec<Option<&'a str>>,
    country: Vec<Option<&'a str>>,
    city: Vec<Option<&'a str>>,
    region: Vec<Option<&'a str>>,
    browser: Vec<Option<&'a str>>,
    browser_version: Vec<Option<&'a str>>,
    os: Vec<Option<&'a str>>,
    os_version: Vec<Option<&'a str>>,
    device: Vec<Option<&'a str>>,
    visitor_id: Vec<Option<i64>>,
    bot: Vec<bool>,
    first_seen: Vec<i64>,
    last_seen: Vec<i64>,
}

impl QueryFragment<Pg> for PgUpsertSessions<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO sessions (token, user_agent, referrer, entry_url, country, city, \
             region, browser, browser_version, os, os_version, device, visitor_id, bot, \
             first_seen, last_seen) SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.token)?;
        for column in [
            &self.user_agent,
            &self.referrer,
            &self.entry_url,
            &self.country,
            &self.city,
            &self.region,
            &self.browser,
            &self.browser_version,
            &self.os,
            &self.os_version,
            &self.device,
        ] {
            out.push_sql("::text[], ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(column)?;
        }
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.visitor_id)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Bool>, _>(&self.bot)?;
        out.push_sql("::boolean[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.first_seen)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.last_seen)?;
        out.push_sql(
            "::bigint[]) ON CONFLICT (token) DO UPDATE SET \
             first_seen = LEAST(sessions.first_seen, EXCLUDED.first_seen), \
             last_seen = GREATEST(sessions.last_seen, EXCLUDED.last_seen), \
             user_agent = COALESCE(sessions.user_agent, EXCLUDED.user_agent), \
             referrer = COALESCE(sessions.referrer, EXCLUDED.referrer), \
             entry_url = COALESCE(sessions.entry_url, EXCLUDED.entry_url), \
             country = COALESCE(sessions.country, EXCLUDED.country), \
             city = COALESCE(sessions.city, EXCLUDED.city), \
             region = COALESCE(sessions.region, EXCLUDED.region), \
             browser = COALESCE(sessions.browser, EXCLUDED.browser), \
             browser_version = COALESCE(sessions.browser_version, EXCLUDED.browser_version), \
             os = COALESCE(sessions.os, EXCLUDED.os), \
             os_version = COALESCE(sessions.os_version, EXCLUDED.os_version), \
             device = COALESCE(sessions.device, EXCLUDED.device), \
             visitor_id = COALESCE(sessions.visitor_id, EXCLUDED.visitor_id) \
             RETURNING id, token",
        );
        Ok(())
    }
}

/// The event insert of a PostgreSQL batch, prepared once per connection
/// like [`PgUpsertSessions`].
struct PgInsertEvents<'a> {
    public_id: Vec<&'a str>,
    session_id: Vec<i64>,
    kind: Vec<&'a str>,
    url: Vec<Option<&'a str>>,
    referrer: Vec<Option<&'a str>>,
    user_agent: Vec<Option<&'a str>>,
    label: Vec<Option<&'a str>>,
    metadata: Vec<&'a str>,
    occurred_at: Vec<i64>,
    received_at: Vec<i64>,
}

impl QueryFragment<Pg> for PgInsertEvents<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO events (public_id, session_id, kind, url, referrer, user_agent, label, \
             metadata, occurred_at, received_at) SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.public_id)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.session_id)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Text>, _>(&self.kind)?;
        for column in [&self.url, &self.referrer, &self.user_agent, &self.label] {
            out.push_sql("::text[], ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(column)?;
        }
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.metadata)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.occurred_at)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.received_at)?;
        out.push_sql(
            "::bigint[]) ON CONFLICT (session_id, public_id) DO NOTHING \
             RETURNING id, session_id, public_id",
        );
        Ok(())
    }
}

/// One profile column of the sessions to upsert.
fn profiles<'a, T>(
    sessions: &[Upsert<'_, 'a>],
    column: impl Fn(&'a VisitorProfile) -> T,
) -> Vec<T> {
    sessions.iter().map(|u| column(u.agg.profile())).collect()
}

/// The ids of `n` new events, taken from the identity sequence of
/// `events.id`: what `COPY` writes for the events whose public id the
/// server generated. Prepared once per connection like [`PgUpsertSessions`].
struct PgNextEventIds {
    n: i64,
}

impl QueryFragment<Pg> for PgNextEventIds {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT nextval('events_id_seq') AS id FROM generate_series(1, ");
        out.push_bind_param::<BigInt, _>(&self.n)?;
        out.push_sql(")");
        Ok(())
    }
}

#[derive(QueryableByName)]
struct NextId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

mod schema {
    diesel::table! {
        events (id) {
            id -> BigInt,
            public_id -> Text,
            session_id -> BigInt,
            kind -> Text,
            url -> Nullable<Text>,
            referrer -> Nullable<Text>,
            user_agent -> Nullable<Text>,
            label -> Nullable<Text>,
            metadata -> Text,
            occurred_at -> BigInt,
            received_at -> BigInt,
        }
    }
}

/// A row of the `COPY` into `events` (binary format, written by diesel).
/// `id` is given: `COPY` writes it although the column is `GENERATED
/// ALWAYS`.
#[derive(Insertable)]
#[diesel(table_name = schema::events, treat_none_as_default_value = false)]
struct CopiedEvent<'a> {
    id: i64,
    public_id: &'a str,
    session_id: i64,
    kind: &'a str,
    url: Option<&'a str>,
    referrer: Option<&'a str>,
    user_agent: Option<&'a str>,
    label: Option<&'a str>,
    metadata: &'a str,
    occurred_at: i64,
    received_at: i64,
}

/// The statements are cached by their SQL text (diesel's dynamic cache
/// key): their text never depends on the batch.
macro_rules! cached_statement {
    ($($t:ident),*) => {$(
        impl QueryId for $t<'_> {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }
        impl Query for $t<'_> {
            type SqlType = Untyped;
        }
        impl RunQueryDsl<PgConnection> for $t<'_> {}
    )*};
}
cached_statement!(PgUpsertSessions, PgInsertEvents);

impl QueryId for PgNextEventIds {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}
impl Query for PgNextEventIds {
    type SqlType = Untyped;
}
impl RunQueryDsl<PgConnection> for PgNextEventIds {}

/// On PostgreSQL, events whose id the server generated (all of the pixel's)
/// cannot be duplicates: they are written with one `COPY`, with ids taken
/// from the sequence beforehand, which costs PostgreSQL a fraction of an
/// `INSERT … ON CONFLICT` (no speculative insertion, one WAL record per
/// page of rows; docs/architecture.md, "Idempotency per session, checked
/// only where a duplicate is possible"). Events with a client id go through
/// the duplicate-checking insert.
///
/// `sessions` are the sessions to upsert (sorted by token), `ids` those of
/// the others.
pub(super) fn insert(
    conn: &mut PgConnection,
    sessions: &[Upsert<'_, '_>],
    mut ids: HashMap<String, i64>,
    events: &[NewEvent],
) -> Result<Inserted, StoreError> {
    // Held until commit: a rollup pass reads only ids no running insert can
    // fall below (see [`INGEST_LOCK`]).
    conn.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock_shared({INGEST_LOCK})"
    ))?;
    if !sessions.is_empty() {
        let upsert = PgUpsertSessions {
            token: sessions.iter().map(|u| u.token).collect(),
            user_agent: sessions.iter().map(|u| u.agg.user_agent).collect(),
            referrer: sessions.iter().map(|u| u.agg.referrer).collect(),
            entry_url: sessions.iter().map(|u| u.agg.entry_url).collect(),
            country: sessions.iter().map(|u| u.agg.country()).collect(),
            city: sessions.iter().map(|u| u.agg.city()).collect(),
            region: profiles(sessions, |p| p.region.as_deref()),
            browser: profiles(sessions, |p| p.browser.as_deref()),
            browser_version: profiles(sessions, |p| p.browser_version.as_deref()),
            os: profiles(sessions, |p| p.os.as_deref()),
            os_version: profiles(sessions, |p| p.os_version.as_deref()),
            device: profiles(sessions, |p| p.device.as_deref()),
            visitor_id: profiles(sessions, |p| p.visitor_id),
            bot: profiles(sessions, |p| p.bot),
            first_seen: sessions.iter().map(|u| u.agg.first_seen).collect(),
            last_seen: sessions.iter().map(|u| u.agg.last_seen).collect(),
        };
        let rows: Vec<SessionId> = upsert.load(conn)?;
        ids.extend(rows.into_iter().map(|r| (r.token, r.id)));
    }
    // Each event's session id, in batch order.
    let session_ids = events
        .iter()
        .map(|e| session_id(&ids, e))
        .collect::<Result<Vec<i64>, _>>()?;

    let generated = events.iter().filter(|e| e.id_is_generated()).count();
    let mut copied = Vec::with_capacity(generated);
    if generated > 0 {
        let mut next: Vec<NextId> = PgNextEventIds {
            n: generated as i64,
        }
        .load(conn)?;
        if next.len() != generated {
            // Never expected; zipping a short list would drop events.
            return Err(diesel::result::Error::QueryBuilderError(
                format!("asked for {generated} event ids, got {}", next.len()).into(),
            )
            .into());
        }
        // Ascending ids in batch order, as an INSERT would give them.
        next.sort_unstable_by_key(|r| r.id);
        let rows: Vec<CopiedEvent<'_>> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.id_is_generated())
            .zip(&next)
            .map(|((index, e), next)| {
                copied.push((index, next.id));
                CopiedEvent {
                    id: next.id,
                    public_id: e.id().as_str(),
                    session_id: session_ids[index],
                    kind: e.kind().as_str(),
                    url: e.url(),
                    referrer: e.referrer(),
                    user_agent: e.user_agent(),
                    label: e.label(),
                    metadata: e.data_json(),
                    occurred_at: micros(e.occurred_at()),
                    received_at: micros(e.received_at()),
                }
            })
            .collect();
        diesel::copy_from(schema::events::table)
            .from_insertable(rows)
            .execute(conn)?;
    }

    let (checked, checked_sessions): (Vec<&NewEvent>, Vec<i64>) = events
        .iter()
        .zip(&session_ids)
        .filter(|(e, _)| !e.id_is_generated())
        .unzip();
    let rows = if checked.is_empty() {
        vec![]
    } else {
        let insert = PgInsertEvents {
            public_id: checked.iter().map(|e| e.id().as_str()).collect(),
            session_id: checked_sessions,
            kind: checked.iter().map(|e| e.kind().as_str()).collect(),
            url: checked.iter().map(|e| e.url()).collect(),
            referrer: checked.iter().map(|e| e.referrer()).collect(),
            user_agent: checked.iter().map(|e| e.user_agent()).collect(),
            label: checked.iter().map(|e| e.label()).collect(),
            metadata: checked.iter().map(|e| e.data_json()).collect(),
            occurred_at: checked.iter().map(|e| micros(e.occurred_at())).collect(),
            received_at: checked.iter().map(|e| micros(e.received_at())).collect(),
        };
        insert.load(conn)?
    };
    Ok(Inserted {
        session_ids: ids,
        rows,
        copied,
    })
}
