//! The log of deleted sessions (`session_deletions`) that keeps every
//! instance's cache of known sessions right (see `known.rs`): each
//! transaction that deletes sessions logs their ids under a new epoch, and
//! each insert transaction catches its cache up before it trusts it.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::sql_types::BigInt;
use diesel::QueryableByName;

use crate::known::KnownSessions;
use crate::read::{Conn, Param};
use crate::StoreError;

/// How long a deletion stays in the log. An instance whose cache is older
/// than what is left forgets its whole cache instead (every instance that
/// writes at all reads the log at every transaction).
const KEEP: TimeDelta = TimeDelta::days(1);

/// A cache this many epochs behind forgets everything rather than read
/// that many deletions (each epoch is at most one deleting step's).
const MAX_CATCH_UP: i64 = 200;

#[derive(QueryableByName)]
struct Epochs {
    #[diesel(sql_type = BigInt)]
    newest: i64,
    #[diesel(sql_type = BigInt)]
    oldest: i64,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Brings `known` up to the newest epoch of the log and returns it. Runs
/// in every insert transaction, after it excluded deletions (PostgreSQL:
/// the ingest lock, shared; SQLite: the write lock), before it reads a
/// cached id: no deletion commits between this read and the commit.
pub(crate) fn sync_known(conn: &mut Conn<'_>, known: &KnownSessions) -> Result<i64, StoreError> {
    let epochs = conn
        .load::<Epochs>(
            "SELECT COALESCE(MAX(epoch), 0) AS newest, COALESCE(MIN(epoch), 0) AS oldest \
             FROM session_deletions",
            &[],
        )?
        .pop()
        .unwrap_or(Epochs {
            newest: 0,
            oldest: 0,
        });
    match known.epoch() {
        Some(at) if at >= epochs.newest => {}
        // Every deletion since `at` is still logged.
        Some(at) if epochs.oldest <= at + 1 && epochs.newest - at <= MAX_CATCH_UP => {
            let deleted: HashSet<i64> = conn
                .load::<Id>(
                    "SELECT session_id AS id FROM session_deletions WHERE epoch > ?",
                    &[Param::Int(at)],
                )?
                .into_iter()
                .map(|r| r.id)
                .collect();
            known.catch_up(epochs.newest, Some(&deleted));
        }
        _ => known.catch_up(epochs.newest, None),
    }
    Ok(epochs.newest)
}

/// Logs the deletion of `ids` under a new epoch. Runs in the transaction
/// that deletes them, which excludes inserts and other deletions.
pub(crate) fn log_deleted(
    conn: &mut Conn<'_>,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let epoch = conn
        .load::<Id>(
            "SELECT COALESCE(MAX(epoch), 0) + 1 AS id FROM session_deletions",
            &[],
        )?
        .pop()
        .map_or(1, |r| r.id);
    let rows: Vec<String> = ids
        .iter()
        .map(|id| format!("({epoch}, {id}, {})", now.timestamp_micros()))
        .collect();
    conn.execute(
        &format!(
            "INSERT INTO session_deletions (epoch, session_id, deleted_at) VALUES {}",
            rows.join(", ")
        ),
        &[],
    )?;
    Ok(())
}

/// Removes the deletions logged more than [`KEEP`] before `now`, but never
/// the newest epoch, so that the epoch never goes back.
pub(crate) fn trim(conn: &mut Conn<'_>, now: DateTime<Utc>) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM session_deletions WHERE deleted_at < ? \
         AND epoch < (SELECT MAX(epoch) FROM session_deletions)",
        &[Param::Int((now - KEEP).timestamp_micros())],
    )
}
