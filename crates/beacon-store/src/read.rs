//! Read queries, written once for both backends.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::{sql_query, QueryableByName, RunQueryDsl};

use crate::store::Pools;
use crate::{SessionRow, Store, StoreError, StoredEvent};

const EVENT_COLUMNS: &str = "e.id, e.public_id, s.token AS session_token, e.kind, e.url, \
     e.referrer, e.user_agent, e.label, e.metadata, e.occurred_at AS occurred_at_us, \
     e.received_at AS received_at_us FROM events e JOIN sessions s ON s.id = e.session_id";

const SESSION_COLUMNS: &str = "id, token, user_agent, referrer, entry_url, country, city, \
     first_seen AS first_seen_us, last_seen AS last_seen_us FROM sessions";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Rewrites `?` placeholders to PostgreSQL's `$1, $2, …`. The queries here
/// contain no `?` in literals.
fn pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
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

/// Runs the same query-building expression on whichever backend is
/// configured; `$sql` is written with `?` placeholders.
macro_rules! on_backend {
    ($store:expr, $sql:expr, |$q:ident, $conn:ident| $body:expr) => {
        match &*$store.pools {
            Pools::Pg(pool) => {
                let mut c = pool.get()?;
                let $conn = &mut *c;
                let $q = sql_query(pg_placeholders(&$sql));
                $body
            }
            Pools::Sqlite(pool) => {
                let mut c = pool.get()?;
                let $conn = &mut *c;
                let $q = sql_query($sql);
                $body
            }
        }
    };
}

impl Store {
    /// Every event of a session, in event-time order.
    pub fn session_events(&self, token: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} WHERE s.token = ? ORDER BY e.occurred_at, e.id");
        Ok(on_backend!(self, sql, |q, conn| q
            .bind::<Text, _>(token)
            .load(conn)?))
    }

    /// One session by token.
    pub fn session(&self, token: &str) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} WHERE token = ?");
        let mut rows: Vec<SessionRow> =
            on_backend!(self, sql, |q, conn| q.bind::<Text, _>(token).load(conn)?);
        Ok(rows.pop())
    }

    /// The `limit` most recent events (by event time, then id), newest first.
    pub fn recent_events(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} ORDER BY e.occurred_at DESC, e.id DESC LIMIT ?");
        Ok(on_backend!(self, sql, |q, conn| q
            .bind::<BigInt, _>(limit)
            .load(conn)?))
    }

    /// Events with event time at or after `since`, oldest first, at most
    /// `limit` (used to warm up live metrics after a restart).
    pub fn events_since(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} WHERE e.occurred_at >= ? ORDER BY e.occurred_at, e.id LIMIT ?"
        );
        Ok(on_backend!(self, sql, |q, conn| q
            .bind::<BigInt, _>(since.timestamp_micros())
            .bind::<BigInt, _>(limit)
            .load(conn)?))
    }

    /// Number of stored events.
    pub fn count_events(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) AS n FROM events".to_owned();
        let rows: Vec<Count> = on_backend!(self, sql, |q, conn| q.load(conn)?);
        Ok(rows.first().map_or(0, |c| c.n))
    }
}
