//! Anomalies as stored, the lease that lets one instance detect them, and
//! the page-view counts the detector reads (see the migrations
//! `2026-12-07-000001_anomalies` and `2026-12-07-000100_anomaly_detector_state`;
//! counts per page and referrer are in `series_counts`). Plain rows: the server converts between
//! them and the detector's types.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Double, Nullable, Text};
use diesel::QueryableByName;

use crate::read::{execute, load, Param};
use crate::rollup::units::QUARTER_US;
use crate::{Store, StoreError};

/// One anomaly as stored.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct AnomalyRow {
    /// `site`, `page:<url>` or `referrer:<referrer>`.
    #[diesel(sql_type = Text)]
    pub series: String,
    /// `spike`, `drop` or `dark`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// Estimated onset (µs).
    #[diesel(sql_type = BigInt)]
    pub onset_us: i64,
    /// Start of the interval that opened it (µs); with `series` and `kind`
    /// it names the anomaly.
    #[diesel(sql_type = BigInt)]
    pub start_us: i64,
    /// End (µs); `None` while open.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub end_us: Option<i64>,
    /// Events counted over the evidence.
    #[diesel(sql_type = Double)]
    pub observed: f64,
    /// Events expected over the evidence.
    #[diesel(sql_type = Double)]
    pub expected: f64,
    /// Improbability of the evidence, in standard deviations.
    #[diesel(sql_type = Double)]
    pub severity: f64,
}

/// What the detecting instance reported about its detector (see the
/// migration `2026-12-07-000100_anomaly_detector_state`).
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct DetectorStateRow {
    /// `learning`, `cautious` or `ready`.
    #[diesel(sql_type = Text)]
    pub mode: String,
    /// History of the site series (µs).
    #[diesel(sql_type = BigInt)]
    pub history_us: i64,
    /// Series watched, the site included.
    #[diesel(sql_type = BigInt)]
    pub series: i64,
    /// When it was reported (µs).
    #[diesel(sql_type = BigInt)]
    pub updated_us: i64,
}

#[derive(QueryableByName)]
struct IntervalCount {
    #[diesel(sql_type = BigInt)]
    i: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The condition, on a query of `events`, that its session is not a kept
/// bot's (`--keep-bots`): no figure counts bots. A primary-key probe per
/// event: `sessions.bot` has no index.
pub(crate) const NOT_BOT: &str =
    "NOT EXISTS (SELECT 1 FROM sessions b WHERE b.id = events.session_id AND b.bot)";

const ANOMALY_COLUMNS: &str =
    "series, kind, onset_us, start_us, end_us, observed, expected, severity FROM anomalies";

impl Store {
    /// Stores an anomaly as opened, or, when one with the same series, kind
    /// and start is stored, updates its end and figures (a close).
    pub fn upsert_anomaly(&self, row: &AnomalyRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        let now = now.timestamp_micros();
        execute(
            self,
            "INSERT INTO anomalies (series, kind, onset_us, start_us, end_us, observed, expected, \
             severity, opened_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (series, kind, start_us) DO UPDATE SET end_us = excluded.end_us, \
             observed = excluded.observed, expected = excluded.expected, \
             severity = excluded.severity, updated_at = excluded.updated_at",
            &[
                Param::Text(row.series.clone()),
                Param::Text(row.kind.clone()),
                Param::Int(row.onset_us),
                Param::Int(row.start_us),
                Param::NullableInt(row.end_us),
                Param::Float(row.observed),
                Param::Float(row.expected),
                Param::Float(row.severity),
                Param::Int(now),
                Param::Int(now),
            ],
        )?;
        Ok(())
    }

    /// Anomalies that overlap `from..to`: open ones that started before
    /// `to`, and closed ones that ended after `from`; oldest first.
    pub fn anomalies_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AnomalyRow>, StoreError> {
        load(
            self,
            &format!(
                "SELECT {ANOMALY_COLUMNS} WHERE onset_us < ? AND (end_us IS NULL OR end_us > ?) \
                 ORDER BY start_us, series, kind"
            ),
            &[
                Param::Int(to.timestamp_micros()),
                Param::Int(from.timestamp_micros()),
            ],
        )
    }

    /// The anomalies still open, oldest first.
    pub fn open_anomalies(&self) -> Result<Vec<AnomalyRow>, StoreError> {
        load(
            self,
            &format!(
                "SELECT {ANOMALY_COLUMNS} WHERE end_us IS NULL ORDER BY start_us, series, kind"
            ),
            &[],
        )
    }

    /// Records the state of the detector that runs under the lease `name`.
    pub fn set_detector_state(&self, name: &str, row: &DetectorStateRow) -> Result<(), StoreError> {
        execute(
            self,
            "INSERT INTO anomaly_detector_state (name, mode, history_us, series, updated_us) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET mode = excluded.mode, \
             history_us = excluded.history_us, series = excluded.series, \
             updated_us = excluded.updated_us",
            &[
                Param::Text(name.to_owned()),
                Param::Text(row.mode.clone()),
                Param::Int(row.history_us),
                Param::Int(row.series),
                Param::Int(row.updated_us),
            ],
        )?;
        Ok(())
    }

    /// The state last recorded for the detector under the lease `name`.
    pub fn detector_state(&self, name: &str) -> Result<Option<DetectorStateRow>, StoreError> {
        let mut rows: Vec<DetectorStateRow> = load(
            self,
            "SELECT mode, history_us, series, updated_us FROM anomaly_detector_state \
             WHERE name = ?",
            &[Param::Text(name.to_owned())],
        )?;
        Ok(rows.pop())
    }

    /// Takes or renews the lease `name` for `holder` until `now + ttl`, in
    /// one statement: it succeeds when the lease is free, expired or
    /// already `holder`'s, and returns whether `holder` now holds it.
    pub fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now_us = now.timestamp_micros();
        let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        let changed = execute(
            self,
            "INSERT INTO leases (name, holder, expires_us) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_us = excluded.expires_us \
             WHERE leases.holder = excluded.holder OR leases.expires_us <= ?",
            &[
                Param::Text(name.to_owned()),
                Param::Text(holder.to_owned()),
                Param::Int(now_us.saturating_add(ttl_us)),
                Param::Int(now_us),
            ],
        )?;
        Ok(changed > 0)
    }

    /// Page views (`visit` events by event time) of `intervals` consecutive
    /// intervals of `step` from `start`, read from the events (so every
    /// instance's, whether or not rolled up yet).
    pub fn page_views_per_interval(
        &self,
        start: DateTime<Utc>,
        step: std::time::Duration,
        intervals: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let step_us = i64::try_from(step.as_micros()).unwrap_or(i64::MAX).max(1);
        let start_us = start.timestamp_micros();
        let len = i64::try_from(intervals).unwrap_or(i64::MAX);
        let end_us = start_us.saturating_add(step_us.saturating_mul(len));
        let rows: Vec<IntervalCount> = load(
            self,
            &format!(
                "SELECT (occurred_at - ?) / ? AS i, COUNT(*) AS n FROM events \
                 WHERE kind = 'visit' AND occurred_at >= ? AND occurred_at < ? AND {NOT_BOT} \
                 GROUP BY 1"
            ),
            &[
                Param::Int(start_us),
                Param::Int(step_us),
                Param::Int(start_us),
                Param::Int(end_us),
            ],
        )?;
        Ok(spread(rows, intervals))
    }

    /// Page views of each 15-minute quarter from the one starting at or
    /// before `from` up to the one containing `to` (excluded when `to`
    /// starts it), read from the rollups: what the detector warms on.
    /// Returns the start of the first quarter and one count per quarter;
    /// only events already rolled up are counted.
    pub fn page_views_per_quarter(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, Vec<u64>), StoreError> {
        let from_q = from.timestamp_micros().div_euclid(QUARTER_US);
        let to_q = to.timestamp_micros().div_euclid(QUARTER_US)
            + i64::from(to.timestamp_micros().rem_euclid(QUARTER_US) != 0);
        let first = crate::rollup::units::time_of(from_q);
        let quarters = usize::try_from((to_q - from_q).max(0)).unwrap_or(0);
        let rows: Vec<IntervalCount> = load(
            self,
            "SELECT quarter - ? AS i, page_views AS n FROM rollup_stats \
             WHERE quarter >= ? AND quarter < ?",
            &[Param::Int(from_q), Param::Int(from_q), Param::Int(to_q)],
        )?;
        Ok((first, spread(rows, quarters)))
    }
}

/// Counts by index into a dense vector of `len` (missing indexes count 0).
fn spread(rows: Vec<IntervalCount>, len: usize) -> Vec<u64> {
    let mut out = vec![0; len];
    for row in rows {
        if let Some(slot) = usize::try_from(row.i).ok().and_then(|i| out.get_mut(i)) {
            *slot = u64::try_from(row.n).unwrap_or(0);
        }
    }
    out
}
