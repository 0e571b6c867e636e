//! Rollups for the historical API, folded in after the commit that
//! acknowledges the events, by [`Store::roll_up`]: a pass reads the
//! committed events past a watermark back in id order and adds them to the
//! rollups in one transaction that also moves the watermark, so each event
//! is counted exactly once, whenever and wherever (several instances, a
//! restart) the pass runs. Folding many acknowledged batches in one pass
//! also collapses their updates to the same aggregate rows.
//!
//! An id is read only once every smaller id is settled: PostgreSQL hands out
//! ids at insert time, so a transaction still running may hold a smaller id
//! than one already committed. Each insert transaction holds
//! [`INGEST_LOCK`] in shared mode; a pass takes it exclusively just long
//! enough to read `max(id)`, at which point every insert that could hold a
//! smaller id has committed or rolled back. (SQLite has one writer at a
//! time, so its largest id is always settled.)
//!
//! Three aggregate tables (see the migration `2026-11-30-000002_rollups`):
//!
//! - `rollup_counts (grain, dim, unit, item, n)`: event counts per unit;
//! - `rollup_visitors (grain, dim, unit, item, prev, n)`: one "visitor
//!   unit" per session, item and unit the session was seen in, aggregated by
//!   `prev`, the last quarter **before the unit starts** in which that
//!   session was seen with that item (-1 when none). The distinct sessions
//!   of a range that starts at quarter `A` are exactly the visitor units
//!   inside the range with `prev < A`: each session is counted in the first
//!   unit of the range it appears in, and only there. This holds for any
//!   decomposition of the range into quarters and whole UTC days, which is
//!   how stats and top lists stay exact while reading a few thousand rows;
//! - `rollup_session (session_id, …)`: per-session counters, and the
//!   contribution last added for "sessions started" and "duration".
//!
//! `rollup_seen (session_id, dim, item, quarter)` remembers in which quarters
//! each session was seen, so that an event arriving out of order (earlier
//! than events already stored for its session) moves the `prev` of the
//! later units correctly. On PostgreSQL a pass locks the watermark row
//! first, so passes run one at a time (several instances may try at once).
//! On SQLite, where a write holds the database's one write lock and every
//! commit waits for it, a pass reads and computes on a snapshot first and
//! takes the lock only to write, if the watermark has not moved meanwhile
//! ([`Store::roll_up`]). The insert path never touches these tables.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use beacon_model::EventKind;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, Nullable, SmallInt, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{sql_query, Connection, QueryResult, QueryableByName, RunQueryDsl};

use crate::store::Pools;
use crate::{Store, StoreError};

/// Microseconds in a quarter (15 minutes): the finest rollup unit. Every
/// time-zone offset in use is a multiple of 15 minutes.
pub const QUARTER_US: i64 = 900_000_000;
/// Quarters in a UTC day.
pub const QUARTERS_PER_DAY: i64 = 96;

/// The statements that recompute every rollup from events and sessions.
/// The migration that created the rollups runs them too.
pub(crate) const REBUILD_SQL: &str = include_str!("rollup/rebuild.sql");

/// Rollup grains.
pub(crate) const GRAIN_QUARTER: i16 = 0;
pub(crate) const GRAIN_DAY: i16 = 1;

/// Rollup dimensions.
pub(crate) const DIM_ALL: i16 = 0;
pub(crate) const DIM_PAGE: i16 = 1;
pub(crate) const DIM_REFERRER: i16 = 2;
pub(crate) const DIM_CLICK: i16 = 3;

/// Label of a click without one (as the live stream shows it).
pub(crate) const UNKNOWN_LABEL: &str = "unknown";

/// The quarter holding a time (times are never before 1970 here: the model
/// keeps client times within days of the receive time).
pub fn quarter_of(micros: i64) -> i64 {
    micros.div_euclid(QUARTER_US)
}

/// What an inserted event contributes.
struct Fact<'a> {
    session_id: i64,
    /// Event time, µs.
    at: i64,
    quarter: i64,
    visit: bool,
    click: bool,
    /// (dimension, item) pairs seen (visitors); all but `DIM_ALL` counted.
    items: Vec<(i16, &'a str)>,
}

/// A committed event not yet in the rollups, as read back from `events`.
#[derive(QueryableByName, Debug)]
struct PendingEvent {
    #[diesel(sql_type = BigInt)]
    session_id: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Nullable<Text>)]
    url: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    referrer: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    label: Option<String>,
    #[diesel(sql_type = BigInt)]
    occurred_at: i64,
}

/// The columns [`PendingEvent`] reads.
const PENDING_COLUMNS: &str = "session_id, kind, url, referrer, label, occurred_at";

fn facts(events: &[PendingEvent]) -> Vec<Fact<'_>> {
    events
        .iter()
        .map(|e| {
            let visit = e.kind == EventKind::Visit.as_str();
            let click = e.kind == EventKind::Click.as_str();
            let mut items = vec![(DIM_ALL, "")];
            if visit {
                if let Some(url) = &e.url {
                    items.push((DIM_PAGE, url.as_str()));
                }
                if let Some(referrer) = e.referrer.as_deref().filter(|r| !r.is_empty()) {
                    items.push((DIM_REFERRER, referrer));
                }
            }
            if click {
                items.push((DIM_CLICK, e.label.as_deref().unwrap_or(UNKNOWN_LABEL)));
            }
            Fact {
                session_id: e.session_id,
                at: e.occurred_at,
                quarter: quarter_of(e.occurred_at),
                visit,
                click,
                items,
            }
        })
        .collect()
}

/// A row of `rollup_seen`.
#[derive(QueryableByName, Debug)]
struct SeenRow {
    #[diesel(sql_type = BigInt)]
    session_id: i64,
    #[diesel(sql_type = SmallInt)]
    dim: i16,
    #[diesel(sql_type = Text)]
    item: String,
    #[diesel(sql_type = BigInt)]
    quarter: i64,
}

/// A session's bounds now, and what the rollups last recorded for it.
#[derive(QueryableByName, Debug)]
struct SessionSpan {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    first_seen: i64,
    #[diesel(sql_type = BigInt)]
    last_seen: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    quarter: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    duration_us: Option<i64>,
}

type CountKey = (i16, i16, i64, String);
type VisitorKey = (i16, i16, i64, String, i64);

/// Everything one batch changes, in key order.
#[derive(Default, Debug)]
struct Plan {
    seen: BTreeSet<(i64, i16, String, i64)>,
    counts: BTreeMap<CountKey, i64>,
    visitors: BTreeMap<VisitorKey, i64>,
    /// quarter → [events, page views, clicks, sessions started, duration µs]
    stats: BTreeMap<i64, [i64; 5]>,
    /// session id → (quarter, duration, added events, added page views)
    sessions: BTreeMap<i64, (i64, i64, i64, i64)>,
}

impl Plan {
    fn count(&mut self, dim: i16, quarter: i64, item: &str, n: i64) {
        for (grain, unit) in [
            (GRAIN_QUARTER, quarter),
            (GRAIN_DAY, quarter.div_euclid(QUARTERS_PER_DAY)),
        ] {
            *self
                .counts
                .entry((grain, dim, unit, item.to_owned()))
                .or_default() += n;
        }
    }

    fn stat(&mut self, quarter: i64, delta: [i64; 5]) {
        let row = self.stats.entry(quarter).or_default();
        for (v, d) in row.iter_mut().zip(delta) {
            *v += d;
        }
    }

    fn drop_zeros(&mut self) {
        self.stats.retain(|_, row| row.iter().any(|&v| v != 0));
        self.counts.retain(|_, n| *n != 0);
        self.visitors.retain(|_, n| *n != 0);
    }
}

/// Visitor units of one session and item seen in `quarters` (sorted):
/// (grain, unit, prev).
fn visitor_units(quarters: &BTreeSet<i64>) -> Vec<(i16, i64, i64)> {
    let mut out = Vec::with_capacity(quarters.len() + 2);
    let mut prev = -1;
    let mut last_day = None;
    for &q in quarters {
        out.push((GRAIN_QUARTER, q, prev));
        let day = q.div_euclid(QUARTERS_PER_DAY);
        if last_day != Some(day) {
            // The first quarter of a day: `prev` is the last one before it.
            out.push((GRAIN_DAY, day, prev));
            last_day = Some(day);
        }
        prev = q;
    }
    out
}

/// Computes the changes of one batch from its facts, the quarters already
/// seen for its sessions, and its sessions' spans.
fn plan(facts: &[Fact<'_>], seen: Vec<SeenRow>, spans: Vec<SessionSpan>) -> Plan {
    let mut plan = Plan::default();
    let mut new_seen: BTreeMap<(i64, i16, &str), BTreeSet<i64>> = BTreeMap::new();
    let mut added: HashMap<i64, (i64, i64)> = HashMap::new();
    for f in facts {
        plan.stat(f.quarter, [1, i64::from(f.visit), i64::from(f.click), 0, 0]);
        for &(dim, item) in &f.items {
            if dim != DIM_ALL {
                plan.count(dim, f.quarter, item, 1);
            }
            new_seen
                .entry((f.session_id, dim, item))
                .or_default()
                .insert(f.quarter);
        }
        let a = added.entry(f.session_id).or_default();
        a.0 += 1;
        a.1 += i64::from(f.visit);
    }

    let mut old_seen: HashMap<(i64, i16, &str), BTreeSet<i64>> = HashMap::new();
    for row in &seen {
        let key = (row.session_id, row.dim, row.item.as_str());
        if new_seen.contains_key(&key) {
            old_seen.entry(key).or_default().insert(row.quarter);
        }
    }
    for (key, quarters) in new_seen {
        let (session_id, dim, item) = key;
        let old = old_seen.remove(&key).unwrap_or_default();
        if quarters.is_subset(&old) {
            continue;
        }
        let mut merged = old.clone();
        for &q in &quarters {
            if merged.insert(q) {
                plan.seen.insert((session_id, dim, item.to_owned(), q));
            }
        }
        for (units, sign) in [(visitor_units(&old), -1), (visitor_units(&merged), 1)] {
            for (grain, unit, prev) in units {
                *plan
                    .visitors
                    .entry((grain, dim, unit, item.to_owned(), prev))
                    .or_default() += sign;
            }
        }
    }

    for span in spans {
        let quarter = quarter_of(span.first_seen);
        let duration = span.last_seen - span.first_seen;
        let (events, page_views) = added.get(&span.id).copied().unwrap_or_default();
        let old = span.quarter.zip(span.duration_us);
        if old == Some((quarter, duration)) && events == 0 {
            continue;
        }
        if let Some((old_quarter, old_duration)) = old {
            plan.stat(old_quarter, [0, 0, 0, -1, -old_duration]);
        }
        plan.stat(quarter, [0, 0, 0, 1, duration]);
        plan.sessions
            .insert(span.id, (quarter, duration, events, page_views));
    }
    plan.drop_zeros();
    plan
}

/// Each session of `facts` with its earliest and latest event among them:
/// `(session id, first, last)`, by id.
fn session_bounds(facts: &[Fact<'_>]) -> Vec<(i64, i64, i64)> {
    let mut bounds: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for f in facts {
        let b = bounds.entry(f.session_id).or_insert((f.at, f.at));
        b.0 = b.0.min(f.at);
        b.1 = b.1.max(f.at);
    }
    bounds
        .into_iter()
        .map(|(id, (first, last))| (id, first, last))
        .collect()
}

/// Widens `sessions.first_seen`/`last_seen` to the events being folded in:
/// the write path upserts a session only when it is new to the writer or
/// gets a field filled (`known.rs`), so the bounds are kept here, once per
/// session and pass. Rows are locked in token order, the order of the
/// writers' upserts, so the two cannot deadlock: byte order (`COLLATE "C"`),
/// as Rust sorts the writers' tokens, whatever the database's collation.
/// `s.id = ANY($1)` repeats the join for the planner: without it, it hashed
/// the whole `sessions` table to find the pass's sessions (35 ms against 15
/// ms for 1,700 of 33,000 sessions; docs/benchmarks.md, item 14).
const PG_MOVE_BOUNDS: &str = "WITH b AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], \
     $3::bigint[]) AS b (id, first_seen, last_seen)), \
     moving AS (SELECT s.id FROM sessions s JOIN b ON b.id = s.id \
     WHERE s.id = ANY($1::bigint[]) \
     AND (s.first_seen > b.first_seen OR s.last_seen < b.last_seen) \
     ORDER BY s.token COLLATE \"C\" FOR UPDATE OF s) \
     UPDATE sessions s SET first_seen = LEAST(s.first_seen, b.first_seen), \
     last_seen = GREATEST(s.last_seen, b.last_seen) \
     FROM b WHERE b.id = s.id AND s.id IN (SELECT id FROM moving)";

/// [`PG_MOVE_BOUNDS`] on SQLite (one writer at a time: no lock order).
const SQLITE_MOVE_BOUNDS: &str = "UPDATE sessions SET \
     first_seen = MIN(sessions.first_seen, b.first_seen), \
     last_seen = MAX(sessions.last_seen, b.last_seen) \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS first_seen, value ->> 2 AS last_seen \
     FROM json_each(?)) AS b \
     WHERE b.id = sessions.id \
     AND (sessions.first_seen > b.first_seen OR sessions.last_seen < b.last_seen)";

/// The same for every stored event, before a rebuild: events past the
/// watermark never go through a pass.
const PG_REBUILD_BOUNDS: &str = "UPDATE sessions s SET \
     first_seen = LEAST(s.first_seen, b.first_seen), \
     last_seen = GREATEST(s.last_seen, b.last_seen) \
     FROM (SELECT session_id, MIN(occurred_at) AS first_seen, MAX(occurred_at) AS last_seen \
     FROM events GROUP BY session_id) b \
     WHERE b.session_id = s.id AND (s.first_seen > b.first_seen OR s.last_seen < b.last_seen)";

/// [`PG_REBUILD_BOUNDS`] on SQLite.
const SQLITE_REBUILD_BOUNDS: &str = "UPDATE sessions SET \
     first_seen = MIN(sessions.first_seen, b.first_seen), \
     last_seen = MAX(sessions.last_seen, b.last_seen) \
     FROM (SELECT session_id, MIN(occurred_at) AS first_seen, MAX(occurred_at) AS last_seen \
     FROM events GROUP BY session_id) AS b \
     WHERE b.session_id = sessions.id \
     AND (sessions.first_seen > b.first_seen OR sessions.last_seen < b.last_seen)";

/// One column of rows, for a PostgreSQL array parameter.
fn column<'r, T, U>(rows: &'r [T], f: impl Fn(&'r T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// Columns of the plan's tables, one vector each, for PostgreSQL arrays.
type SeenColumns = (Vec<i64>, Vec<i16>, Vec<String>, Vec<i64>);

fn seen_columns(plan: &Plan) -> SeenColumns {
    let mut c: SeenColumns = Default::default();
    for (s, d, i, q) in &plan.seen {
        c.0.push(*s);
        c.1.push(*d);
        c.2.push(i.clone());
        c.3.push(*q);
    }
    c
}

/// Adds `facts` to the rollups, on PostgreSQL.
fn pg_apply(conn: &mut PgConnection, facts: &[Fact<'_>]) -> Result<(), diesel::result::Error> {
    if facts.is_empty() {
        return Ok(());
    }
    let bounds = session_bounds(facts);
    let sessions = column(&bounds, |b| b.0);
    sql_query(PG_MOVE_BOUNDS)
        .bind::<Array<BigInt>, _>(&sessions)
        .bind::<Array<BigInt>, _>(column(&bounds, |b| b.1))
        .bind::<Array<BigInt>, _>(column(&bounds, |b| b.2))
        .execute(conn)?;
    let seen: Vec<SeenRow> = sql_query(
        "SELECT session_id, dim, item, quarter FROM rollup_seen WHERE session_id = ANY($1)",
    )
    .bind::<Array<BigInt>, _>(&sessions)
    .load(conn)?;
    let spans: Vec<SessionSpan> = sql_query(
        "SELECT s.id, s.first_seen, s.last_seen, r.quarter, r.duration_us FROM sessions s \
         LEFT JOIN rollup_session r ON r.session_id = s.id WHERE s.id = ANY($1) ORDER BY s.id",
    )
    .bind::<Array<BigInt>, _>(&sessions)
    .load(conn)?;
    let plan = plan(facts, seen, spans);

    if !plan.seen.is_empty() {
        let (s, d, i, q) = seen_columns(&plan);
        sql_query(
            "INSERT INTO rollup_seen (session_id, dim, item, quarter) \
             SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::bigint[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind::<Array<BigInt>, _>(s)
        .bind::<Array<SmallInt>, _>(d)
        .bind::<Array<Text>, _>(i)
        .bind::<Array<BigInt>, _>(q)
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
        .bind::<Array<SmallInt>, _>(column(&rows, |((g, ..), _)| *g))
        .bind::<Array<SmallInt>, _>(column(&rows, |((_, d, ..), _)| *d))
        .bind::<Array<BigInt>, _>(column(&rows, |((_, _, u, _), _)| *u))
        .bind::<Array<Text>, _>(column(&rows, |((.., i), _)| i.as_str()))
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
        .bind::<Array<SmallInt>, _>(column(&rows, |((g, ..), _)| *g))
        .bind::<Array<SmallInt>, _>(column(&rows, |((_, d, ..), _)| *d))
        .bind::<Array<BigInt>, _>(column(&rows, |((_, _, u, ..), _)| *u))
        .bind::<Array<Text>, _>(column(&rows, |((_, _, _, i, _), _)| i.as_str()))
        .bind::<Array<BigInt>, _>(column(&rows, |((.., p), _)| *p))
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
        .bind::<Array<BigInt>, _>(column(&rows, |(_, r)| r[0]))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, r)| r[1]))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, r)| r[2]))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, r)| r[3]))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, r)| r[4]))
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
        .bind::<Array<BigInt>, _>(column(&rows, |(_, (q, ..))| *q))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, (_, d, ..))| *d))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, (.., e, _))| *e))
        .bind::<Array<BigInt>, _>(column(&rows, |(_, (.., p))| *p))
        .execute(conn)?;
    }
    Ok(())
}

/// The changes a SQLite pass will write, computed from a read snapshot
/// (see [`Store::roll_up`]).
struct SqlitePass {
    /// The watermark the pass read; the write checks it has not moved.
    from: i64,
    /// The watermark after the pass.
    to: i64,
    applied: usize,
    caught_up: bool,
    /// `(session id, first, last)` of the events folded in, by id.
    bounds: Vec<(i64, i64, i64)>,
    plan: Plan,
}

/// Each span as [`SQLITE_MOVE_BOUNDS`] will leave it: widened to the bounds
/// of the events folded in (both sorted by session id).
fn widen(spans: &mut [SessionSpan], bounds: &[(i64, i64, i64)]) {
    for span in spans {
        if let Ok(i) = bounds.binary_search_by_key(&span.id, |b| b.0) {
            let (_, first, last) = bounds[i];
            span.first_seen = span.first_seen.min(first);
            span.last_seen = span.last_seen.max(last);
        }
    }
}

/// The first half of a pass on SQLite, in a read transaction (a snapshot;
/// no write lock, so commits go on meanwhile): the events past the
/// watermark, what the rollups already hold for their sessions, and the
/// changes to make. Every id in a snapshot is settled: SQLite has one
/// writer at a time, and its transaction's ids appear all at once. `None`
/// when nothing is pending.
fn sqlite_read_pass(conn: &mut SqliteConnection, limit: usize) -> QueryResult<Option<SqlitePass>> {
    conn.transaction(|conn| {
        let settled = sql_query(SETTLED_MAX_SQL).get_result::<Id>(conn)?.id;
        let from = sql_query(WATERMARK_SQL).get_result::<Id>(conn)?.id;
        if from >= settled {
            return Ok(None);
        }
        let to = pass_end(from, settled, limit);
        let events: Vec<PendingEvent> = sql_query(format!(
            "SELECT {PENDING_COLUMNS} FROM events {PENDING_SQL_SQLITE}"
        ))
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .load(conn)?;
        let facts = facts(&events);
        let bounds = session_bounds(&facts);
        let sessions = serde_json::Value::from(column(&bounds, |b| b.0)).to_string();
        let seen: Vec<SeenRow> = sql_query(
            "SELECT session_id, dim, item, quarter FROM rollup_seen \
             WHERE session_id IN (SELECT value FROM json_each(?))",
        )
        .bind::<Text, _>(&sessions)
        .load(conn)?;
        let mut spans: Vec<SessionSpan> = sql_query(
            "SELECT s.id, s.first_seen, s.last_seen, r.quarter, r.duration_us FROM sessions s \
             LEFT JOIN rollup_session r ON r.session_id = s.id \
             WHERE s.id IN (SELECT value FROM json_each(?)) ORDER BY s.id",
        )
        .bind::<Text, _>(&sessions)
        .load(conn)?;
        widen(&mut spans, &bounds);
        let plan = plan(&facts, seen, spans);
        Ok(Some(SqlitePass {
            from,
            to,
            applied: events.len(),
            caught_up: to == settled,
            bounds,
            plan,
        }))
    })
}

/// The second half, under the write lock: writes the pass unless another
/// pass (of this process or another) moved the watermark since the read,
/// in which case it writes nothing and returns false. A session whose
/// bounds a writer widened in between (for events past this pass) is
/// left right by [`SQLITE_MOVE_BOUNDS`]; its rollup contribution is
/// corrected by the pass that folds those events, as on PostgreSQL.
fn sqlite_write_pass(conn: &mut SqliteConnection, pass: &SqlitePass) -> QueryResult<bool> {
    conn.immediate_transaction(|conn| {
        let now = sql_query(WATERMARK_SQL).get_result::<Id>(conn)?.id;
        if now != pass.from {
            return Ok(false);
        }
        if !pass.bounds.is_empty() {
            sql_query(SQLITE_MOVE_BOUNDS)
                .bind::<Text, _>(serde_json::json!(pass.bounds).to_string())
                .execute(conn)?;
        }
        sqlite_write_plan(conn, &pass.plan)?;
        sql_query(SET_WATERMARK_SQLITE)
            .bind::<BigInt, _>(pass.to)
            .execute(conn)?;
        Ok(true)
    })
}

/// Writes a plan on SQLite: rows travel as one JSON array per statement
/// (expanded by `json_each`), so no statement nears the bound-variable
/// limit whatever the number of rows.
fn sqlite_write_plan(conn: &mut SqliteConnection, plan: &Plan) -> QueryResult<()> {
    let json = |rows: Vec<serde_json::Value>| serde_json::Value::Array(rows).to_string();
    if !plan.seen.is_empty() {
        let rows = plan
            .seen
            .iter()
            .map(|(s, d, i, q)| serde_json::json!([s, d, i, q]))
            .collect();
        sql_query(
            "INSERT INTO rollup_seen (session_id, dim, item, quarter) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?) \
             WHERE true ON CONFLICT DO NOTHING",
        )
        .bind::<Text, _>(json(rows))
        .execute(conn)?;
    }
    if !plan.counts.is_empty() {
        let rows = plan
            .counts
            .iter()
            .map(|((g, d, u, i), n)| serde_json::json!([g, d, u, i, n]))
            .collect();
        sql_query(
            "INSERT INTO rollup_counts (grain, dim, unit, item, n) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
             FROM json_each(?) WHERE true ON CONFLICT (grain, dim, unit, item) \
             DO UPDATE SET n = rollup_counts.n + excluded.n",
        )
        .bind::<Text, _>(json(rows))
        .execute(conn)?;
    }
    if !plan.visitors.is_empty() {
        let rows = plan
            .visitors
            .iter()
            .map(|((g, d, u, i, p), n)| serde_json::json!([g, d, u, i, p, n]))
            .collect();
        sql_query(
            "INSERT INTO rollup_visitors (grain, dim, unit, item, prev, n) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
             value ->> 5 FROM json_each(?) WHERE true \
             ON CONFLICT (grain, dim, unit, item, prev) \
             DO UPDATE SET n = rollup_visitors.n + excluded.n",
        )
        .bind::<Text, _>(json(rows))
        .execute(conn)?;
    }
    if !plan.stats.is_empty() {
        let rows = plan
            .stats
            .iter()
            .map(|(q, r)| serde_json::json!([q, r[0], r[1], r[2], r[3], r[4]]))
            .collect();
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
        .bind::<Text, _>(json(rows))
        .execute(conn)?;
    }
    if !plan.sessions.is_empty() {
        let rows = plan
            .sessions
            .iter()
            .map(|(id, (q, d, e, p))| serde_json::json!([id, q, d, e, p]))
            .collect();
        sql_query(
            "INSERT INTO rollup_session (session_id, quarter, duration_us, events, page_views) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
             FROM json_each(?) WHERE true ON CONFLICT (session_id) DO UPDATE SET \
             quarter = excluded.quarter, duration_us = excluded.duration_us, \
             events = rollup_session.events + excluded.events, \
             page_views = rollup_session.page_views + excluded.page_views",
        )
        .bind::<Text, _>(json(rows))
        .execute(conn)?;
    }
    Ok(())
}

/// The advisory lock (PostgreSQL) that every insert transaction holds in
/// shared mode, and a rollup pass briefly in exclusive mode to find the
/// largest settled id. Anything else that inserts into `events` must hold
/// it too (`SELECT pg_advisory_xact_lock_shared(INGEST_LOCK)`).
pub const INGEST_LOCK: i64 = 0x6265_6163_6f6e; // "beacon"

/// What one [`Store::roll_up`] pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupProgress {
    /// Events added to the rollups by this pass.
    pub applied: usize,
    /// True when no committed event was left out of the rollups when the
    /// pass began (false: the pass stopped at its size limit; run another).
    pub caught_up: bool,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

const SETTLED_MAX_SQL: &str = "SELECT COALESCE(MAX(id), 0) AS id FROM events";
const WATERMARK_SQL: &str = "SELECT last_event_id AS id FROM rollup_watermark WHERE id = 1";
const PENDING_SQL_PG: &str = "WHERE id > $1 AND id <= $2";
const PENDING_SQL_SQLITE: &str = "WHERE id > ? AND id <= ?";
const SET_WATERMARK_PG: &str = "UPDATE rollup_watermark SET last_event_id = $1 WHERE id = 1";
const SET_WATERMARK_SQLITE: &str = "UPDATE rollup_watermark SET last_event_id = ? WHERE id = 1";

/// Where a pass stops: at most `limit` ids past `from`, and never past
/// `settled`. Bounding the id range rather than the rows read (`LIMIT`
/// after `ORDER BY id`) lets PostgreSQL read just those rows, with no sort:
/// with `LIMIT`, a fresh table's stale statistics made it read every
/// pending row and sort them on disk to keep the first `limit`
/// (docs/benchmarks.md, item 13). Ids are dense but for gaps (rolled-back
/// inserts, duplicates skipped), so a pass folds at most `limit` events.
fn pass_end(from: i64, settled: i64, limit: usize) -> i64 {
    settled.min(from.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX)))
}

fn pg_roll_up(conn: &mut PgConnection, limit: usize) -> QueryResult<RollupProgress> {
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
            "SELECT {PENDING_COLUMNS} FROM events {PENDING_SQL_PG}"
        ))
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .load(conn)?;
        pg_apply(conn, &facts(&events))?;
        sql_query(SET_WATERMARK_PG)
            .bind::<BigInt, _>(to)
            .execute(conn)?;
        Ok(RollupProgress {
            applied: events.len(),
            caught_up: to == settled,
        })
    })
}

impl Store {
    /// Adds committed events that are not yet in the rollups to them, at
    /// most `limit` (at least 1) in one transaction, oldest first. Safe to
    /// run from several threads or instances at once: each event is added
    /// exactly once. The historical API's stats and top lists lag the
    /// events by whatever has not been rolled up yet.
    pub fn roll_up(&self, limit: usize) -> Result<RollupProgress, StoreError> {
        let limit = limit.max(1);
        Ok(match &*self.pools {
            Pools::Pg(pool) => pg_roll_up(&mut *pool.get()?, limit)?,
            Pools::Sqlite(pool) => {
                // Read and compute without the write lock, which every
                // commit waits for; write under it. The connection goes back
                // to the pool in between (see `Store::sqlite_write_conn`).
                let Some(pass) = sqlite_read_pass(&mut *pool.get()?, limit)? else {
                    return Ok(RollupProgress {
                        applied: 0,
                        caught_up: true,
                    });
                };
                let (_turn, mut conn) = self.sqlite_write_conn(pool)?;
                if sqlite_write_pass(&mut conn, &pass)? {
                    RollupProgress {
                        applied: pass.applied,
                        caught_up: pass.caught_up,
                    }
                } else {
                    // Another pass folded these events meanwhile: nothing
                    // done; the next pass reads again.
                    RollupProgress {
                        applied: 0,
                        caught_up: false,
                    }
                }
            }
        })
    }

    /// Runs [`Store::roll_up`] passes until every event committed before
    /// the call is in the rollups; returns how many were added.
    pub fn roll_up_all(&self) -> Result<usize, StoreError> {
        let mut applied = 0;
        loop {
            let pass = self.roll_up(ROLL_UP_ALL_PASS)?;
            applied += pass.applied;
            if pass.caught_up {
                return Ok(applied);
            }
        }
    }
}

/// After a rebuild, every stored event is in the rollups.
const SET_WATERMARK_TO_MAX: &str =
    "UPDATE rollup_watermark SET last_event_id = (SELECT COALESCE(MAX(id), 0) FROM events) WHERE id = 1";

/// Events per pass of [`Store::roll_up_all`].
const ROLL_UP_ALL_PASS: usize = 20_000;

impl Store {
    /// Recomputes every rollup from the stored events and sessions, in one
    /// transaction, and moves the watermark past every event. Ingestion
    /// waits meanwhile (PostgreSQL: a SHARE lock on `events`; SQLite: the
    /// write lock), so no event is missed or counted twice.
    pub fn rebuild_rollups(&self) -> Result<(), StoreError> {
        match &*self.pools {
            Pools::Pg(pool) => {
                let mut conn = pool.get()?;
                conn.transaction(|conn| {
                    // The watermark row first: a rollup pass waits for the
                    // rebuild (and the rebuild for a running pass).
                    sql_query(format!("{WATERMARK_SQL} FOR UPDATE")).get_result::<Id>(conn)?;
                    conn.batch_execute("LOCK TABLE events IN SHARE MODE")?;
                    conn.batch_execute(PG_REBUILD_BOUNDS)?;
                    conn.batch_execute(REBUILD_SQL)?;
                    conn.batch_execute(SET_WATERMARK_TO_MAX)
                })?;
                // VACUUM sets the visibility map, without which the top
                // lists' index-only scans would visit the table after all
                // (one statement per call: VACUUM refuses to run in the
                // implicit transaction of a multi-statement string).
                conn.batch_execute("VACUUM (ANALYZE) rollup_counts, rollup_visitors")?;
                conn.batch_execute("ANALYZE rollup_seen, rollup_session, rollup_stats")?;
            }
            Pools::Sqlite(pool) => {
                let (_turn, mut conn) = self.sqlite_write_conn(pool)?;
                conn.immediate_transaction(|conn| {
                    conn.batch_execute(SQLITE_REBUILD_BOUNDS)?;
                    conn.batch_execute(REBUILD_SQL)?;
                    conn.batch_execute(SET_WATERMARK_TO_MAX)
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "test-support")]
#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

#[cfg(feature = "test-support")]
impl Store {
    /// Every non-zero rollup row as text, sorted: for tests that compare the
    /// incrementally maintained rollups with a rebuild.
    pub fn rollup_fingerprint(&self) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT 'seen ' || session_id || ' ' || dim || ' ' || item || ' ' || quarter AS line FROM rollup_seen
            UNION ALL SELECT 'count ' || grain || ' ' || dim || ' ' || unit || ' ' || item || ' ' || n FROM rollup_counts WHERE n <> 0
            UNION ALL SELECT 'visitors ' || grain || ' ' || dim || ' ' || unit || ' ' || item || ' ' || prev || ' ' || n FROM rollup_visitors WHERE n <> 0
            UNION ALL SELECT 'stats ' || quarter || ' ' || events || ' ' || page_views || ' ' || clicks || ' ' || sessions || ' ' || duration_us FROM rollup_stats WHERE events <> 0 OR sessions <> 0 OR duration_us <> 0
            UNION ALL SELECT 'session ' || session_id || ' ' || quarter || ' ' || duration_us || ' ' || events || ' ' || page_views FROM rollup_session";
        let mut lines: Vec<String> = match &*self.pools {
            Pools::Pg(pool) => sql_query(sql).load::<Line>(&mut pool.get()?)?,
            Pools::Sqlite(pool) => sql_query(sql).load::<Line>(&mut pool.get()?)?,
        }
        .into_iter()
        .map(|l| l.line)
        .collect();
        lines.sort();
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::testing::TestDatabase;

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
        let pass = sqlite_read_pass(&mut conn, 100)
            .unwrap()
            .expect("events pending");
        assert_eq!(pass.applied, 2);
        assert_eq!(b.roll_up_all().unwrap(), 2);
        assert!(
            !sqlite_write_pass(&mut conn, &pass).unwrap(),
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
        let pass = sqlite_read_pass(&mut conn, 100)
            .unwrap()
            .expect("events pending");
        // Unknown to `b`: its upsert widens the bounds at once.
        b.insert_batch(&events("s", &[30])).unwrap();
        assert!(sqlite_write_pass(&mut conn, &pass).unwrap());
        drop(conn);
        let session = a.session("s").unwrap().unwrap();
        assert_eq!(
            (session.last_seen() - session.first_seen()).num_seconds(),
            20
        );
        assert_eq!(a.roll_up_all().unwrap(), 1);
        assert_exact(&a);
    }

    fn set(q: &[i64]) -> BTreeSet<i64> {
        q.iter().copied().collect()
    }

    #[test]
    fn visitor_units_carry_the_last_quarter_before_each_unit() {
        // Two quarters of day 0, then one of day 2.
        let units = visitor_units(&set(&[3, 4, 200]));
        assert_eq!(
            units,
            vec![
                (GRAIN_QUARTER, 3, -1),
                (GRAIN_DAY, 0, -1),
                (GRAIN_QUARTER, 4, 3),
                (GRAIN_QUARTER, 200, 4),
                (GRAIN_DAY, 2, 4),
            ]
        );
    }

    #[test]
    fn the_migration_fills_rollups_with_the_rebuild_statements() {
        for migration in [
            include_str!("../../../migrations/postgres/2026-11-30-000002_rollups/up.sql"),
            include_str!("../../../migrations/sqlite/2026-11-30-000002_rollups/up.sql"),
        ] {
            assert!(
                migration.contains(REBUILD_SQL),
                "migration runs REBUILD_SQL verbatim"
            );
        }
    }

    /// Counting units with `prev < A` over any range gives the distinct
    /// sessions, whichever way the range is cut into quarters and days.
    #[test]
    fn distinct_sessions_of_any_range_are_the_units_with_prev_before_its_start() {
        let sessions: Vec<BTreeSet<i64>> = vec![
            set(&[1, 2, 3]),
            set(&[95, 96, 97]),
            set(&[10, 300]),
            set(&[190]),
            set(&[0, 191, 192, 400]),
        ];
        for a in 0..410 {
            for b in (a + 1..=410).step_by(7) {
                let expected = sessions
                    .iter()
                    .filter(|s| s.range(a..b).next().is_some())
                    .count() as i64;
                let d1 = (a + QUARTERS_PER_DAY - 1).div_euclid(QUARTERS_PER_DAY);
                let d2 = b.div_euclid(QUARTERS_PER_DAY);
                let mut got = 0;
                for s in &sessions {
                    for (grain, unit, prev) in visitor_units(s) {
                        let inside = if d1 < d2 {
                            match grain {
                                GRAIN_QUARTER => {
                                    (a..d1 * QUARTERS_PER_DAY).contains(&unit)
                                        || (d2 * QUARTERS_PER_DAY..b).contains(&unit)
                                }
                                _ => (d1..d2).contains(&unit),
                            }
                        } else {
                            grain == GRAIN_QUARTER && (a..b).contains(&unit)
                        };
                        if inside && prev < a {
                            got += 1;
                        }
                    }
                }
                assert_eq!(got, expected, "range {a}..{b}");
            }
        }
    }
}
