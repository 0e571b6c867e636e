//! A rollup pass and the rebuild on SQLite, where a write holds the
//! database's one write lock and every commit waits for it: a pass reads
//! and plans on a snapshot first, and takes the lock only to write, if the
//! watermark has not moved meanwhile. The plan's rows travel as one JSON
//! array per statement, expanded by `json_each`.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{sql_query, Connection, QueryResult, RunQueryDsl};
use serde_json::{json, Value};

use super::plan::{
    facts, pass_sessions_sql, plan, profiles, seen_profiles_sql, session_bounds, spans,
    visitors_of, widen, PassSession, PendingEvent, Plan, SeenProfileRow, SeenRow, SessionBounds,
    SESSION_ITEM_COLUMNS,
};
use super::{
    pass_end, Cut, Id, MaybeTime, EARLIEST_SQL, PENDING_COLUMNS, ROLL_UP_ALL_PASS, SETTLED_MAX_SQL,
    SET_WATERMARK_TO_MAX, WATERMARK_SQL,
};

const PENDING_SQL: &str = "WHERE id > ? AND id <= ?";
/// The pending events a rebuild folds in first ([`Cut::kept_before_us`]),
/// after [`PENDING_SQL`].
const KEPT_PENDING_SQL: &str =
    "AND (occurred_at < ? OR session_id IN (SELECT id FROM sessions WHERE first_seen < ?))";
const SET_WATERMARK: &str = "UPDATE rollup_watermark SET last_event_id = ? WHERE id = 1";

/// Widens `sessions.first_seen`/`last_seen` to the events being folded in,
/// as on PostgreSQL (one writer at a time: no lock order).
const MOVE_BOUNDS: &str = "UPDATE sessions SET \
     first_seen = MIN(sessions.first_seen, b.first_seen), \
     last_seen = MAX(sessions.last_seen, b.last_seen) \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS first_seen, value ->> 2 AS last_seen \
     FROM json_each(?)) AS b \
     WHERE b.id = sessions.id \
     AND (sessions.first_seen > b.first_seen OR sessions.last_seen < b.last_seen)";

/// The same for every stored event, before a rebuild.
const REBUILD_BOUNDS: &str = "UPDATE sessions SET \
     first_seen = MIN(sessions.first_seen, b.first_seen), \
     last_seen = MAX(sessions.last_seen, b.last_seen) \
     FROM (SELECT session_id, MIN(occurred_at) AS first_seen, MAX(occurred_at) AS last_seen \
     FROM events GROUP BY session_id) AS b \
     WHERE b.session_id = sessions.id \
     AND (sessions.first_seen > b.first_seen OR sessions.last_seen < b.last_seen)";

/// The changes a pass will write, computed from a read snapshot.
pub(super) struct Pass {
    /// The watermark the pass read; the write checks it has not moved.
    from: i64,
    /// The watermark after the pass.
    to: i64,
    pub(super) applied: usize,
    pub(super) caught_up: bool,
    /// The sessions of the events folded in, by id.
    bounds: Vec<SessionBounds>,
    plan: Plan,
}

/// Rows as a JSON array, one parameter for `json_each`.
fn json_rows(rows: impl Iterator<Item = Value>) -> String {
    Value::Array(rows.collect()).to_string()
}

/// The first half of a pass, in a read transaction (a snapshot; no write
/// lock, so commits go on meanwhile): the events past the watermark, what
/// the rollups already hold for their sessions, and the changes to make.
/// Every id in a snapshot is settled: SQLite has one writer at a time, and
/// its transaction's ids appear all at once. `None` when nothing is
/// pending.
pub(super) fn read_pass(conn: &mut SqliteConnection, limit: usize) -> QueryResult<Option<Pass>> {
    conn.transaction(|conn| {
        let settled = sql_query(SETTLED_MAX_SQL).get_result::<Id>(conn)?.id;
        let from = sql_query(WATERMARK_SQL).get_result::<Id>(conn)?.id;
        if from >= settled {
            return Ok(None);
        }
        let to = pass_end(from, settled, limit);
        let events: Vec<PendingEvent> = sql_query(format!(
            "SELECT {PENDING_COLUMNS} FROM events {PENDING_SQL}"
        ))
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .load(conn)?;
        let (bounds, plan) = fold(conn, &events)?;
        Ok(Some(Pass {
            from,
            to,
            applied: events.len(),
            caught_up: to == settled,
            bounds,
            plan,
        }))
    })
}

/// The sessions' bounds and the plan that fold `events` in, read (in the
/// caller's transaction) and computed without writing.
fn fold(
    conn: &mut SqliteConnection,
    events: &[PendingEvent],
) -> QueryResult<(Vec<SessionBounds>, Plan)> {
    let bounds = session_bounds(events);
    let ids = json_rows(bounds.iter().map(|b| json!(b.session_id)));
    let mut sessions: Vec<PassSession> = sql_query(pass_sessions_sql(
        "s.id IN (SELECT value FROM json_each(?))",
    ))
    .bind::<Text, _>(&ids)
    .load(conn)?;
    widen(&mut sessions, &bounds);
    let profiles = profiles(&sessions);
    let facts = facts(events, &profiles);
    let (seen, seen_profiles): (Vec<SeenRow>, Vec<SeenProfileRow>) = if facts.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let visitors = json_rows(visitors_of(&facts).into_iter().map(|v| json!(v)));
        let seen = sql_query(
            "SELECT visitor, dim, item, quarter FROM rollup_seen \
             WHERE visitor IN (SELECT value FROM json_each(?))",
        )
        .bind::<Text, _>(&visitors)
        .load(conn)?;
        let seen_profiles = sql_query(seen_profiles_sql(
            "visitor IN (SELECT value FROM json_each(?))",
        ))
        .bind::<Text, _>(&visitors)
        .load(conn)?;
        (seen, seen_profiles)
    };
    let plan = plan(&facts, seen, seen_profiles, spans(&sessions));
    Ok((bounds, plan))
}

/// The second half, under the write lock: writes the pass unless another
/// pass (of this process or another) moved the watermark since the read,
/// in which case it writes nothing and returns false. A session whose
/// bounds a writer widened in between (for events past this pass) is
/// left right by [`MOVE_BOUNDS`]; its rollup contribution is corrected by
/// the pass that folds those events, as on PostgreSQL.
pub(super) fn write_pass(conn: &mut SqliteConnection, pass: &Pass) -> QueryResult<bool> {
    conn.immediate_transaction(|conn| write_pass_locked(conn, pass))
}

/// Folds every pending event into the rollups, inside a transaction that
/// already holds the write lock: what `beacon forget` does first, so that
/// a pass that read a forgotten session's events before finds the
/// watermark moved and writes nothing.
pub(super) fn fold_pending(conn: &mut SqliteConnection) -> QueryResult<()> {
    while let Some(pass) = read_pass(conn, 1000)? {
        write_pass_locked(conn, &pass)?;
    }
    Ok(())
}

/// [`write_pass`] inside a transaction that holds the write lock.
fn write_pass_locked(conn: &mut SqliteConnection, pass: &Pass) -> QueryResult<bool> {
    let now = sql_query(WATERMARK_SQL).get_result::<Id>(conn)?.id;
    if now != pass.from {
        return Ok(false);
    }
    if !pass.bounds.is_empty() {
        let bounds = pass
            .bounds
            .iter()
            .map(|b| json!([b.session_id, b.first, b.last]));
        sql_query(MOVE_BOUNDS)
            .bind::<Text, _>(json_rows(bounds))
            .execute(conn)?;
    }
    write_plan(conn, &pass.plan)?;
    sql_query(SET_WATERMARK)
        .bind::<BigInt, _>(pass.to)
        .execute(conn)?;
    Ok(true)
}

/// Writes a plan: rows travel as one JSON array per statement, so no
/// statement nears the bound-variable limit whatever the number of rows.
pub(super) fn write_plan(conn: &mut SqliteConnection, plan: &Plan) -> QueryResult<()> {
    if !plan.seen.is_empty() {
        let rows = plan
            .seen
            .iter()
            .map(|r| json!([r.visitor, r.dim.stored(), r.item, r.quarter]));
        sql_query(
            "INSERT INTO rollup_seen (visitor, dim, item, quarter) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?) \
             WHERE true ON CONFLICT DO NOTHING",
        )
        .bind::<Text, _>(json_rows(rows))
        .execute(conn)?;
    }
    if !plan.seen_profiles.is_empty() {
        let rows = plan.seen_profiles.iter().map(|r| {
            let [country, region, city, browser, os, device] = &r.items.0;
            json!([r.visitor, r.quarter, country, region, city, browser, os, device])
        });
        sql_query(format!(
            "INSERT INTO rollup_seen_profile (visitor, quarter, {SESSION_ITEM_COLUMNS}) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
             value ->> 5, value ->> 6, value ->> 7 FROM json_each(?) \
             WHERE true ON CONFLICT DO NOTHING"
        ))
        .bind::<Text, _>(json_rows(rows))
        .execute(conn)?;
    }
    if !plan.counts.is_empty() {
        let rows = plan
            .counts
            .iter()
            .map(|(k, n)| json!([k.grain.stored(), k.dim.stored(), k.unit, k.item, n]));
        sql_query(
            "INSERT INTO rollup_counts (grain, dim, unit, item, n) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
             FROM json_each(?) WHERE true ON CONFLICT (grain, dim, unit, item) \
             DO UPDATE SET n = rollup_counts.n + excluded.n",
        )
        .bind::<Text, _>(json_rows(rows))
        .execute(conn)?;
    }
    if !plan.visitors.is_empty() {
        let rows = plan
            .visitors
            .iter()
            .map(|(k, n)| json!([k.grain.stored(), k.dim.stored(), k.unit, k.item, k.prev, n]));
        sql_query(
            "INSERT INTO rollup_visitors (grain, dim, unit, item, prev, n) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
             value ->> 5 FROM json_each(?) WHERE true \
             ON CONFLICT (grain, dim, unit, item, prev) \
             DO UPDATE SET n = rollup_visitors.n + excluded.n",
        )
        .bind::<Text, _>(json_rows(rows))
        .execute(conn)?;
    }
    if !plan.stats.is_empty() {
        let rows = plan.stats.iter().map(|(q, d)| {
            json!([
                q,
                d.events,
                d.page_views,
                d.clicks,
                d.sessions,
                d.duration_us
            ])
        });
        sql_query(
            "INSERT INTO rollup_stats (quarter, events, page_views, clicks, sessions, duration_us) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
             value ->> 5 FROM json_each(?) WHERE true ON CONFLICT (quarter) DO UPDATE SET \
             events = rollup_stats.events + excluded.events, \
             page_views = rollup_stats.page_views + excluded.page_views, \
             clicks = rollup_stats.clicks + excluded.clicks, \
             sessions = rollup_stats.sessions + excluded.sessions, \
             duration_us = rollup_stats.duration_us + excluded.duration_us",
        )
        .bind::<Text, _>(json_rows(rows))
        .execute(conn)?;
    }
    if !plan.sessions.is_empty() {
        let rows = plan
            .sessions
            .iter()
            .map(|(id, s)| json!([id, s.quarter, s.duration_us, s.events, s.page_views]));
        sql_query(
            "INSERT INTO rollup_session (session_id, quarter, duration_us, events, page_views) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
             FROM json_each(?) WHERE true ON CONFLICT (session_id) DO UPDATE SET \
             quarter = excluded.quarter, duration_us = excluded.duration_us, \
             events = rollup_session.events + excluded.events, \
             page_views = rollup_session.page_views + excluded.page_views",
        )
        .bind::<Text, _>(json_rows(rows))
        .execute(conn)?;
    }
    Ok(())
}

/// Recomputes the rollups of the retained range (see
/// `Store::rebuild_rollups`), on a connection that holds this process's
/// write turn.
pub(super) fn rebuild(conn: &mut SqliteConnection) -> QueryResult<()> {
    conn.immediate_transaction(|conn| {
        conn.batch_execute(REBUILD_BOUNDS)?;
        if let Some(earliest) = sql_query(EARLIEST_SQL).get_result::<MaybeTime>(conn)?.at {
            let cut = Cut::after(earliest);
            let settled = sql_query(SETTLED_MAX_SQL).get_result::<Id>(conn)?.id;
            let mut at = sql_query(WATERMARK_SQL).get_result::<Id>(conn)?.id;
            while at < settled {
                let to = pass_end(at, settled, ROLL_UP_ALL_PASS);
                let events: Vec<PendingEvent> = sql_query(format!(
                    "SELECT {PENDING_COLUMNS} FROM events {PENDING_SQL} {KEPT_PENDING_SQL}"
                ))
                .bind::<BigInt, _>(at)
                .bind::<BigInt, _>(to)
                .bind::<BigInt, _>(cut.kept_before_us())
                .bind::<BigInt, _>(cut.start_us())
                .load(conn)?;
                // The bounds were moved for every event above.
                let (_, plan) = fold(conn, &events)?;
                write_plan(conn, &plan)?;
                at = to;
            }
            conn.batch_execute(&cut.rebuild_sql())?;
        }
        conn.batch_execute(SET_WATERMARK_TO_MAX)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::store::Pools;
    use crate::testing::TestDatabase;
    use crate::Store;

    fn events(session: &str, seconds: &[u32]) -> Vec<beacon_model::NewEvent> {
        let batch: Vec<String> = seconds
            .iter()
            .map(|s| {
                format!(
                    r#"{{"type":"visit","sessionId":"{session}","url":"https://site/{s}","timestamp":"2026-11-30T10:00:{s:02}Z"}}"#
                )
            })
            .collect();
        let received = chrono::DateTime::parse_from_rfc3339("2026-11-30T10:01:00Z").unwrap();
        crate::testing::parse_events(
            &format!(r#"{{"batch":[{}]}}"#, batch.join(",")),
            received.to_utc(),
            None,
        )
    }

    fn sqlite_conn(
        store: &Store,
    ) -> diesel::r2d2::PooledConnection<diesel::r2d2::ConnectionManager<SqliteConnection>> {
        match &*store.pools {
            Pools::Sqlite(pool) => pool.get().unwrap(),
            Pools::Pg(_) => unreachable!("a SQLite store"),
        }
    }

    /// The rollups equal what a rebuild computes from the events.
    fn assert_exact(store: &Store) {
        let passes = store.rollup_fingerprint().unwrap();
        store.rebuild_rollups().unwrap();
        assert_eq!(passes, store.rollup_fingerprint().unwrap());
    }

    /// On SQLite a pass reads without the write lock and writes under it.
    /// A pass that another pass (here: another process's store) overtook
    /// between the two must write nothing, or it would count its events
    /// twice.
    #[test]
    fn a_sqlite_pass_overtaken_between_read_and_write_writes_nothing() {
        let db = TestDatabase::sqlite();
        let (a, b) = (db.store(), db.store());
        a.insert_batch(&events("s", &[1, 2])).unwrap();
        let mut conn = sqlite_conn(&a);
        let pass = read_pass(&mut conn, 100).unwrap().expect("events pending");
        assert_eq!(pass.applied, 2);
        assert_eq!(b.roll_up_all().unwrap(), 2);
        assert!(
            !write_pass(&mut conn, &pass).unwrap(),
            "the overtaken pass reports that it wrote nothing"
        );
        drop(conn);
        assert_eq!(a.roll_up(100).unwrap().applied, 0);
        assert_exact(&a);
    }

    /// A writer may widen a session's bounds between a pass's read and its
    /// write (for events past the pass). The pass that folds those events
    /// leaves the session's rollups exact.
    #[test]
    fn a_session_widened_between_read_and_write_ends_exact() {
        let db = TestDatabase::sqlite();
        let (a, b) = (db.store(), db.store());
        a.insert_batch(&events("s", &[10])).unwrap();
        a.roll_up_all().unwrap();
        // Known to `a`: no upsert; the pass moves the bounds.
        a.insert_batch(&events("s", &[20])).unwrap();
        let mut conn = sqlite_conn(&a);
        let pass = read_pass(&mut conn, 100).unwrap().expect("events pending");
        // Unknown to `b`: its upsert widens the bounds at once.
        b.insert_batch(&events("s", &[30])).unwrap();
        assert!(write_pass(&mut conn, &pass).unwrap());
        drop(conn);
        let session = a.session("s").unwrap().unwrap();
        assert_eq!(
            (session.last_seen() - session.first_seen()).num_seconds(),
            20
        );
        assert_eq!(a.roll_up_all().unwrap(), 1);
        assert_exact(&a);
    }
}
