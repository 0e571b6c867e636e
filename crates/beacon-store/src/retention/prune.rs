//! Pruning runs: bounded steps over the events, then the sessions, of
//! the days before a cutoff (see the module docs of `retention`).

use chrono::{DateTime, NaiveDate, Utc};
use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel::QueryableByName;

use super::{drop_rollup_rows, exclude_inserts, int_list, log, visitor_ids_closed, Pruned, Target};
use crate::read::{Conn, Param};
use crate::rollup::VISITOR_KEY;
use crate::{Backend, Store, StoreError};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Events,
    Sessions,
    Log,
    Done,
}

/// A pruning run: deletes what occurred before the start of a UTC day, one
/// bounded step per [`Store::prune_step`], resuming where the last step
/// stopped.
#[derive(Debug, Clone)]
pub struct PruneRun {
    before: NaiveDate,
    /// The start of `before`, µs.
    before_us: i64,
    phase: Phase,
    /// Events from this event time on are left to look at.
    events_from: i64,
    /// Sessions after this `(first_seen, id)` are left to look at.
    sessions_after: (i64, i64),
    /// Whether `pruned_before` has been raised to `before`.
    marked: bool,
    events_per_step: usize,
    sessions_per_step: usize,
    deleted: Pruned,
}

impl PruneRun {
    /// A run that deletes what occurred before the start of `before`
    /// (UTC), with the default step sizes of `backend`: steps short enough
    /// that ingestion never waits long for one.
    pub fn new(before: NaiveDate, backend: Backend) -> Self {
        let before_us = before
            .and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp_micros());
        Self {
            before,
            before_us,
            phase: Phase::Events,
            events_from: i64::MIN,
            sessions_after: (i64::MIN, i64::MIN),
            marked: false,
            events_per_step: match backend {
                Backend::Postgres => 5_000,
                Backend::Sqlite => 1_000,
            },
            sessions_per_step: 1_000,
            deleted: Pruned::default(),
        }
    }

    /// The same run with other step sizes (at least 1 each).
    pub fn with_steps(mut self, events: usize, sessions: usize) -> Self {
        self.events_per_step = events.max(1);
        self.sessions_per_step = sessions.max(1);
        self
    }

    /// The day before which the run deletes.
    pub fn before(&self) -> NaiveDate {
        self.before
    }

    /// What the run deleted so far.
    pub fn deleted(&self) -> Pruned {
        self.deleted
    }

    /// True once the run has nothing left to do.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }
}

#[derive(QueryableByName)]
struct At {
    #[diesel(sql_type = BigInt)]
    occurred_at: i64,
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    first_seen: i64,
    /// Its visitor key: set when the session starts, only ever filled in
    /// by an upsert, which comes with events (so not for a dead session).
    #[diesel(sql_type = BigInt)]
    visitor: i64,
    #[diesel(sql_type = BigInt)]
    dead: i64,
}

#[derive(QueryableByName)]
struct Deleted {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// A session may be deleted: it has no event left and its last event is
/// older than the cutoff (the one parameter). `s` is the session row.
const DEAD: &str =
    "s.last_seen < ? AND NOT EXISTS (SELECT 1 FROM events e WHERE e.session_id = s.id)";

/// The targets whose id is among `deleted`.
fn gone(targets: &[Target], deleted: &[i64]) -> Vec<Target> {
    targets
        .iter()
        .filter(|t| deleted.contains(&t.id))
        .map(|t| Target {
            id: t.id,
            visitor: t.visitor,
        })
        .collect()
}

/// Deletes the sessions of `ids` that are still dead (no event, last seen
/// before the cutoff `before_us`; checked again inside a transaction that
/// excluded inserts), logs them, and returns the ids deleted.
fn delete_dead(
    conn: &mut Conn<'_>,
    ids: &[i64],
    before_us: i64,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let deleted: Vec<Deleted> = conn.load(
        &format!(
            "DELETE FROM sessions WHERE id IN ({}) AND last_seen < ? \
             AND NOT EXISTS (SELECT 1 FROM events e WHERE e.session_id = sessions.id) \
             RETURNING id",
            int_list(ids)
        ),
        &[Param::Int(before_us)],
    )?;
    let ids: Vec<i64> = deleted.into_iter().map(|t| t.id).collect();
    log::log_deleted(conn, &ids, now)?;
    Ok(ids)
}

impl Store {
    /// Runs the next bounded step of `run` (`now` dates the deletion log);
    /// returns whether steps are left. Safe beside ingestion, rollup
    /// passes and other runs, on any instance.
    pub fn prune_step(&self, run: &mut PruneRun, now: DateTime<Utc>) -> Result<bool, StoreError> {
        match run.phase {
            Phase::Events => self.prune_events(run)?,
            Phase::Sessions => self.prune_sessions(run, now)?,
            Phase::Log => {
                self.write_transaction(|conn| log::trim(conn, now))?;
                run.phase = Phase::Done;
            }
            Phase::Done => {}
        }
        Ok(!run.is_done())
    }

    /// Deletes what occurred before the start of `before` (UTC), step after
    /// step without pausing (the retention task and `beacon prune` pause
    /// between steps).
    pub fn prune(&self, before: NaiveDate, now: DateTime<Utc>) -> Result<Pruned, StoreError> {
        let mut run = PruneRun::new(before, self.backend());
        while self.prune_step(&mut run, now)? {}
        Ok(run.deleted())
    }

    fn prune_events(&self, run: &mut PruneRun) -> Result<(), StoreError> {
        let deleted: Vec<At> = self.write_transaction(|conn| {
            if !run.marked {
                conn.execute(
                    "UPDATE rollup_watermark SET pruned_before = ? WHERE id = 1 AND pruned_before < ?",
                    &[Param::Int(run.before_us), Param::Int(run.before_us)],
                )?;
            }
            conn.load(
                "DELETE FROM events WHERE id IN (SELECT id FROM events \
                 WHERE occurred_at >= ? AND occurred_at < ? \
                 AND id <= (SELECT last_event_id FROM rollup_watermark WHERE id = 1) \
                 ORDER BY occurred_at LIMIT ?) RETURNING occurred_at",
                &[
                    Param::Int(run.events_from),
                    Param::Int(run.before_us),
                    Param::Int(i64::try_from(run.events_per_step).unwrap_or(i64::MAX)),
                ],
            )
        })?;
        run.marked = true;
        run.deleted.events += deleted.len() as u64;
        if let Some(last) = deleted.iter().map(|d| d.occurred_at).max() {
            run.events_from = last;
        }
        if deleted.len() < run.events_per_step {
            run.phase = Phase::Sessions;
        }
        Ok(())
    }

    fn prune_sessions(&self, run: &mut PruneRun, now: DateTime<Utc>) -> Result<(), StoreError> {
        let (after_first, after_id) = run.sessions_after;
        let candidates: Vec<Candidate> = crate::read::load(
            self,
            &format!(
                "SELECT s.id, s.first_seen, {VISITOR_KEY} AS visitor, \
                 CAST(CASE WHEN {DEAD} THEN 1 ELSE 0 END AS BIGINT) AS dead FROM sessions s WHERE s.first_seen < ? AND (s.first_seen, s.id) > (?, ?) \
                 ORDER BY s.first_seen, s.id LIMIT ?"
            ),
            &[
                Param::Int(run.before_us),
                Param::Int(run.before_us),
                Param::Int(after_first),
                Param::Int(after_id),
                Param::Int(i64::try_from(run.sessions_per_step).unwrap_or(i64::MAX)),
            ],
        )?;
        if let Some(last) = candidates.last() {
            run.sessions_after = (last.first_seen, last.id);
        }
        if candidates.len() < run.sessions_per_step {
            run.phase = Phase::Log;
        }
        let dead: Vec<Target> = candidates
            .into_iter()
            .filter(|c| c.dead == 1)
            .map(|c| Target {
                id: c.id,
                visitor: c.visitor,
            })
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = dead.iter().map(|t| t.id).collect();
        let sqlite = self.backend() == Backend::Sqlite;
        let closed = visitor_ids_closed(run.before_us, now);
        let deleted = self.write_transaction(|conn| {
            exclude_inserts(conn)?;
            if let Conn::Pg(c) = conn {
                // Inserts wait for this commit: it does not wait for the
                // disk. A deletion lost in a crash is done again by the
                // next run; a commit that saw it flushes it too.
                c.batch_execute("SET LOCAL synchronous_commit = off")?;
            }
            let deleted = delete_dead(conn, &ids, run.before_us, now)?;
            if sqlite {
                // One write lock: a reused session id (SQLite) never
                // meets a leftover row.
                drop_rollup_rows(conn, &gone(&dead, &deleted), closed)?;
            }
            Ok(deleted)
        })?;
        if !sqlite && !deleted.is_empty() {
            // After the commit: inserts do not wait for these (ids are
            // never reused on PostgreSQL; a crash in between leaves rows
            // no pass reads).
            self.write_transaction(|conn| drop_rollup_rows(conn, &gone(&dead, &deleted), closed))?;
        }
        run.deleted.sessions += deleted.len() as u64;
        Ok(())
    }
}
