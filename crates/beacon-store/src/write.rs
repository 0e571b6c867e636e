//! The write path: one transaction per group of events.

use std::collections::{BTreeMap, HashMap};

use beacon_model::{EventKind, NewEvent};
use diesel::connection::{Connection, SimpleConnection};
use diesel::pg::{Pg, PgConnection};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Text, Untyped};
use diesel::sqlite::SqliteConnection;
use diesel::{
    sql_query, ExecuteCopyFromDsl, Insertable, QueryResult, QueryableByName, RunQueryDsl,
};

use crate::known::{field, Known};
use crate::store::Pools;
use crate::{Store, StoreError, StoredEvent};

/// SQLite's default limit is 32,766 bound variables per statement; events
/// take 10 each, sessions 8.
const SQLITE_ROWS_PER_STATEMENT: usize = 1000;

/// What a batch says about one session: the upsert row.
struct SessionAgg<'a> {
    first_seen: i64,
    last_seen: i64,
    user_agent: Option<&'a str>,
    referrer: Option<&'a str>,
    entry_url: Option<&'a str>,
    country: Option<&'a str>,
    city: Option<&'a str>,
    /// Event time of the visit that gave entry url, country and city.
    first_visit: Option<i64>,
}

impl SessionAgg<'_> {
    /// The fields this batch has no value for ([`field`] bits).
    fn empty_fields(&self) -> u8 {
        [
            (self.user_agent, field::USER_AGENT),
            (self.referrer, field::REFERRER),
            (self.entry_url, field::ENTRY_URL),
            (self.country, field::COUNTRY),
            (self.city, field::CITY),
        ]
        .into_iter()
        .filter(|(value, _)| value.is_none())
        .fold(0, |bits, (_, bit)| bits | bit)
    }
}

/// Every [`field`] bit.
const ALL_FIELDS: u8 =
    field::USER_AGENT | field::REFERRER | field::ENTRY_URL | field::COUNTRY | field::CITY;

/// A session the batch must upsert, and the fields its row may still have
/// empty before the upsert ([`ALL_FIELDS`] when not known).
type Upsert<'s, 'a> = (&'s str, &'s SessionAgg<'a>, u8);

fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// Sessions of the batch, deduplicated and sorted by token: sorted so that
/// two writers upserting overlapping sessions lock rows in the same order
/// and cannot deadlock; deduplicated because PostgreSQL refuses an upsert
/// that touches one row twice.
fn sessions_of(events: &[NewEvent]) -> BTreeMap<&str, SessionAgg<'_>> {
    let mut sessions: BTreeMap<&str, SessionAgg<'_>> = BTreeMap::new();
    for e in events {
        let at = micros(e.occurred_at());
        let agg = sessions
            .entry(e.session().as_str())
            .or_insert_with(|| SessionAgg {
                first_seen: at,
                last_seen: at,
                user_agent: e.user_agent(),
                referrer: e.referrer(),
                entry_url: None,
                country: None,
                city: None,
                first_visit: None,
            });
        if at < agg.first_seen {
            agg.first_seen = at;
            agg.user_agent = e.user_agent().or(agg.user_agent);
            agg.referrer = e.referrer().or(agg.referrer);
        }
        agg.last_seen = agg.last_seen.max(at);
        if *e.kind() == EventKind::Visit && agg.first_visit.is_none_or(|v| at < v) {
            agg.first_visit = Some(at);
            agg.entry_url = e.url();
            agg.country = e.data_str("country");
            agg.city = e.data_str("city");
        }
    }
    sessions
}

#[derive(QueryableByName)]
struct SessionId {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    token: String,
}

#[derive(QueryableByName, Debug)]
struct InsertedEvent {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    session_id: i64,
    #[diesel(sql_type = Text)]
    public_id: String,
}

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
    first_seen: Vec<i64>,
    last_seen: Vec<i64>,
}

impl QueryFragment<Pg> for PgUpsertSessions<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO sessions (token, user_agent, referrer, entry_url, country, city, \
             first_seen, last_seen) SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.token)?;
        for column in [
            &self.user_agent,
            &self.referrer,
            &self.entry_url,
            &self.country,
            &self.city,
        ] {
            out.push_sql("::text[], ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(column)?;
        }
        out.push_sql("::text[], ");
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
             city = COALESCE(sessions.city, EXCLUDED.city) \
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

const SQLITE_UPSERT_TAIL: &str = "
ON CONFLICT (token) DO UPDATE SET
    first_seen = MIN(sessions.first_seen, excluded.first_seen),
    last_seen  = MAX(sessions.last_seen, excluded.last_seen),
    user_agent = COALESCE(sessions.user_agent, excluded.user_agent),
    referrer   = COALESCE(sessions.referrer, excluded.referrer),
    entry_url  = COALESCE(sessions.entry_url, excluded.entry_url),
    country    = COALESCE(sessions.country, excluded.country),
    city       = COALESCE(sessions.city, excluded.city)
RETURNING id, token";

/// What one committed batch inserted: the rows the database returned. Join
/// them with the batch's events through [`Inserted::stored_events`], which
/// can run after the commit has been acknowledged, off the writer's path.
#[derive(Debug)]
pub struct Inserted {
    session_ids: HashMap<String, i64>,
    /// Rows the duplicate-checking insert returned.
    rows: Vec<InsertedEvent>,
    /// `(index in the batch, id)` of the events written without a
    /// duplicate check (server-generated ids), in index order.
    copied: Vec<(usize, i64)>,
}

impl Inserted {
    /// Events that were new (not already stored).
    pub fn len(&self) -> usize {
        self.rows.len() + self.copied.len()
    }

    /// True when every event of the batch was already stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The new events of `events` (the batch given to [`Store::insert`]) as
    /// stored, in input order.
    pub fn stored_events(&self, events: &[NewEvent]) -> Vec<StoredEvent> {
        let mut out = Vec::with_capacity(self.len());
        out.extend(self.new_events(events).map(|(id, e)| StoredEvent {
            id,
            public_id: e.id().as_str().to_owned(),
            session_token: e.session().as_str().to_owned(),
            kind: e.kind().as_str().to_owned(),
            url: e.url().map(str::to_owned),
            referrer: e.referrer().map(str::to_owned),
            user_agent: e.user_agent().map(str::to_owned),
            label: e.label().map(str::to_owned),
            metadata: e.data_json().to_owned(),
            occurred_at_us: micros(e.occurred_at()),
            received_at_us: micros(e.received_at()),
        }));
        out
    }

    /// The new events of `events` (the batch given to [`Store::insert`]),
    /// borrowed, each with its `events.id`, in input order: what
    /// [`Inserted::stored_events`] copies, for a caller that only reads
    /// them.
    pub fn new_events<'e>(
        &'e self,
        events: &'e [NewEvent],
    ) -> impl Iterator<Item = (i64, &'e NewEvent)> + 'e {
        // Keys borrow the returned rows: no allocation per event to join them.
        let mut checked: HashMap<(i64, &str), i64> = self
            .rows
            .iter()
            .map(|r| ((r.session_id, r.public_id.as_str()), r.id))
            .collect();
        let mut copied = self.copied.iter().peekable();
        events.iter().enumerate().filter_map(move |(index, e)| {
            if let Some((_, id)) = copied.next_if(|(i, _)| *i == index) {
                return Some((*id, e));
            }
            let session_id = self
                .session_ids
                .get(e.session().as_str())
                .copied()
                .unwrap_or_default();
            // `remove`, so a duplicate within the batch maps to the one row.
            let id = checked.remove(&(session_id, e.id().as_str()))?;
            Some((id, e))
        })
    }
}

impl Store {
    /// Stores a group of events in one transaction and returns the events
    /// that were new (an event whose `(session, id)` is already stored is
    /// skipped, which makes retries idempotent), in input order.
    ///
    /// Either everything is committed or nothing is.
    pub fn insert_batch(&self, events: &[NewEvent]) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self.insert(events)?.stored_events(events))
    }

    /// [`Store::insert_batch`] without building the stored events: what the
    /// database returned, to be joined with `events` later if needed.
    pub fn insert(&self, events: &[NewEvent]) -> Result<Inserted, StoreError> {
        if events.is_empty() {
            return Ok(Inserted {
                session_ids: HashMap::new(),
                rows: vec![],
                copied: vec![],
            });
        }
        let sessions = sessions_of(events);
        // A known session with nothing to fill skips the upsert: its bounds
        // are moved by the rollup pass (see `known.rs`).
        let known = self.known.lookup(sessions.keys().copied());
        let mut ids = HashMap::with_capacity(sessions.len());
        let mut upserts: Vec<Upsert<'_, '_>> = Vec::new();
        for ((token, agg), known) in sessions.iter().zip(known) {
            match known {
                Some(k) if k.empty & !agg.empty_fields() == 0 => {
                    ids.insert((*token).to_owned(), k.id);
                }
                _ => upserts.push((token, agg, known.map_or(ALL_FIELDS, |k| k.empty))),
            }
        }
        let inserted = match &*self.pools {
            Pools::Pg(pool) => {
                let mut conn = pool.get()?;
                conn.transaction(|conn| pg_insert(conn, &upserts, ids, events))?
            }
            Pools::Sqlite(pool) => {
                let (_turn, mut conn) = self.sqlite_write_conn(pool)?;
                conn.immediate_transaction(|conn| sqlite_insert(conn, &upserts, ids, events))?
            }
        };
        // Committed: the upserted sessions exist with these ids.
        self.known
            .remember(upserts.iter().filter_map(|(token, agg, empty)| {
                let id = *inserted.session_ids.get(*token)?;
                let known = Known {
                    id,
                    empty: empty & agg.empty_fields(),
                };
                Some(((*token).to_owned(), known))
            }));
        Ok(inserted)
    }
}

/// On PostgreSQL, events whose id the server generated (all of the pixel's)
/// cannot be duplicates: they are written with one `COPY`, with ids taken
/// from the sequence beforehand, which costs PostgreSQL a fraction of an
/// `INSERT … ON CONFLICT` (no speculative insertion, one WAL record per
/// page of rows; docs/benchmarks.md). Events with a client id go through
/// the duplicate-checking insert.
///
/// `sessions` are the sessions to upsert (sorted by token), `ids` those of
/// the others.
fn pg_insert(
    conn: &mut PgConnection,
    sessions: &[Upsert<'_, '_>],
    mut ids: HashMap<String, i64>,
    events: &[NewEvent],
) -> Result<Inserted, diesel::result::Error> {
    // Held until commit: a rollup pass reads only ids no running insert can
    // fall below (see `rollup.rs`).
    conn.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock_shared({})",
        crate::rollup::INGEST_LOCK
    ))?;
    if !sessions.is_empty() {
        let upsert = PgUpsertSessions {
            token: sessions.iter().map(|(token, ..)| *token).collect(),
            user_agent: sessions.iter().map(|(_, s, _)| s.user_agent).collect(),
            referrer: sessions.iter().map(|(_, s, _)| s.referrer).collect(),
            entry_url: sessions.iter().map(|(_, s, _)| s.entry_url).collect(),
            country: sessions.iter().map(|(_, s, _)| s.country).collect(),
            city: sessions.iter().map(|(_, s, _)| s.city).collect(),
            first_seen: sessions.iter().map(|(_, s, _)| s.first_seen).collect(),
            last_seen: sessions.iter().map(|(_, s, _)| s.last_seen).collect(),
        };
        let rows: Vec<SessionId> = upsert.load(conn)?;
        ids.extend(rows.into_iter().map(|r| (r.token, r.id)));
    }
    let session_of = |e: &NewEvent| ids.get(e.session().as_str()).copied().unwrap_or_default();

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
            ));
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
                    session_id: session_of(e),
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

    let checked: Vec<&NewEvent> = events.iter().filter(|e| !e.id_is_generated()).collect();
    let rows = if checked.is_empty() {
        vec![]
    } else {
        let insert = PgInsertEvents {
            public_id: checked.iter().map(|e| e.id().as_str()).collect(),
            session_id: checked.iter().map(|e| session_of(e)).collect(),
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

fn sqlite_insert(
    conn: &mut SqliteConnection,
    sessions: &[Upsert<'_, '_>],
    mut ids: HashMap<String, i64>,
    events: &[NewEvent],
) -> Result<Inserted, diesel::result::Error> {
    for chunk in sessions.chunks(SQLITE_ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO sessions (token, user_agent, referrer, entry_url, country, city, \
             first_seen, last_seen) VALUES ",
        );
        push_placeholders(&mut sql, chunk.len(), 8);
        sql.push_str(SQLITE_UPSERT_TAIL);
        let mut query = sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>();
        for (token, s, _) in chunk {
            query = query
                .bind::<Text, _>(*token)
                .bind::<Nullable<Text>, _>(s.user_agent)
                .bind::<Nullable<Text>, _>(s.referrer)
                .bind::<Nullable<Text>, _>(s.entry_url)
                .bind::<Nullable<Text>, _>(s.country)
                .bind::<Nullable<Text>, _>(s.city)
                .bind::<BigInt, _>(s.first_seen)
                .bind::<BigInt, _>(s.last_seen);
        }
        let rows: Vec<SessionId> = query.load(conn)?;
        ids.extend(rows.into_iter().map(|r| (r.token, r.id)));
    }

    let mut inserted = Vec::with_capacity(events.len());
    for chunk in events.chunks(SQLITE_ROWS_PER_STATEMENT) {
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
                .bind::<BigInt, _>(ids.get(e.session().as_str()).copied().unwrap_or_default())
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
