//! Anomaly detection on counts per interval: spikes, drops and dark periods.
//!
//! A [`Detector`] watches one series (page views per interval of one site,
//! page or referrer); an [`AnomalyDetector`] watches a site's total and its
//! top pages and referrers. Both are fed complete intervals in time order
//! (`observe`, or `gap` when the count is unknown) and answer with
//! [`Event`]s. Time is always passed in; nothing here reads a clock or does
//! I/O. The model is explained for owners in `docs/anomalies.md`.

mod baseline;
mod detector;
mod multi;
mod replay;
mod stats;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_multi;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use detector::Detector;
pub use multi::{AnomalyDetector, IntervalCounts, SeriesEvent, SeriesKey};
pub use replay::{parse_series, parse_step, replay, ReplayLine, Series};

/// What kind of departure from the expected traffic an anomaly is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyKind {
    /// Well above the expected range, for long enough to matter.
    Spike,
    /// Well below the expected range while enough traffic was expected to
    /// tell.
    Drop,
    /// No events at all for so long that, at the expected rate, it is
    /// practically impossible (a tracker removed from the site).
    Dark,
}

/// One anomaly of one series, as opened (and later closed) by a detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Spike, drop or dark.
    pub kind: AnomalyKind,
    /// Start of the first interval of the evidence (the estimated onset);
    /// never after `start`.
    pub onset: DateTime<Utc>,
    /// Start of the interval whose count made the detector open it: the
    /// detector had seen nothing later (no look-ahead).
    pub start: DateTime<Utc>,
    /// Start of the first interval of the run that was back to normal;
    /// `None` while open. It is reported a quiet period later (see
    /// [`DetectorConfig::quiet_after`]).
    pub end: Option<DateTime<Utc>>,
    /// Events counted from `onset` through the interval at `start`.
    pub observed: u64,
    /// Events expected over the same intervals.
    pub expected: f64,
    /// How improbable the evidence was under normal traffic, in standard
    /// deviations: about 4 is rare, 10 and more is unmistakable.
    pub severity: f64,
}

/// What a detector reports after an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "anomaly", rename_all = "lowercase")]
pub enum Event {
    /// An anomaly opened at this interval.
    Opened(Anomaly),
    /// An open anomaly ended (its `end` is set).
    Closed(Anomaly),
}

/// How much a detector knows about its series' rhythm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Less than a day of history: it learns and opens nothing.
    Learning,
    /// Less than two weeks: it opens only on stronger evidence, since it has
    /// seen each weekday at most once.
    Cautious,
    /// Two weeks or more.
    Ready,
}

/// Tuning of a [`Detector`]; `DetectorConfig::default()` needs no changes to
/// be useful.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Width of an interval (5 min). Whole seconds, from one minute to one
    /// day, dividing a day.
    pub step: Duration,
    /// Above 1 opens on weaker evidence, below 1 asks for stronger (1.0).
    /// It divides the standard deviations an anomaly must reach and scales
    /// the improbability a dark period must reach.
    pub sensitivity: f64,
    /// A spike is at least this many times the expected count (1.8).
    pub spike_ratio: f64,
    /// A drop is at most this fraction of the expected count (0.45): a
    /// holiday that takes away a third of the traffic is not a drop.
    pub drop_ratio: f64,
    /// A spike or drop differs from the expected count by at least this many
    /// events over its window (10): a few visitors are never an incident.
    pub min_change: f64,
    /// Shortest spike or drop, rounded up to whole intervals (10 min).
    pub min_duration: Duration,
    /// Longest evidence window a spike or drop is judged on (2 h).
    pub max_window: Duration,
    /// Width of the window that must look normal again for an open spike
    /// or drop to end (15 min); a dark period ends with the first event.
    pub close_after: Duration,
    /// After a spike or drop looked normal, how long it must stay so before
    /// it is reported closed (1 h): if it comes back meanwhile, it goes on
    /// as the same anomaly instead of opening a new one.
    pub quiet_after: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            step: Duration::from_secs(300),
            sensitivity: 1.0,
            spike_ratio: 1.8,
            drop_ratio: 0.45,
            min_change: 10.0,
            min_duration: Duration::from_secs(600),
            max_window: Duration::from_secs(7200),
            close_after: Duration::from_secs(900),
            quiet_after: Duration::from_secs(3600),
        }
    }
}

/// Why a detector or the replay refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnomalyError {
    /// The step is not whole seconds from a minute to a day dividing a day.
    #[error("step must be whole seconds from 1 minute to 1 day and divide a day, got {0:?}")]
    BadStep(Duration),
    /// A configuration value is out of range.
    #[error("invalid detector setting: {0}")]
    BadConfig(&'static str),
    /// An interval was given at or before one already seen.
    #[error("interval {at} is not after the last one seen ({last})")]
    OutOfOrder {
        /// The interval given.
        at: DateTime<Utc>,
        /// The latest interval already seen.
        last: DateTime<Utc>,
    },
    /// An interval does not start a whole number of steps after the first.
    #[error("interval {0} is not a whole number of steps after the first one")]
    Misaligned(DateTime<Utc>),
    /// History was given in buckets that are not whole steps.
    #[error("history buckets must be a whole number of steps wide")]
    BadHistoryWidth,
    /// A line of the replayed CSV is wrong.
    #[error("line {line}: {message}")]
    Csv {
        /// 1-based line number in the file.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

impl DetectorConfig {
    /// The step in seconds, checked.
    pub(crate) fn step_secs(&self) -> Result<i64, AnomalyError> {
        let secs = self.step.as_secs();
        let whole = self.step.subsec_nanos() == 0;
        if !whole || !(60..=86_400).contains(&secs) || 86_400 % secs != 0 {
            return Err(AnomalyError::BadStep(self.step));
        }
        if !(self.sensitivity.is_finite() && self.sensitivity > 0.0) {
            return Err(AnomalyError::BadConfig("sensitivity must be positive"));
        }
        if !(self.spike_ratio > 1.0 && self.spike_ratio.is_finite()) {
            return Err(AnomalyError::BadConfig("spike_ratio must be above 1"));
        }
        if !(self.drop_ratio > 0.0 && self.drop_ratio < 1.0) {
            return Err(AnomalyError::BadConfig(
                "drop_ratio must be between 0 and 1",
            ));
        }
        Ok(secs as i64)
    }

    /// `d` in whole intervals, at least one.
    pub(crate) fn intervals(&self, d: Duration, step_secs: i64) -> usize {
        let secs = d.as_secs() as i64;
        crate::time::ceil_div(secs, step_secs).clamp(1, 10_000) as usize
    }
}
