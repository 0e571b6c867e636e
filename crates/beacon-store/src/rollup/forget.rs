//! Taking one session out of the rollups, for `beacon forget` (see
//! `crate::retention`): what its folded events added to the counts and
//! the stats, its start and duration, and its share of the visitor units
//! of its visitor key.
//!
//! The visitor units of a key are recomputed from what remains for it:
//! the quarters in which the key's other sessions were seen, from their
//! folded events. Before the pruning boundary (`pruned_before`) those
//! events may be gone; there the quarters the rollups hold for the key are
//! kept when another session shares it (the rollups cannot tell which
//! session they came from), and dropped when none does. Likewise the
//! counts of the session's events that were already pruned stay in the
//! rollups, anonymous: only what the stored events show can be
//! subtracted.

use std::collections::{BTreeMap, BTreeSet};

use diesel::sql_types::BigInt;
use diesel::QueryableByName;

use super::plan::{
    facts, plan, sightings, visitor_units, PendingEvent, Plan, SeenRow, StatsDelta, VisitorKey,
};
use super::units::{quarter_of, Dim, Grain};
use super::{postgres, sqlite, PENDING_COLUMNS, VISITOR_KEY};
use crate::read::{Conn, Param};
use crate::StoreError;

#[derive(QueryableByName)]
struct Watermark {
    #[diesel(sql_type = BigInt)]
    last_event_id: i64,
    #[diesel(sql_type = BigInt)]
    pruned_before: i64,
}

#[derive(QueryableByName)]
struct SessionRollupRow {
    #[diesel(sql_type = BigInt)]
    quarter: i64,
    #[diesel(sql_type = BigInt)]
    duration_us: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Quarters per (dimension, item).
type Quarters = BTreeMap<(Dim, String), BTreeSet<i64>>;

/// Folds every pending event into the rollups first, inside the
/// transaction of a forget, where a pass could otherwise write what it
/// read of the session before: on SQLite a pass reads without the write
/// lock and writes only if the watermark has not moved, which this moves.
/// (On PostgreSQL a pass holds the watermark row for its whole
/// transaction, and the forget takes that row.)
pub(crate) fn settle(conn: &mut Conn<'_>) -> Result<(), StoreError> {
    if let Conn::Sqlite(c) = conn {
        sqlite::fold_pending(c)?;
    }
    Ok(())
}

/// Subtracts session `session` (of visitor key `visitor`) from the
/// rollups. Runs in the transaction that deletes it, after [`settle`],
/// with inserts locked out: no pass and no insert runs meanwhile.
pub(crate) fn subtract(conn: &mut Conn<'_>, session: i64, visitor: i64) -> Result<(), StoreError> {
    let watermark = conn
        .load::<Watermark>(
            "SELECT COALESCE(MAX(last_event_id), 0) AS last_event_id, \
             COALESCE(MAX(pruned_before), 0) AS pruned_before FROM rollup_watermark",
            &[],
        )?
        .pop()
        .unwrap_or(Watermark {
            last_event_id: 0,
            pruned_before: 0,
        });
    let mut undo = Plan::default();

    // What its folded events added to the counts and the stats, as a pass
    // computes it, taken away.
    let events: Vec<PendingEvent> = conn.load(
        &format!("SELECT {PENDING_COLUMNS} FROM events WHERE session_id = ? AND id <= ?"),
        &[Param::Int(session), Param::Int(watermark.last_event_id)],
    )?;
    let added = plan(&facts(&events), vec![], vec![]);
    undo.counts = added.counts.into_iter().map(|(k, n)| (k, -n)).collect();
    for (quarter, d) in added.stats {
        let delta = StatsDelta {
            events: -d.events,
            page_views: -d.page_views,
            clicks: -d.clicks,
            ..StatsDelta::default()
        };
        undo.stat(quarter, delta);
    }

    // Its start and duration, as last added.
    let started: Vec<SessionRollupRow> = conn.load(
        "SELECT quarter, duration_us FROM rollup_session WHERE session_id = ?",
        &[Param::Int(session)],
    )?;
    for row in started {
        let delta = StatsDelta {
            sessions: -1,
            duration_us: -row.duration_us,
            ..StatsDelta::default()
        };
        undo.stat(row.quarter, delta);
    }

    // The visitor units of its key: from what the rollups hold to what
    // remains without it.
    let held = held_quarters(conn, visitor)?;
    let kept = kept_quarters(conn, session, visitor, &held, &watermark)?;
    let mut gone: Vec<((Dim, String), Vec<i64>)> = vec![];
    for (key, old) in &held {
        let new = kept.get(key).cloned().unwrap_or_default();
        if new == *old {
            continue;
        }
        for (units, sign) in [(visitor_units(old), -1), (visitor_units(&new), 1)] {
            for u in units {
                let row = VisitorKey {
                    grain: u.grain,
                    dim: key.0,
                    unit: u.unit,
                    item: key.1.clone(),
                    prev: u.prev,
                };
                *undo.visitors.entry(row).or_default() += sign;
            }
        }
        gone.push((key.clone(), old.difference(&new).copied().collect()));
    }
    undo.drop_zeros();

    match conn {
        Conn::Pg(c) => postgres::write_plan(c, &undo)?,
        Conn::Sqlite(c) => sqlite::write_plan(c, &undo)?,
    }
    for ((dim, item), quarters) in &gone {
        conn.execute(
            &format!(
                "DELETE FROM rollup_seen WHERE session_id = ? AND dim = ? AND item = ? \
                 AND quarter IN ({})",
                int_list(quarters.iter().copied())
            ),
            &[
                Param::Int(visitor),
                Param::Int(i64::from(dim.stored())),
                Param::Text(item.clone()),
            ],
        )?;
    }
    conn.execute(
        "DELETE FROM rollup_session WHERE session_id = ?",
        &[Param::Int(session)],
    )?;
    delete_zero_rows(conn, &undo)
}

/// The quarters `rollup_seen` holds for a visitor key.
fn held_quarters(conn: &mut Conn<'_>, visitor: i64) -> Result<Quarters, StoreError> {
    let rows: Vec<SeenRow> = conn.load(
        "SELECT session_id, dim, item, quarter FROM rollup_seen WHERE session_id = ?",
        &[Param::Int(visitor)],
    )?;
    let mut held = Quarters::new();
    for row in rows {
        // A dimension this version does not know stays as it is.
        if let Some(dim) = Dim::from_stored(row.dim) {
            held.entry((dim, row.item)).or_default().insert(row.quarter);
        }
    }
    Ok(held)
}

/// The quarters that remain for a visitor key without `session`: those of
/// its other sessions' folded events, and, before the pruning boundary,
/// those the rollups hold when another session shares the key.
fn kept_quarters(
    conn: &mut Conn<'_>,
    session: i64,
    visitor: i64,
    held: &Quarters,
    watermark: &Watermark,
) -> Result<Quarters, StoreError> {
    let others = conn
        .load::<Count>(
            &format!("SELECT COUNT(*) AS n FROM sessions s WHERE {VISITOR_KEY} = ? AND s.id <> ?"),
            &[Param::Int(visitor), Param::Int(session)],
        )?
        .pop()
        .map_or(0, |c| c.n);
    let mut kept = Quarters::new();
    if others == 0 {
        return Ok(kept);
    }
    let boundary = quarter_of(watermark.pruned_before);
    for (key, quarters) in held {
        let before: BTreeSet<i64> = quarters.range(..boundary).copied().collect();
        if !before.is_empty() {
            kept.insert(key.clone(), before);
        }
    }
    let events: Vec<PendingEvent> = conn.load(
        &format!(
            "SELECT {PENDING_COLUMNS} FROM events WHERE session_id IN \
             (SELECT s.id FROM sessions s WHERE {VISITOR_KEY} = ? AND s.id <> ?) \
             AND id <= ? AND occurred_at >= ?"
        ),
        &[
            Param::Int(visitor),
            Param::Int(session),
            Param::Int(watermark.last_event_id),
            Param::Int(watermark.pruned_before),
        ],
    )?;
    let facts = facts(&events);
    for ((dim, item), quarters) in sightings(&facts) {
        kept.entry((dim, item.to_owned()))
            .or_default()
            .extend(quarters);
    }
    Ok(kept)
}

/// Integers as a SQL list (ids and quarters read from the database or
/// computed: no text from outside).
fn int_list(values: impl Iterator<Item = i64>) -> String {
    values.map(|v| v.to_string()).collect::<Vec<_>>().join(",")
}

/// Deletes the rows of `rollup_counts` and `rollup_visitors` that `undo`
/// brought to zero: a forgotten session's pages, referrers and labels
/// leave no row behind, not even one that counts nothing.
fn delete_zero_rows(conn: &mut Conn<'_>, undo: &Plan) -> Result<(), StoreError> {
    let mut units: BTreeMap<(&str, Dim, &str), [BTreeSet<i64>; 2]> = BTreeMap::new();
    let grain_index = |g: Grain| usize::from(g == Grain::Day);
    for k in undo.counts.keys() {
        units
            .entry(("rollup_counts", k.dim, k.item.as_str()))
            .or_default()[grain_index(k.grain)]
        .insert(k.unit);
    }
    for k in undo.visitors.keys() {
        units
            .entry(("rollup_visitors", k.dim, k.item.as_str()))
            .or_default()[grain_index(k.grain)]
        .insert(k.unit);
    }
    for ((table, dim, item), [quarters, days]) in units {
        for (grain, list) in [(Grain::Quarter, quarters), (Grain::Day, days)] {
            if list.is_empty() {
                continue;
            }
            conn.execute(
                &format!(
                    "DELETE FROM {table} WHERE grain = ? AND dim = ? AND item = ? AND n = 0 \
                     AND unit IN ({})",
                    int_list(list.into_iter())
                ),
                &[
                    Param::Int(i64::from(grain.stored())),
                    Param::Int(i64::from(dim.stored())),
                    Param::Text(item.to_owned()),
                ],
            )?;
        }
    }
    Ok(())
}
