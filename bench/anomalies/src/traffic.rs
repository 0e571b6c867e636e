//! Generated traffic of one site: daily and weekly rhythm in the site's own
//! time zone, days that differ, slow growth, a holiday, visits of several
//! page views, and injected anomalies of known size and time.

use crate::rng::Rng;

/// Intervals of five minutes in a day and a week.
pub const PER_DAY: usize = 288;
pub const PER_WEEK: usize = 7 * PER_DAY;
/// Pages and referrers of a site, by popularity.
pub const PAGES: usize = 40;
pub const REFERRERS: [&str; 10] = [
    "(direct)",
    "google.com",
    "bing.com",
    "twitter.com",
    "news.ycombinator.com",
    "duckduckgo.com",
    "reddit.com",
    "linkedin.com",
    "github.com",
    "facebook.com",
];
const REFERRER_SHARES: [f64; 10] = [0.42, 0.30, 0.06, 0.05, 0.04, 0.04, 0.03, 0.03, 0.02, 0.01];
/// The referrer of the injected surge, unseen before it.
pub const SURGE_REFERRER: &str = "viral.example";
/// The page the surge lands on (fourth most popular, about 6% of views).
pub const SURGE_PAGE: usize = 3;

/// What an injected anomaly does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every count times 3.
    Spike,
    /// Every count divided by 3.
    Drop,
    /// No events at all (the tracker removed).
    Dark,
    /// One page gets four times its views from one new referrer.
    Surge,
}

/// One injected anomaly: intervals `start .. start + len`.
#[derive(Debug, Clone, Copy)]
pub struct Injection {
    pub kind: Kind,
    pub start: usize,
    pub len: usize,
}

/// Counts of one interval.
pub struct Counts {
    pub total: u64,
    pub pages: Vec<u64>,
    pub referrers: Vec<u64>,
    pub surge_referrer: u64,
}

/// One generated site.
pub struct Site {
    pub daily: f64,
    tz_hours: f64,
    growth: f64,
    holiday: usize,
    day_factor: Vec<f64>,
    hour_factor: Vec<f64>,
    page_shares: Vec<f64>,
    total_intervals: usize,
    /// Mean page views per visit (geometric; 1 makes page views a Poisson
    /// count).
    views_per_visit: f64,
}

/// Activity by local hour, mean 1: low at night, high in the day.
fn shape(hour: f64) -> f64 {
    use std::f64::consts::TAU;
    let raw = |h: f64| {
        (0.9 * (TAU * (h - 8.5) / 24.0).sin() + 0.25 * (2.0 * TAU * (h - 5.0) / 24.0).sin()).exp()
    };
    static MEAN: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let mean = MEAN.get_or_init(|| (0..2400).map(|i| raw(i as f64 / 100.0)).sum::<f64>() / 2400.0);
    raw(hour) / mean
}

/// Monday first; weekends quieter.
const WEEKDAY: [f64; 7] = [1.08, 1.12, 1.10, 1.06, 0.98, 0.80, 0.86];

impl Site {
    /// A site of about `daily` page views a day over `weeks` weeks, its
    /// holiday in week `holiday_week`.
    pub fn new(
        rng: &mut Rng,
        daily: f64,
        weeks: usize,
        holiday_week: usize,
        views_per_visit: f64,
    ) -> Self {
        let days = weeks * 7 + 1;
        let hours = days * 24;
        let zipf: Vec<f64> = (0..PAGES).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let sum: f64 = zipf.iter().sum();
        Self {
            daily,
            tz_hours: rng.below(17) as f64 - 8.0,
            growth: 0.6 * rng.uniform(),
            holiday: holiday_week * 7 + 2,
            day_factor: (0..days).map(|_| (0.07 * rng.normal()).exp()).collect(),
            hour_factor: (0..hours).map(|_| (0.04 * rng.normal()).exp()).collect(),
            page_shares: zipf.iter().map(|z| z / sum).collect(),
            total_intervals: weeks * PER_WEEK,
            views_per_visit: views_per_visit.max(1.0),
        }
    }

    /// Expected page views of interval `i` without injections.
    pub fn rate(&self, i: usize) -> f64 {
        let local_hours = i as f64 / 12.0 + self.tz_hours;
        let day = (local_hours / 24.0).floor().max(0.0) as usize;
        let hour = local_hours.rem_euclid(24.0);
        let week_fraction = i as f64 / self.total_intervals as f64;
        let mut rate = self.daily / PER_DAY as f64
            * shape(hour)
            * WEEKDAY[day % 7]
            * (1.0 + self.growth).powf(week_fraction)
            * self.day_factor[day.min(self.day_factor.len() - 1)]
            * self.hour_factor[(local_hours.max(0.0) as usize).min(self.hour_factor.len() - 1)];
        if day == self.holiday {
            rate *= 0.6;
        }
        rate
    }

    /// Index of the holiday's first interval (UTC).
    pub fn holiday_start(&self) -> usize {
        ((self.holiday as f64 * 24.0 - self.tz_hours) * 12.0).max(0.0) as usize
    }

    /// Views from `visits` visits of geometric length.
    fn views(&self, rng: &mut Rng, visits: u64) -> u64 {
        if visits == 0 || self.views_per_visit <= 1.0 {
            return visits;
        }
        let p = 1.0 / self.views_per_visit;
        // A sum of geometric lengths is `visits` plus a negative binomial.
        let mean = rng.gamma(visits as f64) * (1.0 - p) / p;
        visits + rng.poisson(mean)
    }

    /// Counts of interval `i` under the injection `active` (if any).
    pub fn counts(&self, rng: &mut Rng, i: usize, active: Option<Kind>) -> Counts {
        let mut rate = self.rate(i);
        match active {
            Some(Kind::Spike) => rate *= 3.0,
            Some(Kind::Drop) => rate /= 3.0,
            Some(Kind::Dark) => rate = 0.0,
            _ => {}
        }
        let visits = rng.poisson(rate / self.views_per_visit);
        let total = self.views(rng, visits);
        let mut pages = split(rng, total, &self.page_shares);
        let mut referrers = split(rng, total, &REFERRER_SHARES);
        let mut counts = Counts {
            total,
            pages: Vec::new(),
            referrers: Vec::new(),
            surge_referrer: 0,
        };
        if active == Some(Kind::Surge) {
            let extra_rate = 3.0 * rate * self.page_shares[SURGE_PAGE];
            let visits = rng.poisson(extra_rate / self.views_per_visit);
            let extra = self.views(rng, visits);
            pages[SURGE_PAGE] += extra;
            counts.total += extra;
            counts.surge_referrer = extra;
        }
        referrers.truncate(REFERRERS.len());
        counts.pages = pages;
        counts.referrers = referrers;
        counts
    }
}

/// Multinomial split of `n` by `shares` (summing to at most 1).
fn split(rng: &mut Rng, n: u64, shares: &[f64]) -> Vec<u64> {
    let mut left = n;
    let mut mass = 1.0;
    shares
        .iter()
        .map(|&s| {
            let k = if mass <= 0.0 {
                0
            } else {
                rng.binomial(left, (s / mass).min(1.0))
            };
            left -= k;
            mass -= s;
            k
        })
        .collect()
}

/// Injections of the weeks `weeks` (interval indices from the start of the
/// generated span): five a week, at least twelve hours apart.
pub fn schedule(rng: &mut Rng, weeks: &[usize]) -> Vec<Injection> {
    const DARK_MINUTES: [usize; 6] = [10, 15, 20, 30, 60, 180];
    let plan = [Kind::Spike, Kind::Drop, Kind::Dark, Kind::Surge, Kind::Dark];
    let mut out = Vec::new();
    let mut dark = rng.below(DARK_MINUTES.len() as u64) as usize;
    for &week in weeks {
        let mut taken: Vec<Injection> = Vec::new();
        for kind in plan {
            let len = match kind {
                Kind::Dark => {
                    dark += 1;
                    DARK_MINUTES[dark % DARK_MINUTES.len()] / 5
                }
                Kind::Surge => 12,
                _ => 6,
            };
            for _ in 0..1000 {
                let start = week * PER_WEEK + rng.below((PER_WEEK - len - 36) as u64) as usize;
                let clear = taken
                    .iter()
                    .all(|t| start + len + 144 < t.start || t.start + t.len + 144 < start);
                if clear {
                    taken.push(Injection { kind, start, len });
                    break;
                }
            }
        }
        out.extend(taken);
    }
    out.sort_by_key(|i| i.start);
    out
}
