//! Anomalies and the detector's state as the API shows them, and their
//! stored form.

use beacon_metrics::anomaly::{Anomaly, AnomalyKind, Mode, SeriesKey};
use beacon_store::{AnomalyRow, DetectorStateRow};
use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

/// An anomaly as `/anomalies` and `/stream` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyView {
    /// `site`, `page:<url>` or `referrer:<referrer>`.
    pub series: String,
    /// `spike`, `drop` or `dark`.
    pub kind: String,
    /// Estimated onset, RFC 3339.
    pub onset: String,
    /// Start of the interval that opened it, RFC 3339.
    pub start: String,
    /// When it ended, RFC 3339; `null` while open.
    pub end: Option<String>,
    /// Page views counted over the evidence.
    pub observed: f64,
    /// Page views expected over the evidence.
    pub expected: f64,
    /// Improbability of the evidence, in standard deviations.
    pub severity: f64,
}

impl AnomalyView {
    /// Where it is, in words: `on the whole site`, `on page <url>`, `in
    /// page views from referrer <referrer>`.
    pub fn series_in_words(&self) -> String {
        if let Some(url) = self.series.strip_prefix("page:") {
            format!("on page {url}")
        } else if let Some(referrer) = self.series.strip_prefix("referrer:") {
            format!("in page views from referrer {referrer}")
        } else if self.series == "site" {
            "on the whole site".to_owned()
        } else {
            format!("on {}", self.series)
        }
    }
}

fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl From<&AnomalyRow> for AnomalyView {
    fn from(row: &AnomalyRow) -> Self {
        Self {
            series: row.series.clone(),
            kind: row.kind.clone(),
            onset: rfc3339(row.onset_us),
            start: rfc3339(row.start_us),
            end: row.end_us.map(rfc3339),
            observed: row.observed,
            expected: row.expected,
            severity: row.severity,
        }
    }
}

/// What the detecting instance last reported about its detector, as
/// `/anomalies` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorView {
    /// `learning` (less than a day of history: opens nothing), `cautious`
    /// (less than two weeks: asks for stronger evidence) or `ready`.
    pub mode: String,
    /// Days of history of the site's series, to two decimals.
    pub history_days: f64,
    /// Series watched: the site, and its busiest pages and referrers.
    pub series: i64,
    /// When the detecting instance reported it, RFC 3339 (at every
    /// interval while one runs).
    pub updated: String,
}

impl From<&DetectorStateRow> for DetectorView {
    fn from(row: &DetectorStateRow) -> Self {
        let days = row.history_us as f64 / 86_400_000_000.0;
        Self {
            mode: row.mode.clone(),
            history_days: (days * 100.0).round() / 100.0,
            series: row.series,
            updated: rfc3339(row.updated_us),
        }
    }
}

/// The stored name of a mode.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Learning => "learning",
        Mode::Cautious => "cautious",
        Mode::Ready => "ready",
    }
}

/// The stored name of a series.
pub fn series_name(key: &SeriesKey) -> String {
    match key {
        SeriesKey::Site => "site".to_owned(),
        SeriesKey::Page(url) => format!("page:{url}"),
        SeriesKey::Referrer(referrer) => format!("referrer:{referrer}"),
    }
}

/// The stored name of a kind.
pub fn kind_name(kind: AnomalyKind) -> &'static str {
    match kind {
        AnomalyKind::Spike => "spike",
        AnomalyKind::Drop => "drop",
        AnomalyKind::Dark => "dark",
    }
}

/// An anomaly of a series as stored.
pub fn to_row(series: &SeriesKey, anomaly: &Anomaly) -> AnomalyRow {
    AnomalyRow {
        series: series_name(series),
        kind: kind_name(anomaly.kind).to_owned(),
        onset_us: anomaly.onset.timestamp_micros(),
        start_us: anomaly.start.timestamp_micros(),
        end_us: anomaly.end.map(|e| e.timestamp_micros()),
        observed: anomaly.observed as f64,
        expected: anomaly.expected,
        severity: anomaly.severity,
    }
}
