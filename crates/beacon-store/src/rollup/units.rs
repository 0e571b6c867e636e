//! The rollups' units of time and their keys as stored: the one place that
//! knows a quarter is 15 minutes and what the integers in the `grain` and
//! `dim` columns mean. The read API takes [`TimeRange`]s and
//! `DateTime<Utc>` bounds, so no caller deals in quarters.

use chrono::{DateTime, Utc};

use crate::StoreError;

/// Microseconds in a quarter (15 minutes): the finest rollup unit. Every
/// time-zone offset in use is a multiple of 15 minutes.
pub(crate) const QUARTER_US: i64 = 900_000_000;
/// Quarters in a UTC day.
pub(crate) const QUARTERS_PER_DAY: i64 = 96;

/// The quarter holding a time (times are never before 1970 here: the model
/// keeps client times within days of the receive time).
pub(crate) fn quarter_of(micros: i64) -> i64 {
    micros.div_euclid(QUARTER_US)
}

/// The UTC day holding a quarter.
pub(crate) fn day_of(quarter: i64) -> i64 {
    quarter.div_euclid(QUARTERS_PER_DAY)
}

/// The start of a quarter, when it is a representable time.
fn start_of(quarter: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(quarter.checked_mul(QUARTER_US)?)
}

/// The quarter that starts at `t`, if one does.
fn aligned_quarter(t: DateTime<Utc>) -> Option<i64> {
    let micros = t.timestamp_micros();
    (micros.rem_euclid(QUARTER_US) == 0).then(|| quarter_of(micros))
}

/// A rollup grain: the unit a row of `rollup_counts` or `rollup_visitors`
/// counts over. Declared in the order of the stored values, so that rows
/// sort as their keys do in the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Grain {
    /// A quarter: `unit` is a quarter number.
    Quarter,
    /// A UTC day: `unit` is a day number.
    Day,
}

impl Grain {
    /// The value of the `grain` column.
    pub(crate) const fn stored(self) -> i16 {
        match self {
            Self::Quarter => 0,
            Self::Day => 1,
        }
    }
}

/// A rollup dimension: what the `item` of a row is. Declared in the order
/// of the stored values, like [`Grain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Dim {
    /// Every event; the item is empty.
    All,
    /// The url of a page view.
    Page,
    /// The referrer of a page view.
    Referrer,
    /// The label of a click.
    Click,
    /// The session's country code.
    Country,
    /// The session's region, after its country (see [`place_item`]).
    Region,
    /// The session's city, after its country (see [`place_item`]).
    City,
    /// The session's browser family.
    Browser,
    /// The session's operating system family.
    Os,
    /// The session's device type.
    Device,
}

impl Dim {
    const EVERY: [Self; 10] = [
        Self::All,
        Self::Page,
        Self::Referrer,
        Self::Click,
        Self::Country,
        Self::Region,
        Self::City,
        Self::Browser,
        Self::Os,
        Self::Device,
    ];

    /// The session dimensions, in the order of the columns of
    /// `rollup_seen_profile` (see [`Dim::of_session`]).
    pub(crate) const SESSION: [Self; 6] = [
        Self::Country,
        Self::Region,
        Self::City,
        Self::Browser,
        Self::Os,
        Self::Device,
    ];

    /// The value of the `dim` column.
    pub(crate) const fn stored(self) -> i16 {
        match self {
            Self::All => 0,
            Self::Page => 1,
            Self::Referrer => 2,
            Self::Click => 3,
            Self::Country => 4,
            Self::Region => 5,
            Self::City => 6,
            Self::Browser => 7,
            Self::Os => 8,
            Self::Device => 9,
        }
    }

    /// True for the dimensions that describe a session (place, browser,
    /// system, device) rather than an event: every event of the session
    /// carries the item (visitors), and its page views are counted.
    pub(crate) fn of_session(self) -> bool {
        Self::SESSION.contains(&self)
    }

    /// The dimension a `dim` column holds (`None` for a value this version
    /// does not know).
    pub(crate) fn from_stored(value: i16) -> Option<Self> {
        Self::EVERY.into_iter().find(|d| d.stored() == value)
    }
}

/// Separates the country from the name in the item of a region or city,
/// so that "Springfield" in two countries stays two items. A control
/// character: stored text never holds one (the model strips them).
pub(crate) const PLACE_SEPARATOR: char = '\u{1f}';

/// The item of a region or city: its country code (empty when unknown),
/// [`PLACE_SEPARATOR`], its name.
pub(crate) fn place_item(country: Option<&str>, name: &str) -> String {
    format!("{}{PLACE_SEPARATOR}{name}", country.unwrap_or_default())
}

/// A region or city item split back into its country (`None` when
/// unknown) and name.
pub(crate) fn split_place_item(item: &str) -> (Option<&str>, &str) {
    match item.split_once(PLACE_SEPARATOR) {
        Some(("", name)) => (None, name),
        Some((country, name)) => (Some(country), name),
        None => (None, item),
    }
}

/// A non-empty, half-open range of time that the rollups can answer
/// exactly: it starts and ends on boundaries of their finest unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// First quarter inside.
    from: i64,
    /// First quarter after.
    to: i64,
}

impl TimeRange {
    /// The smallest range the rollups can answer that covers `from..to`
    /// (widened outward to whole units). `None` when `from` is not before
    /// `to`, or the widened end is not a representable time.
    pub fn covering(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Self> {
        if from >= to {
            return None;
        }
        let range = Self {
            from: quarter_of(from.timestamp_micros()),
            to: quarter_of(to.timestamp_micros() - 1) + 1,
        };
        start_of(range.to).map(|_| range)
    }

    /// Where the range starts (inclusive).
    pub fn start(&self) -> DateTime<Utc> {
        start_of(self.from).unwrap_or_default()
    }

    /// Where the range ends (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        start_of(self.to).unwrap_or_default()
    }

    /// First quarter inside, and first quarter after.
    pub(crate) fn quarters(&self) -> (i64, i64) {
        (self.from, self.to)
    }
}

/// Bucket bounds as quarters: each bound must start a quarter, and each be
/// later than the one before.
pub(crate) fn bound_quarters(bounds: &[DateTime<Utc>]) -> Result<Vec<i64>, StoreError> {
    let quarters = bounds
        .iter()
        .map(|&t| aligned_quarter(t))
        .collect::<Option<Vec<i64>>>()
        .ok_or(StoreError::BucketBounds)?;
    if quarters.windows(2).any(|w| w[0] >= w[1]) {
        return Err(StoreError::BucketBounds);
    }
    Ok(quarters)
}

/// The start of a quarter known to be a representable time (a bound the
/// caller gave, or a range's own quarter).
pub(crate) fn time_of(quarter: i64) -> DateTime<Utc> {
    start_of(quarter).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn stored_dimensions_read_back_as_themselves() {
        for dim in Dim::EVERY {
            assert_eq!(Dim::from_stored(dim.stored()), Some(dim), "{dim:?}");
        }
        assert_eq!(Dim::from_stored(99), None);
    }

    #[test]
    fn a_place_item_splits_back_into_its_country_and_name() {
        for (country, name) in [
            (Some("DE"), "Berlin"),
            (None, "Springfield"),
            (Some("US"), ""),
            (Some("Côte d'Ivoire"), "Abidjan / Plateau"),
        ] {
            let item = place_item(country, name);
            assert_eq!(split_place_item(&item), (country, name), "{item:?}");
        }
        assert_ne!(
            place_item(Some("US"), "Springfield"),
            place_item(Some("CA"), "Springfield")
        );
    }

    #[test]
    fn a_covering_range_is_widened_to_whole_quarters() {
        let range =
            TimeRange::covering(at("2026-11-30T10:07:00Z"), at("2026-11-30T10:30:01Z")).unwrap();
        assert_eq!(range.start(), at("2026-11-30T10:00:00Z"));
        assert_eq!(range.end(), at("2026-11-30T10:45:00Z"));
        let exact =
            TimeRange::covering(at("2026-11-30T10:00:00Z"), at("2026-11-30T10:15:00Z")).unwrap();
        assert_eq!(exact.end() - exact.start(), chrono::Duration::minutes(15));
        let t = at("2026-11-30T10:00:00Z");
        assert_eq!(TimeRange::covering(t, t), None, "an empty range");
    }

    #[test]
    fn bucket_bounds_must_be_increasing_quarter_hours() {
        let ok = [at("2026-11-30T10:00:00Z"), at("2026-11-30T11:15:00Z")];
        assert_eq!(bound_quarters(&ok).unwrap().len(), 2);
        for (bounds, case) in [
            (
                vec![at("2026-11-30T10:00:00Z"), at("2026-11-30T10:20:00Z")],
                "a bound inside a quarter",
            ),
            (
                vec![at("2026-11-30T11:00:00Z"), at("2026-11-30T10:00:00Z")],
                "decreasing bounds",
            ),
            (
                vec![at("2026-11-30T10:00:00Z"), at("2026-11-30T10:00:00Z")],
                "an empty bucket",
            ),
        ] {
            assert!(bound_quarters(&bounds).is_err(), "{case}");
        }
    }
}
