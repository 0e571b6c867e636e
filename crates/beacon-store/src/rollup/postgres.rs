//! A rollup pass and the rebuild on PostgreSQL: the watermark row is locked
//! for the whole pass, so passes run one at a time; the plan's rows travel
//! as one array per column, expanded by `unnest`.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, SmallInt, Text};
use diesel::{sql_query, Connection, QueryResult, RunQueryDsl};

use super::plan::{
    facts, pass_sessions_sql, plan, profiles, seen_profiles_sql, session_bounds, spans,
    visitors_of, PassSession, PendingEvent, Plan, SeenProfileRow, SeenRow, SESSION_ITEM_COLUMNS,
};
use super::{
    pass_end, Cut, Id, MaybeTime, RollupProgress, EARLIEST_SQL, PENDING_COLUMNS, ROLL_UP_ALL_PASS,
    SETTLED_MAX_SQL, SET_WATERMARK_TO_MAX, WATERMARK_SQL,
};
use crate::write::INGEST_LOCK;

const PENDING_SQL: &str = "WHERE id > $1 AND id <= $2";
/// The pending events a rebuild folds in first ([`Cut::kept_before_us`]),
/// after [`PENDING_SQL`].
const KEPT_PENDING_SQL: &str =
    "AND (occurred_at < $3 OR session_id IN (SELECT id FROM sessions WHERE first_seen < $4))";
const SET_WATERMARK: &str = "UPDATE rollup_watermark SET last_event_id = $1 WHERE id = 1";

/// Widens `sessions.first_seen`/`last_seen` to the events being folded in:
/// the write path upserts a session only when it is new to the writer or
/// gets a field filled (`known.rs`), so the bounds are kept here, once per
/// session and pass. Rows are locked in token order, the order of the
/// writers' upserts, so the two cannot deadlock: byte order (`COLLATE "C"`),
/// as Rust sorts the writers' tokens, whatever the database's collation.
/// `s.id = ANY($1)` repeats the join for the planner: without it, the
/// planner misjudges the join and hashes the whole `sessions` table to find
/// the pass's few sessions; with it the lookup is an index scan on the
/// primary key, whose cost does not grow with the table.
const MOVE_BOUNDS: &str = "WITH b AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], \
     $3::bigint[]) AS b (id, first_seen, last_seen)), \
     moving AS (SELECT s.id FROM sessions s JOIN b ON b.id = s.id \
     WHERE s.id = ANY($1::bigint[]) \
     AND (s.first_seen > b.first_seen OR s.last_seen < b.last_seen) \
     ORDER BY s.token COLLATE \"C\" FOR UPDATE OF s) \
     UPDATE sessions s SET first_seen = LEAST(s.first_seen, b.first_seen), \
     last_seen = GREATEST(s.last_seen, b.last_seen) \
     FROM b WHERE b.id = s.id AND s.id IN (SELECT id FROM moving)";

/// The same for every stored event, before a rebuild: events past the
/// watermark never go through a pass.
const REBUILD_BOUNDS: &str = "UPDATE sessions s SET \
     first_seen = LEAST(s.first_seen, b.first_seen), \
     last_seen = GREATEST(s.last_seen, b.last_seen) \
     FROM (SELECT session_id, MIN(occurred_at) AS first_seen, MAX(occurred_at) AS last_seen \
     FROM events GROUP BY session_id) b \
     WHERE b.session_id = s.id AND (s.first_seen > b.first_seen OR s.last_seen < b.last_seen)";

/// One column of rows, for a PostgreSQL array parameter.
fn column<'r, T, U>(rows: &'r [T], f: impl Fn(&'r T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// Adds `events` to the rollups (and moves their sessions' bounds).
fn apply(conn: &mut PgConnection, events: &[PendingEvent]) -> QueryResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let bounds = session_bounds(events);
    let ids = column(&bounds, |b| b.session_id);
    sql_query(MOVE_BOUNDS)
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<Array<BigInt>, _>(column(&bounds, |b| b.first))
        .bind::<Array<BigInt>, _>(column(&bounds, |b| b.last))
        .execute(conn)?;
    // By primary key, as for MOVE_BOUNDS: a join of the events with
    // `sessions` risks a plan that hashes the whole table.
    let sessions: Vec<PassSession> = sql_query(pass_sessions_sql("s.id = ANY($1)"))
        .bind::<Array<BigInt>, _>(&ids)
        .load(conn)?;
    let profiles = profiles(&sessions);
    let facts = facts(events, &profiles);
    if facts.is_empty() {
        return Ok(());
    }
    let visitors = visitors_of(&facts);
    let seen: Vec<SeenRow> =
        sql_query("SELECT visitor, dim, item, quarter FROM rollup_seen WHERE visitor = ANY($1)")
            .bind::<Array<BigInt>, _>(&visitors)
            .load(conn)?;
    let seen_profiles: Vec<SeenProfileRow> = sql_query(seen_profiles_sql("visitor = ANY($1)"))
        .bind::<Array<BigInt>, _>(&visitors)
        .load(conn)?;
    write_plan(conn, &plan(&facts, seen, seen_profiles, spans(&sessions)))
}

/// Writes a plan, one statement per table, rows in key order.
pub(super) fn write_plan(conn: &mut PgConnection, plan: &Plan) -> QueryResult<()> {
    if !plan.seen.is_empty() {
        let rows: Vec<_> = plan.seen.iter().collect();
        sql_query(
            "INSERT INTO rollup_seen (visitor, dim, item, quarter) \
             SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::bigint[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind::<Array<BigInt>, _>(column(&rows, |r| r.visitor))
        .bind::<Array<SmallInt>, _>(column(&rows, |r| r.dim.stored()))
        .bind::<Array<Text>, _>(column(&rows, |r| r.item.as_str()))
        .bind::<Array<BigInt>, _>(column(&rows, |r| r.quarter))
        .execute(conn)?;
    }
    if !plan.seen_profiles.is_empty() {
        let rows: Vec<_> = plan.seen_profiles.iter().collect();
        let item = |i: usize| column(&rows, move |r| r.items.0[i].as_str());
        sql_query(format!(
            "INSERT INTO rollup_seen_profile (visitor, quarter, {SESSION_ITEM_COLUMNS}) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::text[]) ON CONFLICT DO NOTHING"
        ))
        .bind::<Array<BigInt>, _>(column(&rows, |r| r.visitor))
        .bind::<Array<BigInt>, _>(column(&rows, |r| r.quarter))
        .bind::<Array<Text>, _>(item(0))
        .bind::<Array<Text>, _>(item(1))
        .bind::<Array<Text>, _>(item(2))
        .bind::<Array<Text>, _>(item(3))
        .bind::<Array<Text>, _>(item(4))
        .bind::<Array<Text>, _>(item(5))
        .execute(conn)?;
    }
    if !plan.counts.is_empty() {
        let rows: Vec<_> = plan.counts.iter().collect();
        sql_query(
            "INSERT INTO rollup_counts (grain, dim, unit, item, n) \
             SELECT * FROM unnest($1::smallint[], $2::smallint[], $3::bigint[], $4::text[], \
             $5::bigint[]) ON CONFLICT (grain, dim, unit, item) \
             DO UPDATE SET n = rollup_counts.n + EXCLUDED.n",
        )
        .bind::<Array<SmallInt>, _>(column(&rows, |(k, _)| k.grain.stored()))
        .bind::<Array<SmallInt>, _>(column(&rows, |(k, _)| k.dim.stored()))
        .bind::<Array<BigInt>, _>(column(&rows, |(k, _)| k.unit))
        .bind::<Array<Text>, _>(column(&rows, |(k, _)| k.item.as_str()))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, n)| **n))
        .execute(conn)?;
    }
    if !plan.visitors.is_empty() {
        let rows: Vec<_> = plan.visitors.iter().collect();
        sql_query(
            "INSERT INTO rollup_visitors (grain, dim, unit, item, prev, n) \
             SELECT * FROM unnest($1::smallint[], $2::smallint[], $3::bigint[], $4::text[], \
             $5::bigint[], $6::bigint[]) ON CONFLICT (grain, dim, unit, item, prev) \
             DO UPDATE SET n = rollup_visitors.n + EXCLUDED.n",
        )
        .bind::<Array<SmallInt>, _>(column(&rows, |(k, _)| k.grain.stored()))
        .bind::<Array<SmallInt>, _>(column(&rows, |(k, _)| k.dim.stored()))
        .bind::<Array<BigInt>, _>(column(&rows, |(k, _)| k.unit))
        .bind::<Array<Text>, _>(column(&rows, |(k, _)| k.item.as_str()))
        .bind::<Array<BigInt>, _>(column(&rows, |(k, _)| k.prev))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, n)| **n))
        .execute(conn)?;
    }
    if !plan.stats.is_empty() {
        let rows: Vec<_> = plan.stats.iter().collect();
        sql_query(
            "INSERT INTO rollup_stats (quarter, events, page_views, clicks, sessions, duration_us) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], \
             $5::bigint[], $6::bigint[]) ON CONFLICT (quarter) DO UPDATE SET \
             events = rollup_stats.events + EXCLUDED.events, \
             page_views = rollup_stats.page_views + EXCLUDED.page_views, \
             clicks = rollup_stats.clicks + EXCLUDED.clicks, \
             sessions = rollup_stats.sessions + EXCLUDED.sessions, \
             duration_us = rollup_stats.duration_us + EXCLUDED.duration_us",
        )
        .bind::<Array<BigInt>, _>(column(&rows, |(q, _)| **q))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, d)| d.events))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, d)| d.page_views))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, d)| d.clicks))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, d)| d.sessions))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, d)| d.duration_us))
        .execute(conn)?;
    }
    if !plan.sessions.is_empty() {
        let rows: Vec<_> = plan.sessions.iter().collect();
        sql_query(
            "INSERT INTO rollup_session (session_id, quarter, duration_us, events, page_views) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], \
             $5::bigint[]) ON CONFLICT (session_id) DO UPDATE SET \
             quarter = EXCLUDED.quarter, duration_us = EXCLUDED.duration_us, \
             events = rollup_session.events + EXCLUDED.events, \
             page_views = rollup_session.page_views + EXCLUDED.page_views",
        )
        .bind::<Array<BigInt>, _>(column(&rows, |(id, _)| **id))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, s)| s.quarter))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, s)| s.duration_us))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, s)| s.events))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, s)| s.page_views))
        .execute(conn)?;
    }
    Ok(())
}

/// One pass: folds at most `limit` settled events past the watermark.
pub(super) fn roll_up(conn: &mut PgConnection, limit: usize) -> QueryResult<RollupProgress> {
    // No insert is running while this short transaction holds the lock, so
    // every id up to the maximum belongs to a finished transaction. Inserts
    // queue behind the lock request, so it gives up rather than wait for
    // an insert that hangs: the next pass tries again.
    let settled = conn
        .transaction(|conn| {
            conn.batch_execute(&format!(
                "SET LOCAL lock_timeout = '2s'; SELECT pg_advisory_xact_lock({INGEST_LOCK})"
            ))?;
            sql_query(SETTLED_MAX_SQL).get_result::<Id>(conn)
        })?
        .id;
    conn.transaction(|conn| {
        let from = sql_query(format!("{WATERMARK_SQL} FOR UPDATE"))
            .get_result::<Id>(conn)?
            .id;
        if from >= settled {
            return Ok(RollupProgress {
                applied: 0,
                caught_up: true,
            });
        }
        let to = pass_end(from, settled, limit);
        let events: Vec<PendingEvent> = sql_query(format!(
            "SELECT {PENDING_COLUMNS} FROM events {PENDING_SQL}"
        ))
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .load(conn)?;
        apply(conn, &events)?;
        sql_query(SET_WATERMARK)
            .bind::<BigInt, _>(to)
            .execute(conn)?;
        Ok(RollupProgress {
            applied: events.len(),
            caught_up: to == settled,
        })
    })
}

/// Recomputes the rollups of the retained range (see
/// `Store::rebuild_rollups`).
pub(super) fn rebuild(conn: &mut PgConnection) -> QueryResult<()> {
    conn.transaction(|conn| {
        // The watermark row first: a rollup pass waits for the rebuild (and
        // the rebuild for a running pass).
        let from = sql_query(format!("{WATERMARK_SQL} FOR UPDATE"))
            .get_result::<Id>(conn)?
            .id;
        // No insert runs from here on, so every id is settled.
        conn.batch_execute("LOCK TABLE events IN SHARE MODE")?;
        conn.batch_execute(REBUILD_BOUNDS)?;
        if let Some(earliest) = sql_query(EARLIEST_SQL).get_result::<MaybeTime>(conn)?.at {
            let cut = Cut::after(earliest);
            let settled = sql_query(SETTLED_MAX_SQL).get_result::<Id>(conn)?.id;
            let mut at = from;
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
                apply(conn, &events)?;
                at = to;
            }
            conn.batch_execute(&cut.rebuild_sql())?;
        }
        conn.batch_execute(SET_WATERMARK_TO_MAX)
    })?;
    // VACUUM sets the visibility map, without which the top lists'
    // index-only scans would visit the table after all (one statement per
    // call: VACUUM refuses to run in the implicit transaction of a
    // multi-statement string).
    conn.batch_execute("VACUUM (ANALYZE) rollup_counts, rollup_visitors")?;
    conn.batch_execute("ANALYZE rollup_seen, rollup_seen_profile, rollup_session, rollup_stats")
}
