//! Page views per page and per referrer, as the anomaly detector reads
//! them: the busiest items of a range, and their counts per interval (from
//! the events, so every instance's, rolled up or not) or per quarter (from
//! the rollups, for the warm start). Every read is bounded by a list of
//! items, never the whole set of urls a site has.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;

use crate::anomalies::NOT_BOT;
use crate::read::{load, Param};
use crate::rollup::units::{time_of, Dim, QUARTERS_PER_DAY, QUARTER_US};
use crate::{Store, StoreError};

/// Which page views an item series counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewDimension {
    /// Page views by url.
    Pages,
    /// Page views by referrer (empty referrers are none).
    Referrers,
}

impl ViewDimension {
    /// The condition on `events` that selects this dimension's page views.
    fn events_filter(self) -> &'static str {
        match self {
            Self::Pages => "kind = 'visit' AND url IS NOT NULL",
            Self::Referrers => "kind = 'visit' AND referrer IS NOT NULL AND referrer <> ''",
        }
    }

    /// The column of `events` holding the item.
    fn column(self) -> &'static str {
        match self {
            Self::Pages => "url",
            Self::Referrers => "referrer",
        }
    }

    /// The rollups' dimension of the same counts.
    fn rollup_dim(self) -> i16 {
        match self {
            Self::Pages => Dim::Page,
            Self::Referrers => Dim::Referrer,
        }
        .stored()
    }
}

/// Counts of one item, one per interval (or quarter) of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCounts {
    /// The url or referrer.
    pub item: String,
    /// Page views per interval, in time order.
    pub counts: Vec<u64>,
}

#[derive(QueryableByName)]
struct Item {
    #[diesel(sql_type = Text)]
    item: String,
}

#[derive(QueryableByName)]
struct ItemInterval {
    #[diesel(sql_type = Text)]
    item: String,
    #[diesel(sql_type = BigInt)]
    i: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Store {
    /// The `limit` items with the most page views of `dimension` from
    /// `from` to `to` (excluded), busiest first, read from the events.
    pub fn busiest_items(
        &self,
        dimension: ViewDimension,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let column = dimension.column();
        let sql = format!(
            "SELECT {column} AS item FROM events \
             WHERE {} AND occurred_at >= ? AND occurred_at < ? AND {NOT_BOT} \
             GROUP BY {column} ORDER BY COUNT(*) DESC, item LIMIT ?",
            dimension.events_filter()
        );
        let rows: Vec<Item> = load(
            self,
            &sql,
            &[
                Param::Int(from.timestamp_micros()),
                Param::Int(to.timestamp_micros()),
                Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        Ok(rows.into_iter().map(|r| r.item).collect())
    }

    /// Page views of each of `items` in `intervals` consecutive intervals
    /// of `step` from `start`, read from the events; one entry per item, in
    /// the order given (an item without page views counts zeros).
    pub fn item_views_per_interval(
        &self,
        dimension: ViewDimension,
        items: &[String],
        start: DateTime<Utc>,
        step: std::time::Duration,
        intervals: usize,
    ) -> Result<Vec<ItemCounts>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let step_us = i64::try_from(step.as_micros()).unwrap_or(i64::MAX).max(1);
        let start_us = start.timestamp_micros();
        let len = i64::try_from(intervals).unwrap_or(i64::MAX);
        let end_us = start_us.saturating_add(step_us.saturating_mul(len));
        let column = dimension.column();
        let marks = vec!["?"; items.len()].join(", ");
        let sql = format!(
            "SELECT {column} AS item, (occurred_at - ?) / ? AS i, COUNT(*) AS n FROM events \
             WHERE {} AND occurred_at >= ? AND occurred_at < ? AND {column} IN ({marks}) \
             AND {NOT_BOT} \
             GROUP BY 1, 2",
            dimension.events_filter()
        );
        let mut params = vec![
            Param::Int(start_us),
            Param::Int(step_us),
            Param::Int(start_us),
            Param::Int(end_us),
        ];
        params.extend(items.iter().map(|i| Param::Text(i.clone())));
        let rows: Vec<ItemInterval> = load(self, &sql, &params)?;
        Ok(spread_items(items, rows, intervals))
    }

    /// The `limit` items with the most page views of `dimension` in the
    /// UTC days from the one holding `from` to the one holding `to`, busiest
    /// first, read from the rollups (only what is rolled up counts).
    pub fn busiest_items_rolled_up(
        &self,
        dimension: ViewDimension,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let day = |t: DateTime<Utc>| {
            t.timestamp_micros()
                .div_euclid(QUARTER_US * QUARTERS_PER_DAY)
        };
        let rows: Vec<Item> = load(
            self,
            &format!(
                "SELECT item FROM rollup_counts \
                 WHERE grain = 1 AND dim = {} AND unit >= ? AND unit <= ? \
                 GROUP BY item ORDER BY SUM(n) DESC, item LIMIT ?",
                dimension.rollup_dim()
            ),
            &[
                Param::Int(day(from)),
                Param::Int(day(to)),
                Param::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        Ok(rows.into_iter().map(|r| r.item).collect())
    }

    /// Page views of each of `items` per 15-minute quarter, from the quarter
    /// holding `from` up to the one holding `to` (excluded when `to` starts
    /// it), read from the rollups; returns the first quarter's start and one
    /// entry per item, in the order given. The quarters are those of
    /// [`Store::page_views_per_quarter`] for the same bounds.
    pub fn item_views_per_quarter(
        &self,
        dimension: ViewDimension,
        items: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, Vec<ItemCounts>), StoreError> {
        let from_q = from.timestamp_micros().div_euclid(QUARTER_US);
        let to_q = to.timestamp_micros().div_euclid(QUARTER_US)
            + i64::from(to.timestamp_micros().rem_euclid(QUARTER_US) != 0);
        let quarters = usize::try_from((to_q - from_q).max(0)).unwrap_or(0);
        if items.is_empty() {
            return Ok((time_of(from_q), Vec::new()));
        }
        let marks = vec!["?"; items.len()].join(", ");
        let mut params = vec![Param::Int(from_q), Param::Int(from_q), Param::Int(to_q)];
        params.extend(items.iter().map(|i| Param::Text(i.clone())));
        let rows: Vec<ItemInterval> = load(
            self,
            &format!(
                "SELECT item, unit - ? AS i, n FROM rollup_counts \
                 WHERE grain = 0 AND dim = {} AND unit >= ? AND unit < ? AND item IN ({marks})",
                dimension.rollup_dim()
            ),
            &params,
        )?;
        Ok((time_of(from_q), spread_items(items, rows, quarters)))
    }
}

/// Rows of `(item, index, count)` as one dense vector of `len` per item of
/// `items`, in that order; rows of other items or out of range are ignored.
fn spread_items(items: &[String], rows: Vec<ItemInterval>, len: usize) -> Vec<ItemCounts> {
    let mut out: Vec<ItemCounts> = items
        .iter()
        .map(|item| ItemCounts {
            item: item.clone(),
            counts: vec![0; len],
        })
        .collect();
    for row in rows {
        let Some(entry) = out.iter_mut().find(|e| e.item == row.item) else {
            continue;
        };
        if let Some(slot) = usize::try_from(row.i)
            .ok()
            .and_then(|i| entry.counts.get_mut(i))
        {
            *slot = u64::try_from(row.n).unwrap_or(0);
        }
    }
    out
}
