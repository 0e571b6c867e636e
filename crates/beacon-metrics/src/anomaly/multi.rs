//! [`AnomalyDetector`]: a site's total and its top pages and referrers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Anomaly, AnomalyError, AnomalyKind, Detector, DetectorConfig, Event, Mode};

/// Which series of a site an anomaly is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "series", content = "key", rename_all = "lowercase")]
pub enum SeriesKey {
    /// Page views of the whole site.
    Site,
    /// Page views of one page (its url as the caller labels it).
    Page(String),
    /// Page views coming from one referrer.
    Referrer(String),
}

/// An [`Event`] of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesEvent {
    /// The series.
    pub series: SeriesKey,
    /// What happened to it.
    pub event: Event,
}

/// Page views of one complete interval: the site's total and the counts of
/// its busiest pages and referrers in it (any order; labels not listed
/// count zero). Listing about twice as many entries as are tracked lets a
/// newcomer be noticed.
#[derive(Debug, Clone, Copy)]
pub struct IntervalCounts<'a> {
    /// Page views of the site.
    pub total: u64,
    /// `(page, views)` pairs.
    pub pages: &'a [(&'a str, u64)],
    /// `(referrer, views)` pairs.
    pub referrers: &'a [(&'a str, u64)],
}

#[derive(Debug, Clone)]
struct Tracked {
    key: String,
    detector: Detector,
    /// Exponentially weighted mean count, to rank the series.
    score: f64,
    /// Its open anomaly is not reported (it moves with the site, or the
    /// series is too new to speak for itself).
    hidden: bool,
}

#[derive(Debug, Clone)]
struct Dimension {
    max: usize,
    series: Vec<Tracked>,
}

/// Sensitivity of page and referrer series relative to the site's: they
/// are many, so each asks for a little more evidence to keep the false
/// alerts of a whole site low.
const SUB_SERIES_SENSITIVITY: f64 = 0.9;

/// Which way the whole site is moving, if clearly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SiteMove {
    Steady,
    Up,
    Down,
}

impl SiteMove {
    /// From the site's open anomaly, or its last hour halfway to one.
    fn of(site: &Detector) -> Self {
        let c = site.config();
        match site.open().map(|a| a.kind) {
            Some(AnomalyKind::Spike) => return Self::Up,
            Some(_) => return Self::Down,
            None => {}
        }
        match site.recent(Duration::from_secs(3600)) {
            Some((o, e)) if o > e * (1.0 + c.spike_ratio) / 2.0 => Self::Up,
            Some((o, e)) if o < e * (1.0 + c.drop_ratio) / 2.0 => Self::Down,
            _ => Self::Steady,
        }
    }

    /// A page or referrer moving with the whole site says nothing the
    /// site's own figures do not: one alert, not eleven.
    fn explains(self, kind: AnomalyKind) -> bool {
        match kind {
            AnomalyKind::Spike => self == Self::Up,
            AnomalyKind::Drop | AnomalyKind::Dark => self == Self::Down,
        }
    }
}

/// A drop or dark period of a page or referrer is believed only if what was
/// expected is within reach of its mean count of the last day: a referrer
/// that sent one burst two weeks ago has learned the burst, and its silence
/// since is no news.
fn plausible_shortfall(s: &Tracked, a: &Anomaly) -> bool {
    if a.kind == AnomalyKind::Spike {
        return true;
    }
    let step = s.detector.config().step.as_secs().max(1) as f64;
    let intervals = ((a.start - a.onset).num_seconds() as f64 / step).max(0.0) + 1.0;
    a.expected <= 4.0 * s.score * intervals + 5.0
}

/// Weight of the newest interval in a series' rank (about a day's memory
/// at five-minute steps).
const SCORE_ALPHA: f64 = 1.0 / 288.0;

impl Dimension {
    fn observe(
        &mut self,
        config: &DetectorConfig,
        t: DateTime<Utc>,
        counts: &[(&str, u64)],
        wrap: fn(String) -> super::SeriesKey,
        site: SiteMove,
        out: &mut Vec<SeriesEvent>,
    ) -> Result<(), AnomalyError> {
        for s in &mut self.series {
            let count = counts
                .iter()
                .find(|(k, _)| *k == s.key)
                .map_or(0, |(_, c)| *c);
            s.score += SCORE_ALPHA * (count as f64 - s.score);
            for event in s.detector.observe(t, count)? {
                // A page or referrer speaks for itself only with two weeks
                // of its own history: one that joined during a burst has
                // learned the burst.
                let show = match &event {
                    Event::Opened(a) => {
                        s.hidden = site.explains(a.kind)
                            || s.detector.mode() != Mode::Ready
                            || !plausible_shortfall(s, a);
                        !s.hidden
                    }
                    Event::Closed(_) => !std::mem::take(&mut s.hidden),
                };
                if show {
                    out.push(SeriesEvent {
                        series: wrap(s.key.clone()),
                        event,
                    });
                }
            }
        }
        let mut newcomers: Vec<&(&str, u64)> = counts
            .iter()
            .filter(|(k, c)| *c > 0 && !self.series.iter().any(|s| s.key == *k))
            .collect();
        newcomers.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        for (key, count) in newcomers {
            if self.series.len() >= self.max {
                // Replace the quietest series that has nothing open, only for
                // a clearly busier newcomer, so that ranks do not churn.
                let victim = self
                    .series
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.detector.open().is_none())
                    .min_by(|a, b| a.1.score.total_cmp(&b.1.score));
                match victim {
                    Some((i, s)) if *count as f64 > 4.0 * s.score + 5.0 => {
                        self.series.swap_remove(i);
                    }
                    _ => break,
                }
            }
            let mut detector = Detector::new(config.clone())?;
            detector.observe(t, *count)?;
            self.series.push(Tracked {
                key: (*key).to_owned(),
                detector,
                score: *count as f64 * SCORE_ALPHA,
                hidden: false,
            });
        }
        Ok(())
    }

    fn warm(
        &mut self,
        config: &DetectorConfig,
        key: &str,
        start: DateTime<Utc>,
        width: Duration,
        counts: &[Option<u64>],
    ) -> Result<(), AnomalyError> {
        let i = match self.series.iter().position(|s| s.key == key) {
            Some(i) => i,
            None if self.series.len() < self.max => {
                let detector = Detector::new(config.clone())?;
                self.series.push(Tracked {
                    key: key.to_owned(),
                    detector,
                    score: 0.0,
                    hidden: false,
                });
                self.series.len() - 1
            }
            None => return Ok(()),
        };
        let s = &mut self.series[i];
        s.detector.warm(start, width, counts)?;
        // Rank it by its history's mean count per step, so that a warmed
        // series is not displaced on its first live interval.
        let known: Vec<u64> = counts.iter().flatten().copied().collect();
        if !known.is_empty() {
            let steps = (width.as_secs() / s.detector.config().step.as_secs().max(1)).max(1);
            s.score = known.iter().sum::<u64>() as f64 / (known.len() as u64 * steps) as f64;
        }
        Ok(())
    }
}

/// Anomaly detection for one site: its total page views, and those of up
/// to `max_pages` pages and `max_referrers` referrers, so that one page
/// suddenly fed by one referrer is seen even when the total hardly moves.
///
/// Pages and referrers are tracked from the first interval they appear in
/// (while slots are free, or in place of a much quieter one): a newly
/// tracked series learns for a day before it can open anything, unless
/// [`warm`](Self::warm)ed.
#[derive(Debug, Clone)]
pub struct AnomalyDetector {
    /// Configuration of the page and referrer series.
    config: DetectorConfig,
    site: Detector,
    pages: Dimension,
    referrers: Dimension,
}

impl AnomalyDetector {
    /// A detector with no history.
    pub fn new(
        config: DetectorConfig,
        max_pages: usize,
        max_referrers: usize,
    ) -> Result<Self, AnomalyError> {
        let site = Detector::new(config.clone())?;
        let config = DetectorConfig {
            sensitivity: config.sensitivity * SUB_SERIES_SENSITIVITY,
            ..config
        };
        Ok(Self {
            site,
            pages: Dimension {
                max: max_pages,
                series: Vec::new(),
            },
            referrers: Dimension {
                max: max_referrers,
                series: Vec::new(),
            },
            config,
        })
    }

    /// Feeds the complete interval starting at `t`; returns what closed and
    /// opened, site first.
    pub fn observe(
        &mut self,
        t: DateTime<Utc>,
        counts: &IntervalCounts<'_>,
    ) -> Result<Vec<SeriesEvent>, AnomalyError> {
        let mut out: Vec<SeriesEvent> = self
            .site
            .observe(t, counts.total)?
            .into_iter()
            .map(|event| SeriesEvent {
                series: SeriesKey::Site,
                event,
            })
            .collect();
        let site = SiteMove::of(&self.site);
        self.pages.observe(
            &self.config,
            t,
            counts.pages,
            SeriesKey::Page,
            site,
            &mut out,
        )?;
        self.referrers.observe(
            &self.config,
            t,
            counts.referrers,
            SeriesKey::Referrer,
            site,
            &mut out,
        )?;
        Ok(out)
    }

    /// Records that the interval starting at `t` is unknown for every series.
    pub fn gap(&mut self, t: DateTime<Utc>) -> Result<(), AnomalyError> {
        self.site.gap(t)?;
        for s in self
            .pages
            .series
            .iter_mut()
            .chain(self.referrers.series.iter_mut())
        {
            s.detector.gap(t)?;
        }
        Ok(())
    }

    /// Warms one series from history (see [`Detector::warm`]); a page or
    /// referrer is added when a slot is free, and ignored otherwise.
    pub fn warm(
        &mut self,
        series: &SeriesKey,
        start: DateTime<Utc>,
        width: Duration,
        counts: &[Option<u64>],
    ) -> Result<(), AnomalyError> {
        match series {
            SeriesKey::Site => self.site.warm(start, width, counts),
            SeriesKey::Page(k) => self.pages.warm(&self.config, k, start, width, counts),
            SeriesKey::Referrer(k) => self.referrers.warm(&self.config, k, start, width, counts),
        }
    }

    /// The site series' mode (how much history the detector has).
    pub fn mode(&self) -> Mode {
        self.site.mode()
    }

    /// The site series' detector.
    pub fn site(&self) -> &Detector {
        &self.site
    }

    /// Every open anomaly that was reported, site first.
    pub fn open(&self) -> Vec<(SeriesKey, Anomaly)> {
        let site = self.site.open().map(|a| (SeriesKey::Site, a.clone()));
        let shown = |s: &&Tracked| !s.hidden;
        let pages = self
            .pages
            .series
            .iter()
            .filter(shown)
            .filter_map(|s| Some((SeriesKey::Page(s.key.clone()), s.detector.open()?.clone())));
        let refs = self.referrers.series.iter().filter(shown).filter_map(|s| {
            Some((
                SeriesKey::Referrer(s.key.clone()),
                s.detector.open()?.clone(),
            ))
        });
        site.into_iter().chain(pages).chain(refs).collect()
    }

    /// Series tracked, the site included.
    pub fn series(&self) -> Vec<SeriesKey> {
        let pages = self
            .pages
            .series
            .iter()
            .map(|s| SeriesKey::Page(s.key.clone()));
        let refs = self
            .referrers
            .series
            .iter()
            .map(|s| SeriesKey::Referrer(s.key.clone()));
        std::iter::once(SeriesKey::Site)
            .chain(pages)
            .chain(refs)
            .collect()
    }

    /// Approximate bytes, all series included.
    pub fn memory_bytes(&self) -> usize {
        let dims = self.pages.series.iter().chain(self.referrers.series.iter());
        std::mem::size_of::<Self>()
            + self.site.memory_bytes()
            + dims
                .map(|s| s.detector.memory_bytes() + s.key.len())
                .sum::<usize>()
    }
}
