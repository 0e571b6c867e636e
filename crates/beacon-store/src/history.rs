//! Read queries of the historical API: session and event lists with keyset
//! pagination, and stats and top lists from the rollups (see the `rollup`
//! module). Written once for both backends, with `?` placeholders.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;

use crate::read::{load, Param, EVENT_COLUMNS};
use crate::rollup::units::{
    bound_quarters, split_place_item, time_of, Dim, Grain, QUARTERS_PER_DAY,
};
use crate::{SessionRow, Store, StoreError, StoredEvent, TimeRange};

/// A session with its counters, as `/sessions` lists it.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct SessionSummary {
    /// The session as stored.
    #[diesel(embed)]
    pub session: SessionRow,
    /// Events stored for the session.
    #[diesel(sql_type = BigInt)]
    pub events: i64,
    /// `visit` events stored for the session.
    #[diesel(sql_type = BigInt)]
    pub page_views: i64,
}

/// Which sessions `/sessions` lists: newest first by `(first_seen, id)`.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    /// First seen at or after (microseconds).
    pub from_us: Option<i64>,
    /// First seen before (microseconds).
    pub to_us: Option<i64>,
    /// Exact country code.
    pub country: Option<String>,
    /// Exact device type.
    pub device: Option<String>,
    /// Exact browser family.
    pub browser: Option<String>,
    /// Initial referrer starting with this.
    pub referrer: Option<String>,
    /// Continue after this `(first_seen, id)` (exclusive, going older).
    pub before: Option<(i64, i64)>,
    /// Most rows.
    pub limit: i64,
}

/// Which events `/events` lists: oldest first by `(occurred_at, id)`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Event time at or after (microseconds).
    pub from_us: Option<i64>,
    /// Event time before (microseconds).
    pub to_us: Option<i64>,
    /// Exact event type.
    pub kind: Option<String>,
    /// Session token.
    pub session: Option<String>,
    /// Url starting with this.
    pub url_prefix: Option<String>,
    /// Exact click label.
    pub label: Option<String>,
    /// Continue after this `(occurred_at, id)` (exclusive).
    pub after: Option<(i64, i64)>,
    /// Most rows.
    pub limit: i64,
}

/// Figures of one stats bucket. Bots' sessions are in none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketFigures {
    /// `visit` events.
    pub page_views: i64,
    /// Distinct visitors (visitor keys: a session's daily visitor id, or
    /// the session itself when it has none) with at least one event in the
    /// bucket (exact).
    pub visitors: i64,
    /// Events of any type.
    pub events: i64,
    /// `click` events.
    pub clicks: i64,
    /// Sessions whose first event is in the bucket.
    pub sessions_started: i64,
    /// Summed duration (last seen − first seen) of those sessions, µs.
    pub duration_sum_us: i64,
}

/// One stats bucket: where it starts, and its figures (it ends where the
/// next one starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Start of the bucket (inclusive).
    pub start: DateTime<Utc>,
    /// Its figures.
    pub figures: BucketFigures,
}

/// What [`Store::bucket_stats`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketStats {
    /// One per pair of consecutive bounds, in order.
    pub buckets: Vec<Bucket>,
    /// The figures of the whole range (visitors counted once over it).
    pub total: BucketFigures,
}

/// What a top list ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopDimension {
    /// Urls of page views.
    Pages,
    /// Referrers of page views.
    Referrers,
    /// Click labels (`unknown` when a click has none).
    Clicks,
    /// Country codes of sessions.
    Countries,
    /// Regions of sessions, with their country.
    Regions,
    /// Cities of sessions, with their country.
    Cities,
    /// Browser families of sessions.
    Browsers,
    /// Operating system families of sessions.
    OperatingSystems,
    /// Device types of sessions.
    Devices,
}

impl TopDimension {
    fn dim(self) -> Dim {
        match self {
            Self::Pages => Dim::Page,
            Self::Referrers => Dim::Referrer,
            Self::Clicks => Dim::Click,
            Self::Countries => Dim::Country,
            Self::Regions => Dim::Region,
            Self::Cities => Dim::City,
            Self::Browsers => Dim::Browser,
            Self::OperatingSystems => Dim::Os,
            Self::Devices => Dim::Device,
        }
    }
}

/// One line of a top list. Bots' sessions are in no line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopItem {
    /// Url, referrer, label, country code, region, city, browser, OS or
    /// device type.
    pub item: String,
    /// The country of a region or city (`None` when unknown, and for the
    /// other lists).
    pub country: Option<String>,
    /// Events in the range: page views (clicks for the click labels).
    pub count: i64,
    /// Distinct visitors with such an event in the range (exact); for the
    /// lists by session (place, browser, OS, device), with any event in
    /// the range from such a session.
    pub visitors: i64,
}

const SUMMARY_COLUMNS: &str = "s.id, s.token, s.user_agent, s.referrer, s.entry_url, \
     s.country, s.region, s.city, s.browser, s.browser_version, s.os, s.os_version, s.device, \
     s.visitor_id, s.bot, s.first_seen AS first_seen_us, s.last_seen AS last_seen_us, \
     COALESCE(r.events, 0) AS events, COALESCE(r.page_views, 0) AS page_views \
     FROM sessions s LEFT JOIN rollup_session r ON r.session_id = s.id";

#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = BigInt)]
    quarter: i64,
    #[diesel(sql_type = BigInt)]
    events: i64,
    #[diesel(sql_type = BigInt)]
    page_views: i64,
    #[diesel(sql_type = BigInt)]
    clicks: i64,
    #[diesel(sql_type = BigInt)]
    sessions: i64,
    #[diesel(sql_type = BigInt)]
    duration_us: i64,
}

#[derive(QueryableByName)]
struct VisitorRow {
    #[diesel(sql_type = BigInt)]
    unit: i64,
    #[diesel(sql_type = BigInt)]
    prev: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct ItemTotal {
    #[diesel(sql_type = Text)]
    item: String,
    #[diesel(sql_type = BigInt)]
    total: i64,
}

/// A range of quarters cut into rollup units: whole UTC days inside, and
/// quarters at the edges, as `(grain, first unit, end unit)`, empty ones
/// left out.
fn unit_ranges(from_q: i64, to_q: i64) -> Vec<(Grain, i64, i64)> {
    let d1 = (from_q + QUARTERS_PER_DAY - 1).div_euclid(QUARTERS_PER_DAY);
    let d2 = to_q.div_euclid(QUARTERS_PER_DAY);
    let ranges = if d1 < d2 {
        vec![
            (Grain::Quarter, from_q, d1 * QUARTERS_PER_DAY),
            (Grain::Day, d1, d2),
            (Grain::Quarter, d2 * QUARTERS_PER_DAY, to_q),
        ]
    } else {
        vec![(Grain::Quarter, from_q, to_q)]
    };
    ranges.into_iter().filter(|(_, a, b)| a < b).collect()
}

/// The rows of a rollup table (`select`: its columns, `table`, and
/// `condition` with its `binds`, repeated per part) inside `from_q..to_q`,
/// as a `UNION ALL` of one range scan per [`unit_ranges`] part. Each part is
/// a plain range of the primary key `(grain, dim, unit, …)`, which on
/// PostgreSQL carries `n` (`INCLUDE`): an index-only scan that reads no table
/// pages, where one `OR` of the ranges would be a bitmap heap scan reading
/// about one table page per row.
fn units_union(
    select: &str,
    table: &str,
    condition: &str,
    binds: &[Param],
    from_q: i64,
    to_q: i64,
) -> (String, Vec<Param>) {
    let mut sql = Vec::new();
    let mut params = Vec::new();
    for (grain, a, b) in unit_ranges(from_q, to_q) {
        let grain = grain.stored();
        sql.push(format!(
            "SELECT {select} FROM {table} WHERE grain = {grain} AND {condition} \
             AND unit >= ? AND unit < ?"
        ));
        params.extend(binds.iter().cloned());
        params.push(Param::Int(a));
        params.push(Param::Int(b));
    }
    if sql.is_empty() {
        sql.push(format!("SELECT {select} FROM {table} WHERE 1 = 0"));
    }
    (sql.join(" UNION ALL "), params)
}

impl Store {
    /// Sessions, newest first by `(first_seen, id)`.
    pub fn list_sessions(&self, q: &SessionQuery) -> Result<Vec<SessionSummary>, StoreError> {
        let mut sql = format!("SELECT {SUMMARY_COLUMNS} WHERE 1 = 1");
        let mut params = Vec::new();
        if let Some(from) = q.from_us {
            sql.push_str(" AND s.first_seen >= ?");
            params.push(Param::Int(from));
        }
        if let Some(to) = q.to_us {
            sql.push_str(" AND s.first_seen < ?");
            params.push(Param::Int(to));
        }
        for (column, value) in [
            ("country", &q.country),
            ("device", &q.device),
            ("browser", &q.browser),
        ] {
            if let Some(value) = value {
                sql.push_str(&format!(" AND s.{column} = ?"));
                params.push(Param::Text(value.clone()));
            }
        }
        if let Some(referrer) = &q.referrer {
            sql.push_str(" AND substr(s.referrer, 1, length(?)) = ?");
            params.push(Param::Text(referrer.clone()));
            params.push(Param::Text(referrer.clone()));
        }
        if let Some((first_seen, id)) = q.before {
            // The first comparison alone is what an index range can use.
            sql.push_str(" AND s.first_seen <= ? AND (s.first_seen < ? OR s.id < ?)");
            params.extend([
                Param::Int(first_seen),
                Param::Int(first_seen),
                Param::Int(id),
            ]);
        }
        sql.push_str(" ORDER BY s.first_seen DESC, s.id DESC LIMIT ?");
        params.push(Param::Int(q.limit));
        load(self, &sql, &params)
    }

    /// One session with its counters.
    pub fn session_summary(&self, token: &str) -> Result<Option<SessionSummary>, StoreError> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} WHERE s.token = ?");
        Ok(load(self, &sql, &[Param::Text(token.to_owned())])?.pop())
    }

    /// Events, oldest first by `(occurred_at, id)`.
    pub fn list_events(&self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} WHERE 1 = 1");
        let mut params = Vec::new();
        if let Some(from) = q.from_us {
            sql.push_str(" AND e.occurred_at >= ?");
            params.push(Param::Int(from));
        }
        if let Some(to) = q.to_us {
            sql.push_str(" AND e.occurred_at < ?");
            params.push(Param::Int(to));
        }
        if let Some(kind) = &q.kind {
            sql.push_str(" AND e.kind = ?");
            params.push(Param::Text(kind.clone()));
        }
        if let Some(session) = &q.session {
            sql.push_str(" AND e.session_id = (SELECT id FROM sessions WHERE token = ?)");
            params.push(Param::Text(session.clone()));
        }
        if let Some(prefix) = &q.url_prefix {
            sql.push_str(" AND substr(e.url, 1, length(?)) = ?");
            params.push(Param::Text(prefix.clone()));
            params.push(Param::Text(prefix.clone()));
        }
        if let Some(label) = &q.label {
            sql.push_str(" AND e.label = ?");
            params.push(Param::Text(label.clone()));
        }
        if let Some((at, id)) = q.after {
            sql.push_str(" AND e.occurred_at >= ? AND (e.occurred_at > ? OR e.id > ?)");
            params.extend([Param::Int(at), Param::Int(at), Param::Int(id)]);
        }
        sql.push_str(" ORDER BY e.occurred_at, e.id LIMIT ?");
        params.push(Param::Int(q.limit));
        load(self, &sql, &params)
    }

    /// Stats for consecutive buckets given by their bounds
    /// (`bounds[i]..bounds[i + 1]` is bucket `i`), and the totals of the
    /// whole range. Reads only rollups, so each bound must start a quarter
    /// hour (every time zone's hours and days do) and be later than the one
    /// before: [`StoreError::BucketBounds`] otherwise.
    pub fn bucket_stats(&self, bounds: &[DateTime<Utc>]) -> Result<BucketStats, StoreError> {
        let bounds = bound_quarters(bounds)?;
        let (out, total) = self.quarter_stats(&bounds)?;
        let buckets = bounds
            .iter()
            .zip(out)
            .map(|(&q, figures)| Bucket {
                start: time_of(q),
                figures,
            })
            .collect();
        Ok(BucketStats { buckets, total })
    }

    /// [`Store::bucket_stats`] with bounds in quarters.
    fn quarter_stats(
        &self,
        bounds: &[i64],
    ) -> Result<(Vec<BucketFigures>, BucketFigures), StoreError> {
        let buckets = bounds.len().saturating_sub(1);
        let mut out = vec![BucketFigures::default(); buckets];
        let mut total = BucketFigures::default();
        let (Some(&from), Some(&to)) = (bounds.first(), bounds.last()) else {
            return Ok((out, total));
        };
        let bucket_of = |unit: i64| bounds.partition_point(|&b| b <= unit).checked_sub(1);

        let stats: Vec<StatsRow> = load(
            self,
            "SELECT quarter, events, page_views, clicks, sessions, duration_us FROM rollup_stats \
             WHERE quarter >= ? AND quarter < ?",
            &[Param::Int(from), Param::Int(to)],
        )?;
        for row in stats {
            let Some(i) = bucket_of(row.quarter) else {
                continue;
            };
            for f in [&mut out[i], &mut total] {
                f.events += row.events;
                f.page_views += row.page_views;
                f.clicks += row.clicks;
                f.sessions_started += row.sessions;
                f.duration_sum_us += row.duration_us;
            }
        }
        let visitors: Vec<VisitorRow> = load(
            self,
            &format!(
                "SELECT unit, prev, n FROM rollup_visitors WHERE grain = {} \
                 AND dim = {} AND item = '' AND unit >= ? AND unit < ?",
                Grain::Quarter.stored(),
                Dim::All.stored(),
            ),
            &[Param::Int(from), Param::Int(to)],
        )?;
        for row in visitors {
            let Some(i) = bucket_of(row.unit) else {
                continue;
            };
            if row.prev < bounds[i] {
                out[i].visitors += row.n;
            }
            if row.prev < from {
                total.visitors += row.n;
            }
        }
        Ok((out, total))
    }

    /// The `limit` items with the most events in `range`, ties by item
    /// (regions and cities: by country, then name), with their exact
    /// distinct visitors. Reads only rollups.
    pub fn top(
        &self,
        dimension: TopDimension,
        range: TimeRange,
        limit: i64,
    ) -> Result<Vec<TopItem>, StoreError> {
        let (from_q, to_q) = range.quarters();
        let dim = dimension.dim().stored();
        let with_country = matches!(dimension, TopDimension::Regions | TopDimension::Cities);
        // Top `limit` by count first; visitors only for those items.
        let (rows, mut params) = units_union(
            "item, n",
            "rollup_counts",
            &format!("dim = {dim}"),
            &[],
            from_q,
            to_q,
        );
        params.push(Param::Int(limit));
        let totals: Vec<ItemTotal> = load(
            self,
            &format!(
                "SELECT item, CAST(SUM(n) AS BIGINT) AS total FROM ({rows}) r \
                 GROUP BY item HAVING SUM(n) > 0 ORDER BY total DESC, item LIMIT ?"
            ),
            &params,
        )?;
        if totals.is_empty() {
            return Ok(vec![]);
        }
        let marks = vec!["?"; totals.len()].join(", ");
        let mut binds: Vec<Param> = totals.iter().map(|t| Param::Text(t.item.clone())).collect();
        binds.push(Param::Int(from_q));
        let (rows, params) = units_union(
            "item, n",
            "rollup_visitors",
            &format!("dim = {dim} AND item IN ({marks}) AND prev < ?"),
            &binds,
            from_q,
            to_q,
        );
        let visitors: Vec<ItemTotal> = load(
            self,
            &format!("SELECT item, CAST(SUM(n) AS BIGINT) AS total FROM ({rows}) r GROUP BY item"),
            &params,
        )?;
        let visitors: std::collections::HashMap<String, i64> =
            visitors.into_iter().map(|v| (v.item, v.total)).collect();
        Ok(totals
            .into_iter()
            .map(|t| {
                let visitors = visitors.get(&t.item).copied().unwrap_or_default();
                let (country, item) = if with_country {
                    let (country, name) = split_place_item(&t.item);
                    (country.map(str::to_owned), name.to_owned())
                } else {
                    (None, t.item)
                };
                TopItem {
                    item,
                    country,
                    count: t.total,
                    visitors,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_cut_into_days_inside_and_quarters_at_the_edges() {
        assert_eq!(
            unit_ranges(90, 2 * 96 + 5),
            vec![
                (Grain::Quarter, 90, 96),
                (Grain::Day, 1, 2),
                (Grain::Quarter, 192, 197)
            ]
        );
        assert_eq!(unit_ranges(10, 20), vec![(Grain::Quarter, 10, 20)]);
        assert_eq!(unit_ranges(96, 192), vec![(Grain::Day, 1, 2)]);
        assert_eq!(unit_ranges(20, 20), vec![]);

        let (sql, params) = units_union("item, n", "t", "dim = 1", &[], 90, 2 * 96 + 5);
        assert_eq!(sql.matches(" UNION ALL ").count(), 2);
        assert_eq!(sql.matches("grain = 0").count(), 2);
        assert_eq!(sql.matches("grain = 1").count(), 1);
        let values: Vec<i64> = params
            .iter()
            .map(|p| match p {
                Param::Int(v) => *v,
                _ => unreachable!("only integers are bound here"),
            })
            .collect();
        assert_eq!(values, vec![90, 96, 1, 2, 192, 197]);
        let (sql, params) = units_union("item, n", "t", "dim = 1", &[], 20, 20);
        assert_eq!(sql, "SELECT item, n FROM t WHERE 1 = 0");
        assert!(params.is_empty());
    }
}
