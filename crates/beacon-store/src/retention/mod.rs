//! Deleting stored data while servers run: pruning what is older than a
//! day (the retention task and `beacon prune`) and erasing one session
//! (`beacon forget`).
//!
//! **Pruning** deletes, in bounded steps, the events that occurred before
//! the start of a UTC day and are already in the rollups (`id` at or below
//! the rollup watermark), then the sessions left without events whose
//! last event is also older. The rollups stay: stats and top lists still
//! answer for the pruned days. Each step is one short transaction:
//!
//! - events: up to a step's worth, oldest first through the
//!   `events_occurred_at` index, resuming where the last step stopped (so
//!   no step walks again over what earlier steps deleted). On PostgreSQL
//!   these deletes take no lock that ingestion waits for; on SQLite each
//!   holds the one write lock for a small step only.
//! - sessions: candidates are read without locks, through the
//!   `sessions_first_seen` index (a session's first event is no later
//!   than its last); a step deletes them in a transaction that excludes
//!   inserts (PostgreSQL: the ingest lock in exclusive mode, taken at a
//!   moment no insert holds it where it can, see [`exclude_inserts`];
//!   SQLite: the write lock), checks them again there, and logs them (see
//!   `log.rs`); on PostgreSQL that commit does not wait for the disk, so
//!   inserts wait only for the delete itself. Then their `rollup_session`
//!   rows go, and the `rollup_seen` and `rollup_seen_profile` rows of the
//!   visitor keys no session can reach any more (see below): on PostgreSQL
//!   in a transaction of their own that inserts do not wait for. No rollup
//!   pass reads those rows: a pass reads the sessions of the events it
//!   folds, and these have none.
//!
//! Before its first delete a run raises `rollup_watermark.pruned_before` to
//! its day: events before it may be gone, and the rollups of earlier days
//! are the only record of them.
//!
//! **Which rollup rows may go.** `rollup_seen` (and `rollup_seen_profile`
//! for the session dimensions) remembers, per visitor key, item and
//! quarter, where the key was seen; a pass reads a key's rows to
//! place the `prev` of the visitor units that new events of the key add
//! (rollup module docs). Deleting the rows of a key that can still get
//! events would break that: a later event's unit would get `prev = -1`
//! instead of the key's last quarter, counting the visitor twice in every
//! range that spans both, and the pass would subtract units that were
//! never added. Rows older than the cutoff are needed exactly as long as
//! their key can get new events. A session id that is its own visitor key
//! gets none once its session row is gone (ids are never handed out again
//! on PostgreSQL; on SQLite a reused session id starts with no rows, since
//! they were deleted with the session): those rows are deleted with the
//! session. A key shared by several sessions (a visitor id) can get events
//! while any of its sessions remains or can still be started: its rows go
//! once its day is over (a visitor id is computed with the salt of the day
//! a session starts on; pruning whole days at least a day old) and no
//! stored session has it, asked through the index `sessions_visitor_id`.
//! (A session stored with old timestamps but started today, from a
//! tracker's queue replayed late, can be pruned while its visitor id is
//! today's: should the same visitor start another session today, ranges
//! spanning both would count them twice.) `rollup_session` rows are per
//! session and read only when the session gets events: deleted with it.
//!
//! **Forgetting** erases one session by token: its events and its row, and
//! what the rollups hold for it (`rollup/forget.rs`), in one transaction
//! that first reads what to take out with the rollup passes held off, then
//! writes with inserts held off too, and logs it like a pruned session.
//! Events sent later with the same token make a new session.

mod log;
mod prune;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Bool};
use diesel::{QueryableByName, RunQueryDsl};

use crate::read::{Conn, Param};
use crate::rollup::{forget, VISITOR_KEY};
use crate::{Store, StoreError, INGEST_LOCK};

pub(crate) use log::sync_known;
pub use prune::PruneRun;

/// What pruning deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events deleted.
    pub events: u64,
    /// Sessions deleted.
    pub sessions: u64,
}

/// What forgetting a session deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    /// Events of the session deleted.
    pub events: u64,
}

#[derive(QueryableByName)]
struct Target {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    visitor: i64,
}

#[derive(QueryableByName)]
struct Day {
    #[diesel(sql_type = BigInt)]
    pruned_before: i64,
}

/// Integers as a SQL list (ids read from the database: no text from
/// outside).
fn int_list(values: &[i64]) -> String {
    values
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// How long a deleting step looks for a moment when no insert runs before
/// it queues for the ingest lock.
const FIND_A_GAP: Duration = Duration::from_secs(1);

/// Time between two looks.
const LOOK_EVERY: Duration = Duration::from_millis(1);

#[derive(QueryableByName)]
struct Got {
    #[diesel(sql_type = Bool)]
    got: bool,
}

/// Makes the transaction exclude inserts until it ends, before it deletes
/// sessions (SQLite: the transaction holds the write lock already). On
/// PostgreSQL that is the ingest lock in exclusive mode, which inserts hold
/// shared. Queueing for it would hold every new insert until the running
/// ones commit, so the step first takes it only when no insert holds it,
/// looking every millisecond for up to a second (between two commits of a
/// busy server, or at once on a quiet one), and only then queues, for at
/// most 2 s: ingestion waits for the step's deletes alone, or once a
/// second or less under full load.
fn exclude_inserts(conn: &mut Conn<'_>) -> Result<(), StoreError> {
    let Conn::Pg(c) = conn else {
        return Ok(());
    };
    let deadline = Instant::now() + FIND_A_GAP;
    loop {
        let got: Got = diesel::sql_query(format!(
            "SELECT pg_try_advisory_xact_lock({INGEST_LOCK}) AS got"
        ))
        .get_result(*c)?;
        if got.got {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(LOOK_EVERY);
    }
    c.batch_execute(&format!(
        "SET LOCAL lock_timeout = '2s'; SELECT pg_advisory_xact_lock({INGEST_LOCK})"
    ))?;
    Ok(())
}

/// The tables that remember where a visitor key was seen, by key.
const SEEN_TABLES: [&str; 2] = ["rollup_seen", "rollup_seen_profile"];

/// Deletes the rollup rows of deleted sessions that no longer serve: their
/// `rollup_session` rows, the [`SEEN_TABLES`] rows of the keys that were
/// their own (no event can reach those now), and, when `visitor_ids_closed`
/// (no session can be started with their visitor ids any more), those of
/// their visitor ids that no stored session has left.
fn drop_rollup_rows(
    conn: &mut Conn<'_>,
    targets: &[Target],
    visitor_ids_closed: bool,
) -> Result<(), StoreError> {
    if targets.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = targets.iter().map(|t| t.id).collect();
    conn.execute(
        &format!(
            "DELETE FROM rollup_session WHERE session_id IN ({})",
            int_list(&ids)
        ),
        &[],
    )?;
    let own: Vec<i64> = targets
        .iter()
        .filter(|t| t.visitor == t.id)
        .map(|t| t.id)
        .collect();
    if !own.is_empty() {
        for table in SEEN_TABLES {
            conn.execute(
                &format!("DELETE FROM {table} WHERE visitor IN ({})", int_list(&own)),
                &[],
            )?;
        }
    }
    let mut shared: Vec<i64> = targets
        .iter()
        .filter(|t| t.visitor != t.id)
        .map(|t| t.visitor)
        .collect();
    shared.sort_unstable();
    shared.dedup();
    if visitor_ids_closed && !shared.is_empty() {
        // Through the partial index `sessions_visitor_id`.
        for table in SEEN_TABLES {
            conn.execute(
                &format!(
                    "DELETE FROM {table} WHERE visitor IN ({}) AND NOT EXISTS \
                     (SELECT 1 FROM sessions s WHERE s.visitor_id = {table}.visitor)",
                    int_list(&shared)
                ),
                &[],
            )?;
        }
    }
    Ok(())
}

/// Whether no session can be started any more with the visitor id of a
/// session that started before `before_us`: a visitor id is computed with
/// the salt of the UTC day its session starts on, so once that day is over
/// (with a day's margin for instances' clocks), no new session gets it.
fn visitor_ids_closed(before_us: i64, now: DateTime<Utc>) -> bool {
    let today = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(i64::MIN, |t| t.and_utc().timestamp_micros());
    before_us <= today.saturating_sub(86_400_000_000)
}

impl Store {
    /// The start of the day before which events may have been pruned
    /// (`None`: nothing pruned). The rollups of earlier days are the only
    /// record of their events.
    pub fn pruned_before(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows: Vec<Day> = crate::read::load(
            self,
            "SELECT pruned_before FROM rollup_watermark WHERE id = 1",
            &[],
        )?;
        Ok(rows
            .first()
            .filter(|d| d.pruned_before > 0)
            .and_then(|d| DateTime::from_timestamp_micros(d.pruned_before)))
    }

    /// Erases the session `token`: its events, its row and what the
    /// rollups hold for it, in one transaction, safe beside running
    /// servers (every instance drops it from its cache of known sessions
    /// before its next insert). `None` when no session has that token.
    pub fn forget_session(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Forgotten>, StoreError> {
        self.write_transaction(|conn| {
            forget::settle(conn)?;
            let Some(target) = conn
                .load::<Target>(
                    &format!(
                        "SELECT s.id, {VISITOR_KEY} AS visitor FROM sessions s WHERE s.token = ?"
                    ),
                    &[Param::Text(token.to_owned())],
                )?
                .pop()
            else {
                return Ok(None);
            };
            // Read with no insert waiting (the reads may scan `sessions`
            // for the key's other sessions); written once inserts are out.
            let undo = forget::undo(conn, target.id, target.visitor)?;
            exclude_inserts(conn)?;
            forget::apply(conn, &undo)?;
            let events = conn.execute(
                "DELETE FROM events WHERE session_id = ?",
                &[Param::Int(target.id)],
            )?;
            conn.execute(
                "DELETE FROM sessions WHERE id = ?",
                &[Param::Int(target.id)],
            )?;
            log::log_deleted(conn, &[target.id], now)?;
            // What the rollups hold for it is taken out above, row by row.
            drop_rollup_rows(conn, &[target], false)?;
            log::trim(conn, now)?;
            Ok(Some(Forgotten {
                events: events as u64,
            }))
        })
    }
}
