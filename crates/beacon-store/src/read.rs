//! Read queries, written once for both backends.

use chrono::{DateTime, Utc};
use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel::sql_types::{BigInt, Binary, Double, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::{sql_query, QueryableByName, RunQueryDsl};

use crate::store::Pools;
use crate::{LiveRow, SessionRow, Store, StoreError, StoredEvent};

pub(crate) const EVENT_COLUMNS: &str =
    "e.id, e.public_id, s.token AS session_token, e.kind, e.url, \
     e.referrer, e.user_agent, e.label, e.metadata, e.occurred_at AS occurred_at_us, \
     e.received_at AS received_at_us FROM events e JOIN sessions s ON s.id = e.session_id";

/// What a [`LiveRow`] adds to [`EVENT_COLUMNS`]: the session's profile.
const LIVE_PROFILE_COLUMNS: &str = "s.visitor_id, s.country, s.device";

const SESSION_COLUMNS: &str = "id, token, user_agent, referrer, entry_url, country, region, \
     city, browser, browser_version, os, os_version, device, visitor_id, bot, \
     first_seen AS first_seen_us, last_seen AS last_seen_us FROM sessions";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A bind value of a read query.
#[derive(Clone)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
    Float(f64),
    NullableInt(Option<i64>),
    Bytes(Vec<u8>),
}

/// Rewrites `?` placeholders to PostgreSQL's `$1, $2, …`. The queries of
/// this crate contain no `?` in literals.
fn pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Binds `params` to a query in order, whichever the backend.
fn bind<'a, DB>(
    mut q: BoxedSqlQuery<'a, DB, SqlQuery>,
    params: &'a [Param],
) -> BoxedSqlQuery<'a, DB, SqlQuery>
where
    DB: Backend + HasSqlType<BigInt> + HasSqlType<Text> + HasSqlType<Double> + HasSqlType<Binary>,
    i64: ToSql<BigInt, DB>,
    [u8]: ToSql<Binary, DB>,
    str: ToSql<Text, DB>,
    f64: ToSql<Double, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
{
    for p in params {
        q = match p {
            Param::Int(v) => q.bind::<BigInt, _>(*v),
            Param::Text(s) => q.bind::<Text, _>(s.as_str()),
            Param::Float(v) => q.bind::<Double, _>(*v),
            Param::NullableInt(v) => q.bind::<Nullable<BigInt>, _>(*v),
            Param::Bytes(v) => q.bind::<Binary, _>(v.as_slice()),
        };
    }
    q
}

/// Runs `sql` (with `?` placeholders, none inside literals) on the
/// configured backend: every read query is written once for both.
pub(crate) fn load<T>(store: &Store, sql: &str, params: &[Param]) -> Result<Vec<T>, StoreError>
where
    T: QueryableByName<Pg> + QueryableByName<Sqlite> + 'static,
{
    match &*store.pools {
        Pools::Pg(pool) => {
            let mut conn = pool.get()?;
            let q = bind(sql_query(pg_placeholders(sql)).into_boxed::<Pg>(), params);
            Ok(q.load(&mut conn)?)
        }
        Pools::Sqlite(pool) => {
            let mut conn = pool.get()?;
            let q = bind(sql_query(sql).into_boxed::<Sqlite>(), params);
            Ok(q.load(&mut conn)?)
        }
    }
}

/// Runs the statement `sql` (with `?` placeholders, none inside literals)
/// on the configured backend, a SQLite one with this store's write turn
/// (see `Store::sqlite_write_conn`); returns the rows it changed.
pub(crate) fn execute(store: &Store, sql: &str, params: &[Param]) -> Result<usize, StoreError> {
    match &*store.pools {
        Pools::Pg(pool) => {
            let mut conn = pool.get()?;
            let q = bind(sql_query(pg_placeholders(sql)).into_boxed::<Pg>(), params);
            Ok(q.execute(&mut conn)?)
        }
        Pools::Sqlite(pool) => {
            let (_turn, mut conn) = store.sqlite_write_conn(pool)?;
            let q = bind(sql_query(sql).into_boxed::<Sqlite>(), params);
            Ok(q.execute(&mut conn)?)
        }
    }
}

/// A connection of either backend, inside a transaction: statements
/// written once for both (with `?` placeholders, none inside literals).
pub(crate) enum Conn<'c> {
    Pg(&'c mut diesel::pg::PgConnection),
    Sqlite(&'c mut diesel::sqlite::SqliteConnection),
}

impl Conn<'_> {
    /// Runs a query and returns its rows.
    pub(crate) fn load<T>(&mut self, sql: &str, params: &[Param]) -> Result<Vec<T>, StoreError>
    where
        T: QueryableByName<Pg> + QueryableByName<Sqlite> + 'static,
    {
        Ok(match self {
            Self::Pg(conn) => {
                bind(sql_query(pg_placeholders(sql)).into_boxed::<Pg>(), params).load(*conn)?
            }
            Self::Sqlite(conn) => {
                bind(sql_query(sql).into_boxed::<Sqlite>(), params).load(*conn)?
            }
        })
    }

    /// Runs a statement and returns the rows it changed.
    pub(crate) fn execute(&mut self, sql: &str, params: &[Param]) -> Result<usize, StoreError> {
        Ok(match self {
            Self::Pg(conn) => {
                bind(sql_query(pg_placeholders(sql)).into_boxed::<Pg>(), params).execute(*conn)?
            }
            Self::Sqlite(conn) => {
                bind(sql_query(sql).into_boxed::<Sqlite>(), params).execute(*conn)?
            }
        })
    }
}

impl Store {
    /// Runs `f` in one write transaction: on SQLite an immediate one, with
    /// this store's write turn (`Store::sqlite_write_conn`).
    pub(crate) fn write_transaction<T>(
        &self,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        use diesel::Connection;
        match &*self.pools {
            Pools::Pg(pool) => pool.get()?.transaction(|conn| f(&mut Conn::Pg(conn))),
            Pools::Sqlite(pool) => {
                let (_turn, mut conn) = self.sqlite_write_conn(pool)?;
                conn.immediate_transaction(|conn| f(&mut Conn::Sqlite(conn)))
            }
        }
    }

    /// Every event of a session, in event-time order.
    pub fn session_events(&self, token: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} WHERE s.token = ? ORDER BY e.occurred_at, e.id");
        load(self, &sql, &[Param::Text(token.to_owned())])
    }

    /// One session by token.
    pub fn session(&self, token: &str) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} WHERE token = ?");
        let mut rows: Vec<SessionRow> = load(self, &sql, &[Param::Text(token.to_owned())])?;
        Ok(rows.pop())
    }

    /// The `limit` most recent events (by event time, then id), newest first.
    pub fn recent_events(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} ORDER BY e.occurred_at DESC, e.id DESC LIMIT ?");
        load(self, &sql, &[Param::Int(limit)])
    }

    /// Events with event time at or after `since`, oldest first, at most
    /// `limit`, with their session's profile; events of bot sessions (kept
    /// with `--keep-bots`) are left out (used to warm up live metrics after
    /// a restart).
    pub fn live_events_since(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<LiveRow>, StoreError> {
        let sql = format!(
            "SELECT {LIVE_PROFILE_COLUMNS}, {EVENT_COLUMNS} WHERE NOT s.bot AND e.occurred_at >= ? \
             ORDER BY e.occurred_at, e.id LIMIT ?"
        );
        load(
            self,
            &sql,
            &[Param::Int(since.timestamp_micros()), Param::Int(limit)],
        )
    }

    /// The `limit` most recent events (by event time, then id), newest
    /// first, with their session's profile; events of bot sessions are left
    /// out.
    pub fn recent_live_events(&self, limit: i64) -> Result<Vec<LiveRow>, StoreError> {
        let sql = format!(
            "SELECT {LIVE_PROFILE_COLUMNS}, {EVENT_COLUMNS} WHERE NOT s.bot \
             ORDER BY e.occurred_at DESC, e.id DESC LIMIT ?"
        );
        load(self, &sql, &[Param::Int(limit)])
    }

    /// Number of stored events.
    pub fn count_events(&self) -> Result<i64, StoreError> {
        let rows: Vec<Count> = load(self, "SELECT COUNT(*) AS n FROM events", &[])?;
        Ok(rows.first().map_or(0, |c| c.n))
    }
}
