//! What the detector is fed: page views per interval of the site, of its
//! busiest pages and of its busiest referrers, read from the events; and
//! the warm start of the page and referrer series from the rollups.

use std::time::Duration;

use beacon_metrics::anomaly::{AnomalyDetector, IntervalCounts, SeriesEvent, SeriesKey};
use beacon_store::{ItemCounts, Store, StoreError, ViewDimension};
use chrono::{DateTime, TimeDelta, Utc};

/// Pages watched beside the site's total.
pub(super) const TOP_PAGES: usize = 5;

/// Referrers watched beside the site's total.
pub(super) const TOP_REFERRERS: usize = 5;

/// Busiest items of a read listed to the detector beside the ones it
/// watches: about twice as many as it watches, so that a newcomer is
/// noticed (see `IntervalCounts`).
const CANDIDATES: usize = 10;

/// A page or referrer is warmed when it was among the busiest of the last
/// days of rolled-up history.
const RANKED_OVER: TimeDelta = TimeDelta::days(7);

/// A detector being fed, and the start of the next interval it expects.
pub(super) struct Fed {
    pub(super) detector: AnomalyDetector,
    pub(super) next: DateTime<Utc>,
}

/// Page views of consecutive intervals: the site's, and those of the
/// pages and referrers listed to the detector.
struct Reads {
    totals: Vec<u64>,
    pages: Vec<ItemCounts>,
    referrers: Vec<ItemCounts>,
}

/// The items of `dimension` the detector watches, then the busiest of the
/// range that it does not, `CANDIDATES` of them at most.
pub(super) fn items(
    store: &Store,
    detector: &AnomalyDetector,
    dimension: ViewDimension,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut items: Vec<String> = detector
        .series()
        .into_iter()
        .filter_map(|key| match (key, dimension) {
            (SeriesKey::Page(url), ViewDimension::Pages) => Some(url),
            (SeriesKey::Referrer(r), ViewDimension::Referrers) => Some(r),
            _ => None,
        })
        .collect();
    for item in store.busiest_items(dimension, from, to, CANDIDATES)? {
        if !items.contains(&item) {
            items.push(item);
        }
    }
    Ok(items)
}

fn read(
    store: &Store,
    detector: &AnomalyDetector,
    start: DateTime<Utc>,
    step: TimeDelta,
    intervals: usize,
) -> Result<Reads, StoreError> {
    let step_std = step
        .to_std()
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let end = start + step * i32::try_from(intervals).unwrap_or(i32::MAX);
    let per_item = |dimension| {
        let items = items(store, detector, dimension, start, end)?;
        store.item_views_per_interval(dimension, &items, start, step_std, intervals)
    };
    Ok(Reads {
        totals: store.page_views_per_interval(start, step_std, intervals)?,
        pages: per_item(ViewDimension::Pages)?,
        referrers: per_item(ViewDimension::Referrers)?,
    })
}

/// The counts of interval `i` of every item, as the detector takes them.
fn at(items: &[ItemCounts], i: usize) -> Vec<(&str, u64)> {
    items
        .iter()
        .map(|c| (c.item.as_str(), c.counts.get(i).copied().unwrap_or(0)))
        .collect()
}

/// Feeds the intervals from `fed.next` to `end` from the events; when they
/// cannot be read they are gaps. Returns what opened and closed.
pub(super) fn feed(
    store: &Store,
    fed: &mut Fed,
    end: DateTime<Utc>,
    step: TimeDelta,
) -> Vec<SeriesEvent> {
    let mut out = Vec::new();
    if fed.next >= end {
        return out;
    }
    let intervals =
        usize::try_from((end - fed.next).num_seconds() / step.num_seconds().max(1)).unwrap_or(0);
    match read(store, &fed.detector, fed.next, step, intervals) {
        Ok(reads) => {
            for (i, &total) in reads.totals.iter().enumerate() {
                let pages = at(&reads.pages, i);
                let referrers = at(&reads.referrers, i);
                let interval = IntervalCounts {
                    total,
                    pages: &pages,
                    referrers: &referrers,
                };
                match fed.detector.observe(fed.next, &interval) {
                    Ok(events) => out.extend(events),
                    Err(e) => log::warn!("anomaly detector refused an interval: {e}"),
                }
                fed.next += step;
            }
        }
        Err(e) => {
            log::warn!("page views not read, the intervals are a gap: {e}");
            gap_until(fed, end, step);
        }
    }
    fed.next = end;
    out
}

/// Records the intervals from `fed.next` to `end` as unknown.
pub(super) fn gap_until(fed: &mut Fed, end: DateTime<Utc>, step: TimeDelta) {
    while fed.next < end {
        if let Err(e) = fed.detector.gap(fed.next) {
            log::warn!("anomaly detector refused a gap: {e}");
        }
        fed.next += step;
    }
}

/// Warms the series of the pages and referrers that were busiest in the
/// last days before `to`, on their rolled-up page views per quarter from
/// `first` (the site's first tracked quarter) to `to`.
pub(super) fn warm_items(
    store: &Store,
    detector: &mut AnomalyDetector,
    first: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), String> {
    let quarter = Duration::from_secs(900);
    for (dimension, max) in [
        (ViewDimension::Pages, TOP_PAGES),
        (ViewDimension::Referrers, TOP_REFERRERS),
    ] {
        let items = store
            .busiest_items_rolled_up(dimension, to - RANKED_OVER, to, max)
            .map_err(|e| e.to_string())?;
        let (start, counts) = store
            .item_views_per_quarter(dimension, &items, first, to)
            .map_err(|e| e.to_string())?;
        for c in counts {
            let key = match dimension {
                ViewDimension::Pages => SeriesKey::Page(c.item),
                ViewDimension::Referrers => SeriesKey::Referrer(c.item),
            };
            let history: Vec<Option<u64>> = c.counts.into_iter().map(Some).collect();
            detector
                .warm(&key, start, quarter, &history)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
