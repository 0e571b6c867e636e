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
//! [`INGEST_LOCK`](crate::INGEST_LOCK) in shared mode; a pass takes it exclusively just long
//! enough to read `max(id)`, at which point every insert that could hold a
//! smaller id has committed or rolled back. (SQLite has one writer at a
//! time, so its largest id is always settled.)
//!
//! A pass reads the sessions of its events too: events of a bot's session
//! (`sessions.bot`) are left out of every rollup (the watermark still moves
//! past them); the others count for their session's visitor
//! ([`VISITOR_KEY`]) and carry its place, browser, system and device as
//! items of the session dimensions.
//!
//! Three aggregate tables (see the migration `2026-11-30-000002_rollups`):
//!
//! - `rollup_counts (grain, dim, unit, item, n)`: event counts per unit
//!   (page views for the session dimensions);
//! - `rollup_visitors (grain, dim, unit, item, prev, n)`: one "visitor
//!   unit" per visitor, item and unit the visitor was seen in, aggregated by
//!   `prev`, the last quarter **before the unit starts** in which that
//!   visitor was seen with that item (-1 when none). The distinct visitors
//!   of a range that starts at quarter `A` are exactly the visitor units
//!   inside the range with `prev < A`: each visitor is counted in the first
//!   unit of the range it appears in, and only there. This holds for any
//!   decomposition of the range into quarters and whole UTC days, which is
//!   how stats and top lists stay exact while reading a few thousand rows;
//! - `rollup_session (session_id, …)`: per-session counters, and the
//!   contribution last added for "sessions started" and "duration".
//!
//! `rollup_seen (visitor, dim, item, quarter)` remembers in which quarters
//! each visitor was seen with each item of an event's own dimensions, and
//! `rollup_seen_profile (visitor, quarter, country, …, device)` with each
//! set of its session's items ([`plan::SessionItems`]: one row where one
//! per session dimension would be six), so that an event arriving out of
//! order (earlier than events already stored for its visitor) moves the
//! `prev` of the later units correctly. On PostgreSQL a pass locks the watermark row
//! first, so passes run one at a time (several instances may try at once).
//! On SQLite, where a write holds the database's one write lock and every
//! commit waits for it, a pass reads and computes on a snapshot first and
//! takes the lock only to write, if the watermark has not moved meanwhile
//! ([`Store::roll_up`]). The insert path never touches these tables.
//!
//! A session's visitor id and other columns are read when its events are
//! folded in. They are set when the session starts and only ever filled in
//! (an empty column written by a later batch), so the events of a session
//! count under one visitor and items, except for a column filled after
//! some of its events were folded: those count without it, the later ones
//! with it, until a rebuild.
//!
//! The module's layers: [`units`] (the quarter, grains and dimensions as
//! stored, and the aligned ranges the read API takes), [`plan`] (what a
//! batch of events changes, without a database), [`postgres`] and
//! [`sqlite`] (a pass and the rebuild on each backend). This file holds the
//! public API.

pub(crate) mod forget;
mod plan;
mod postgres;
mod sqlite;
pub(crate) mod units;

use diesel::sql_types::BigInt;
use diesel::QueryableByName;

use crate::store::Pools;
use crate::{Store, StoreError};

use plan::PENDING_COLUMNS;
pub use units::TimeRange;
use units::{PLACE_SEPARATOR, QUARTERS_PER_DAY, QUARTER_US};

/// The visitor key of a session, as SQL over `sessions` aliased `s`: its
/// daily visitor id (always negative), or for a session stored without one
/// its own id (positive, so the two never collide): such a session is its
/// own visitor. Every figure named `visitors` counts distinct keys, and
/// `rollup_seen.visitor` holds them; whatever needs a session's key (the
/// passes, the rebuild, erasing a session from the rollups) takes it from
/// here.
pub(crate) const VISITOR_KEY: &str = "COALESCE(s.visitor_id, s.id)";

/// The statements that recompute the rollups of the retained range from
/// events and sessions, with placeholders ([`Cut::rebuild_sql`]). The tests
/// check that they agree with the incremental passes (the migration that
/// created the rollups ran an earlier copy; it is history).
const REBUILD_SQL: &str = include_str!("rebuild.sql");

/// Where a rebuild starts: the first quarter that starts at or after the
/// earliest stored event (and not before the last day pruned, see
/// [`EARLIEST_SQL`]). Every unit that starts there or later is
/// recomputed from the events; the units before it are kept, since their
/// events may be gone (retention deletes old events and keeps the
/// rollups), and so is the row of every session that started before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cut {
    /// The first quarter recomputed.
    quarter: i64,
    /// The first UTC day recomputed: the first that starts at or after
    /// `quarter`.
    day: i64,
}

impl Cut {
    /// The cut for the earliest stored event (µs).
    pub(super) fn after(earliest_us: i64) -> Self {
        let quarter =
            earliest_us.div_euclid(QUARTER_US) + i64::from(earliest_us.rem_euclid(QUARTER_US) != 0);
        Self {
            quarter,
            day: (quarter + QUARTERS_PER_DAY - 1).div_euclid(QUARTERS_PER_DAY),
        }
    }

    /// The start of the first quarter recomputed, µs: sessions that
    /// started before it keep their row.
    pub(super) fn start_us(self) -> i64 {
        self.quarter * QUARTER_US
    }

    /// Events before this time (µs) are in units the rebuild keeps (a
    /// quarter before the cut, or the day holding it): pending ones must
    /// be folded in before the rebuild, as must those of the sessions that
    /// keep their row.
    pub(super) fn kept_before_us(self) -> i64 {
        self.day * QUARTERS_PER_DAY * QUARTER_US
    }

    /// [`REBUILD_SQL`] for this cut.
    pub(super) fn rebuild_sql(self) -> String {
        REBUILD_SQL
            .replace(":cut_us", &self.start_us().to_string())
            .replace(":cut", &self.quarter.to_string())
            .replace(":first_day", &self.day.to_string())
            .replace(":day_cut", &(self.day * QUARTERS_PER_DAY).to_string())
            .replace(":visitor_key", VISITOR_KEY)
            .replace(":sep", &format!("'{PLACE_SEPARATOR}'"))
    }
}

/// What one [`Store::roll_up`] pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupProgress {
    /// Events folded in by this pass: the watermark moved past them (bots'
    /// events, which no rollup counts, included).
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

#[derive(QueryableByName)]
struct MaybeTime {
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    at: Option<i64>,
}

const SETTLED_MAX_SQL: &str = "SELECT COALESCE(MAX(id), 0) AS id FROM events";
/// Where the rebuild's [`Cut`] is taken from: the earliest stored event's
/// time, but never before the day pruning deleted up to
/// (`rollup_watermark.pruned_before`): an old event that arrived late and
/// was folded in after a prune is no sign that the days before it are
/// whole. `NULL` when no event is stored.
const EARLIEST_SQL: &str = "SELECT CASE WHEN e.at IS NULL THEN NULL \
     WHEN e.at > w.pruned THEN e.at ELSE w.pruned END AS at \
     FROM (SELECT MIN(occurred_at) AS at FROM events) e, \
     (SELECT COALESCE(MAX(pruned_before), 0) AS pruned FROM rollup_watermark) w";
const WATERMARK_SQL: &str = "SELECT last_event_id AS id FROM rollup_watermark WHERE id = 1";

/// After a rebuild, every stored event is in the rollups.
const SET_WATERMARK_TO_MAX: &str =
    "UPDATE rollup_watermark SET last_event_id = (SELECT COALESCE(MAX(id), 0) FROM events) WHERE id = 1";

/// Events per pass of [`Store::roll_up_all`].
const ROLL_UP_ALL_PASS: usize = 20_000;

/// Where a pass stops: at most `limit` ids past `from`, and never past
/// `settled`. Bounding the id range rather than the rows read (`LIMIT`
/// after `ORDER BY id`) lets PostgreSQL read just those rows, with no sort:
/// with `LIMIT`, a fresh table's stale statistics made it read every
/// pending row and sort them on disk to keep the first `limit`. Ids are dense but for gaps (rolled-back inserts,
/// duplicates skipped), so a pass folds at most `limit` events.
fn pass_end(from: i64, settled: i64, limit: usize) -> i64 {
    settled.min(from.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX)))
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
            Pools::Pg(pool) => postgres::roll_up(&mut *pool.get()?, limit)?,
            Pools::Sqlite(pool) => {
                // Read and compute without the write lock, which every
                // commit waits for; write under it. The connection goes back
                // to the pool in between (see `Store::sqlite_write_conn`).
                let Some(pass) = sqlite::read_pass(&mut *pool.get()?, limit)? else {
                    return Ok(RollupProgress {
                        applied: 0,
                        caught_up: true,
                    });
                };
                let (_turn, mut conn) = self.sqlite_write_conn(pool)?;
                if sqlite::write_pass(&mut conn, &pass)? {
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

    /// Recomputes the rollups from the stored events and sessions, in one
    /// transaction, and moves the watermark past every event. Only the
    /// retained range is recomputed: every unit that starts at or after the
    /// earliest stored event ([`Cut`]); the older ones, whose events may
    /// have been deleted, are kept, after the pending events that touch
    /// them are folded in. Ingestion waits meanwhile (PostgreSQL: a SHARE
    /// lock on `events`; SQLite: the write lock), so no event is missed or
    /// counted twice.
    pub fn rebuild_rollups(&self) -> Result<(), StoreError> {
        match &*self.pools {
            Pools::Pg(pool) => postgres::rebuild(&mut *pool.get()?)?,
            Pools::Sqlite(pool) => {
                let (_turn, mut conn) = self.sqlite_write_conn(pool)?;
                sqlite::rebuild(&mut conn)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuild_starts_at_the_first_unit_wholly_after_the_earliest_event() {
        let day = QUARTERS_PER_DAY * QUARTER_US;
        let cut = Cut::after(3 * day + 5 * QUARTER_US + 1);
        assert_eq!(
            cut,
            Cut {
                quarter: 3 * 96 + 6,
                day: 4
            }
        );
        assert_eq!(cut.start_us(), 3 * day + 6 * QUARTER_US);
        assert_eq!(cut.kept_before_us(), 4 * day);
        let aligned = Cut::after(3 * day);
        assert_eq!(
            aligned,
            Cut {
                quarter: 3 * 96,
                day: 3
            },
            "nothing before is lost"
        );
        assert_eq!(aligned.kept_before_us(), 3 * day);
        let sql = cut.rebuild_sql();
        assert!(!sql.contains(":cut") && !sql.contains(":day") && !sql.contains(":sep"));
        assert!(sql.contains("WHERE quarter >= 294;"), "{sql}");
    }
}

#[cfg(feature = "test-support")]
#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = diesel::sql_types::Text)]
    line: String,
}

#[cfg(feature = "test-support")]
impl Store {
    /// Every non-zero rollup row as text, sorted: for tests that compare the
    /// incrementally maintained rollups with a rebuild.
    pub fn rollup_fingerprint(&self) -> Result<Vec<String>, StoreError> {
        use diesel::RunQueryDsl;
        let sql = "SELECT 'seen ' || visitor || ' ' || dim || ' ' || item || ' ' || quarter AS line FROM rollup_seen
            UNION ALL SELECT 'profile ' || visitor || ' ' || quarter || ' ' || country || '|' || region || '|' || city || '|' || browser || '|' || os || '|' || device FROM rollup_seen_profile
            UNION ALL SELECT 'count ' || grain || ' ' || dim || ' ' || unit || ' ' || item || ' ' || n FROM rollup_counts WHERE n <> 0
            UNION ALL SELECT 'visitors ' || grain || ' ' || dim || ' ' || unit || ' ' || item || ' ' || prev || ' ' || n FROM rollup_visitors WHERE n <> 0
            UNION ALL SELECT 'stats ' || quarter || ' ' || events || ' ' || page_views || ' ' || clicks || ' ' || sessions || ' ' || duration_us FROM rollup_stats WHERE events <> 0 OR sessions <> 0 OR duration_us <> 0
            UNION ALL SELECT 'session ' || session_id || ' ' || quarter || ' ' || duration_us || ' ' || events || ' ' || page_views FROM rollup_session";
        let mut lines: Vec<String> = match &*self.pools {
            Pools::Pg(pool) => diesel::sql_query(sql).load::<Line>(&mut pool.get()?)?,
            Pools::Sqlite(pool) => diesel::sql_query(sql).load::<Line>(&mut pool.get()?)?,
        }
        .into_iter()
        .map(|l| l.line)
        .collect();
        lines.sort();
        Ok(lines)
    }
}
