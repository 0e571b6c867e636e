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

use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel::QueryableByName;

use super::plan::{
    facts, pass_sessions_sql, plan, profile_sightings, profiles, seen_profiles_sql, sightings,
    visitor_units, PassSession, PendingEvent, Plan, SeenProfileRow, SeenRow, SessionItems,
    StatsDelta, VisitorKey,
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

/// Quarters per (dimension, item), the session dimensions' included.
type Quarters = BTreeMap<(Dim, String), BTreeSet<i64>>;

/// Rows of `rollup_seen_profile` of one visitor key: (items, quarter).
type ProfileRows = BTreeSet<(SessionItems, i64)>;

/// Makes the forget's transaction exclude rollup passes, so that what is
/// folded in stays as [`undo`] reads it. On PostgreSQL: the watermark row,
/// which a pass holds for its whole transaction (inserts go on). On
/// SQLite, where a pass reads without the write lock and writes only if
/// the watermark has not moved, the transaction holds the write lock and
/// first folds every pending event in, which moves the watermark: a pass
/// that read the session's events before writes nothing.
pub(crate) fn settle(conn: &mut Conn<'_>) -> Result<(), StoreError> {
    match conn {
        Conn::Pg(c) => c.batch_execute("SELECT 1 FROM rollup_watermark WHERE id = 1 FOR UPDATE")?,
        Conn::Sqlite(c) => sqlite::fold_pending(c)?,
    }
    Ok(())
}

/// What taking a session out of the rollups changes: computed by
/// [`undo`] from what is folded in, written by [`apply`].
pub(crate) struct Undo {
    session: i64,
    visitor: i64,
    /// Deltas to add (negative counts and stats, visitor units moved).
    plan: Plan,
    /// `rollup_seen` quarters of the key to delete, per (dimension, item).
    gone: Vec<((Dim, String), Vec<i64>)>,
    /// `rollup_seen_profile` rows of the key to delete.
    gone_profiles: Vec<(SessionItems, i64)>,
}

/// Computes what the rollups hold for session `session` (of visitor key
/// `visitor`) and what remains for its key without it, reading only. Runs
/// in the forget's transaction after [`settle`], once no rollup pass can
/// run (PostgreSQL: the watermark row is held; SQLite: the write lock), so
/// what is folded in stays as read; inserts may go on meanwhile: their
/// events are past the watermark, in no rollup.
pub(crate) fn undo(conn: &mut Conn<'_>, session: i64, visitor: i64) -> Result<Undo, StoreError> {
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
    // computes it (nothing for a bot's session), taken away.
    let sessions: Vec<PassSession> =
        conn.load(&pass_sessions_sql("s.id = ?"), &[Param::Int(session)])?;
    let profiles = profiles(&sessions);
    let events: Vec<PendingEvent> = conn.load(
        &format!("SELECT {PENDING_COLUMNS} FROM events WHERE session_id = ? AND id <= ?"),
        &[Param::Int(session), Param::Int(watermark.last_event_id)],
    )?;
    let added = plan(&facts(&events, &profiles), vec![], vec![], vec![]);
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
    let (held, held_profiles) = held_quarters(conn, visitor)?;
    let (kept, kept_profiles) =
        kept_quarters(conn, session, visitor, &held, &held_profiles, &watermark)?;
    let mut gone = vec![];
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
    let gone_profiles = held_profiles.difference(&kept_profiles).cloned().collect();
    undo.drop_zeros();
    Ok(Undo {
        session,
        visitor,
        plan: undo,
        gone,
        gone_profiles,
    })
}

/// Writes an [`Undo`]: in the transaction that read it, once inserts are
/// excluded too.
pub(crate) fn apply(conn: &mut Conn<'_>, undo: &Undo) -> Result<(), StoreError> {
    match conn {
        Conn::Pg(c) => postgres::write_plan(c, &undo.plan)?,
        Conn::Sqlite(c) => sqlite::write_plan(c, &undo.plan)?,
    }
    for ((dim, item), quarters) in &undo.gone {
        conn.execute(
            &format!(
                "DELETE FROM rollup_seen WHERE visitor = ? AND dim = ? AND item = ? \
                 AND quarter IN ({})",
                int_list(quarters.iter().copied())
            ),
            &[
                Param::Int(undo.visitor),
                Param::Int(i64::from(dim.stored())),
                Param::Text(item.clone()),
            ],
        )?;
    }
    for (items, quarter) in &undo.gone_profiles {
        let mut params = vec![Param::Int(undo.visitor), Param::Int(*quarter)];
        params.extend(items.0.iter().map(|i| Param::Text(i.clone())));
        conn.execute(
            "DELETE FROM rollup_seen_profile WHERE visitor = ? AND quarter = ? AND country = ? \
             AND region = ? AND city = ? AND browser = ? AND os = ? AND device = ?",
            &params,
        )?;
    }
    conn.execute(
        "DELETE FROM rollup_session WHERE session_id = ?",
        &[Param::Int(undo.session)],
    )?;
    delete_zero_rows(conn, &undo.plan)
}

/// The quarters `rollup_seen` and `rollup_seen_profile` hold for a visitor
/// key, and the latter's rows.
fn held_quarters(conn: &mut Conn<'_>, visitor: i64) -> Result<(Quarters, ProfileRows), StoreError> {
    let rows: Vec<SeenRow> = conn.load(
        "SELECT visitor, dim, item, quarter FROM rollup_seen WHERE visitor = ?",
        &[Param::Int(visitor)],
    )?;
    let mut held = Quarters::new();
    for row in rows {
        // A dimension this version does not know stays as it is.
        if let Some(dim) = Dim::from_stored(row.dim) {
            held.entry((dim, row.item)).or_default().insert(row.quarter);
        }
    }
    let rows: Vec<SeenProfileRow> =
        conn.load(&seen_profiles_sql("visitor = ?"), &[Param::Int(visitor)])?;
    let mut profiles = ProfileRows::new();
    for row in rows {
        let (_, items, quarter) = row.into_parts();
        for (dim, item) in items.items() {
            held.entry((dim, item.to_owned()))
                .or_default()
                .insert(quarter);
        }
        profiles.insert((items, quarter));
    }
    Ok((held, profiles))
}

/// The quarters that remain for a visitor key without `session`: those of
/// its other sessions' folded events, and, before the pruning boundary,
/// those the rollups hold when another session shares the key; and the
/// `rollup_seen_profile` rows that remain likewise.
fn kept_quarters(
    conn: &mut Conn<'_>,
    session: i64,
    visitor: i64,
    held: &Quarters,
    held_profiles: &ProfileRows,
    watermark: &Watermark,
) -> Result<(Quarters, ProfileRows), StoreError> {
    let others = conn
        .load::<Count>(
            &format!("SELECT COUNT(*) AS n FROM sessions s WHERE {VISITOR_KEY} = ? AND s.id <> ?"),
            &[Param::Int(visitor), Param::Int(session)],
        )?
        .pop()
        .map_or(0, |c| c.n);
    let mut kept = Quarters::new();
    let mut kept_profiles = ProfileRows::new();
    if others == 0 {
        return Ok((kept, kept_profiles));
    }
    let boundary = quarter_of(watermark.pruned_before);
    for (key, quarters) in held {
        let before: BTreeSet<i64> = quarters.range(..boundary).copied().collect();
        if !before.is_empty() {
            kept.insert(key.clone(), before);
        }
    }
    kept_profiles.extend(
        held_profiles
            .iter()
            .filter(|(_, quarter)| *quarter < boundary)
            .cloned(),
    );
    let sessions: Vec<PassSession> = conn.load(
        &pass_sessions_sql(&format!("{VISITOR_KEY} = ? AND s.id <> ?")),
        &[Param::Int(visitor), Param::Int(session)],
    )?;
    let profiles = profiles(&sessions);
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
    let facts = facts(&events, &profiles);
    for ((dim, item), quarters) in sightings(&facts) {
        kept.entry((dim, item.to_owned()))
            .or_default()
            .extend(quarters);
    }
    kept_profiles.extend(
        profile_sightings(&facts)
            .into_iter()
            .map(|(items, quarter)| (items.clone(), quarter)),
    );
    Ok((kept, kept_profiles))
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
