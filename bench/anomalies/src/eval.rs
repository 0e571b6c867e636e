//! Runs the detector over one generated site and scores what it opened.

use std::time::Duration;

use beacon_metrics::anomaly::{
    AnomalyDetector, AnomalyError, AnomalyKind, DetectorConfig, Event, IntervalCounts, SeriesKey,
};
use chrono::{DateTime, TimeZone, Utc};

use crate::rng::Rng;
use crate::traffic::{
    schedule, Injection, Kind, Site, PAGES, PER_WEEK, REFERRERS, SURGE_PAGE, SURGE_REFERRER,
};

/// One site's run.
pub struct Setup {
    pub daily: f64,
    pub seed: u64,
    pub weeks: usize,
    pub warm_weeks: usize,
    pub sensitivity: f64,
    pub views_per_visit: f64,
    pub quiet_minutes: u64,
    pub verbose: bool,
}

/// Found out of injected.
#[derive(Default, Clone, Copy)]
pub struct Rate {
    found: u64,
    total: u64,
}

impl Rate {
    fn count(&mut self, found: bool) {
        self.total += 1;
        self.found += u64::from(found);
    }

    fn cell(&self) -> String {
        if self.total == 0 {
            return "-".into();
        }
        format!(
            "{}/{} ({:.0}%)",
            self.found,
            self.total,
            100.0 * self.found as f64 / self.total as f64
        )
    }
}

/// Scores summed over sites.
#[derive(Default)]
pub struct Tally {
    spike: Rate,
    drop: Rate,
    dark: Rate,
    dark_target: Rate,
    surge: Rate,
    delays: [Vec<f64>; 4],
    false_clean: u64,
    clean_weeks: u64,
    worst_week: u64,
    false_all: u64,
    live_weeks: u64,
}

impl Tally {
    /// Adds another site's scores.
    pub fn add(&mut self, o: &Tally) {
        for (a, b) in [
            (&mut self.spike, o.spike),
            (&mut self.drop, o.drop),
            (&mut self.dark, o.dark),
            (&mut self.dark_target, o.dark_target),
            (&mut self.surge, o.surge),
        ] {
            a.found += b.found;
            a.total += b.total;
        }
        for (a, b) in self.delays.iter_mut().zip(&o.delays) {
            a.extend(b);
        }
        self.false_clean += o.false_clean;
        self.clean_weeks += o.clean_weeks;
        self.worst_week = self.worst_week.max(o.worst_week);
        self.false_all += o.false_all;
        self.live_weeks += o.live_weeks;
    }
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Spike => 0,
        Kind::Drop => 1,
        Kind::Dark => 2,
        Kind::Surge => 3,
    }
}

struct Opened {
    series: SeriesKey,
    kind: AnomalyKind,
    /// Interval index at which it opened.
    at: usize,
    observed: u64,
    expected: f64,
}

fn start() -> DateTime<Utc> {
    // A Monday, 00:00 UTC.
    Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn at(i: usize) -> DateTime<Utc> {
    start() + chrono::Duration::minutes(5 * i as i64)
}

/// Feeds one site through an [`AnomalyDetector`] and scores it.
pub fn run_site(s: &Setup) -> Result<Tally, AnomalyError> {
    let mut rng = Rng::new(s.seed);
    let weeks = s.warm_weeks + s.weeks;
    let site = Site::new(
        &mut rng,
        s.daily,
        weeks,
        s.warm_weeks + 6,
        s.views_per_visit,
    );
    let injected: Vec<usize> = (0..s.weeks)
        .filter(|w| w % 2 == 1)
        .map(|w| s.warm_weeks + w)
        .collect();
    let injections = schedule(&mut rng, &injected);
    let config = DetectorConfig {
        sensitivity: s.sensitivity,
        quiet_after: Duration::from_secs(60 * s.quiet_minutes),
        ..DetectorConfig::default()
    };
    let mut detector = AnomalyDetector::new(config, 5, 5)?;
    let pages: Vec<String> = (0..PAGES).map(|i| format!("/page-{i}")).collect();

    // History as the rollups hold it: 15-minute buckets, no injections.
    let warm_len = s.warm_weeks * PER_WEEK;
    let buckets = warm_len / 3;
    let mut site_h = vec![Some(0u64); buckets];
    let mut page_h = vec![vec![Some(0u64); buckets]; 5];
    let mut ref_h = vec![vec![Some(0u64); buckets]; 5];
    for i in 0..warm_len {
        let c = site.counts(&mut rng, i, None);
        let b = i / 3;
        let add = |v: &mut Option<u64>, n: u64| *v = v.map(|x| x + n);
        add(&mut site_h[b], c.total);
        for k in 0..5 {
            add(&mut page_h[k][b], c.pages[k]);
            add(&mut ref_h[k][b], c.referrers[k]);
        }
    }
    let width = Duration::from_secs(900);
    detector.warm(&SeriesKey::Site, start(), width, &site_h)?;
    for k in 0..5 {
        detector.warm(
            &SeriesKey::Page(pages[k].clone()),
            start(),
            width,
            &page_h[k],
        )?;
        detector.warm(
            &SeriesKey::Referrer(REFERRERS[k].to_owned()),
            start(),
            width,
            &ref_h[k],
        )?;
    }

    let mut opened = Vec::new();
    let mut next = 0;
    for i in warm_len..weeks * PER_WEEK {
        while next < injections.len() && injections[next].start + injections[next].len <= i {
            next += 1;
        }
        let active = injections
            .get(next)
            .filter(|j| j.start <= i)
            .map(|j| j.kind);
        let c = site.counts(&mut rng, i, active);
        let page_counts: Vec<(&str, u64)> = c
            .pages
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (pages[k].as_str(), *n))
            .collect();
        let mut ref_counts: Vec<(&str, u64)> = c
            .referrers
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (REFERRERS[k], *n))
            .collect();
        if c.surge_referrer > 0 {
            ref_counts.push((SURGE_REFERRER, c.surge_referrer));
        }
        let counts = IntervalCounts {
            total: c.total,
            pages: &page_counts,
            referrers: &ref_counts,
        };
        for e in detector.observe(at(i), &counts)? {
            if let Event::Opened(a) = e.event {
                opened.push(Opened {
                    series: e.series,
                    kind: a.kind,
                    at: i,
                    observed: a.observed,
                    expected: a.expected,
                });
            }
        }
    }
    if s.verbose {
        let (d, c) = detector.site().noise();
        eprintln!(
            "noise: {:>7}/day seed {} clustering {d:.2} baseline error {c:.3}",
            s.daily, s.seed
        );
    }
    Ok(score(
        s,
        &site,
        &injections,
        &opened,
        warm_len,
        &pages[SURGE_PAGE],
    ))
}

fn matches(j: &Injection, o: &Opened, surge_page: &str) -> bool {
    match j.kind {
        Kind::Spike => o.series == SeriesKey::Site && o.kind == AnomalyKind::Spike,
        Kind::Drop => o.series == SeriesKey::Site && o.kind == AnomalyKind::Drop,
        Kind::Dark => o.series == SeriesKey::Site && o.kind == AnomalyKind::Dark,
        Kind::Surge => {
            o.kind == AnomalyKind::Spike
                && (o.series == SeriesKey::Page(surge_page.to_owned())
                    || o.series == SeriesKey::Referrer(SURGE_REFERRER.to_owned())
                    || o.series == SeriesKey::Site)
        }
    }
}

fn score(
    s: &Setup,
    site: &Site,
    injections: &[Injection],
    opened: &[Opened],
    warm_len: usize,
    surge_page: &str,
) -> Tally {
    let mut t = Tally::default();
    for j in injections {
        // Found: opened during the anomaly or within 30 minutes after it.
        let hit = opened
            .iter()
            .find(|o| o.at >= j.start && o.at < j.start + j.len + 6 && matches(j, o, surge_page));
        let delay = hit.map(|o| ((o.at + 1 - j.start) * 5) as f64);
        if s.verbose && hit.is_none() {
            let expected: f64 = (j.start..j.start + j.len).map(|i| site.rate(i)).sum();
            eprintln!(
                "missed: {:>7}/day seed {} {} {:?} for {} min, {:.1} views expected",
                s.daily,
                s.seed,
                at(j.start),
                j.kind,
                j.len * 5,
                expected
            );
        }
        match j.kind {
            Kind::Spike => t.spike.count(hit.is_some()),
            Kind::Drop => t.drop.count(hit.is_some()),
            Kind::Surge => t.surge.count(hit.is_some()),
            Kind::Dark => {
                t.dark.count(hit.is_some());
                let per_hour = (0..3).map(|k| site.rate(j.start + k)).sum::<f64>() * 4.0;
                if j.len >= 3 && per_hour >= 120.0 {
                    let in_time = delay.is_some_and(|d| d <= 15.0);
                    if s.verbose && !in_time {
                        eprintln!("late: {:>7}/day seed {} {} dark for {} min at {per_hour:.0}/h, found after {delay:?} min", s.daily, s.seed, at(j.start), j.len * 5);
                    }
                    t.dark_target.count(in_time);
                }
            }
        }
        if let Some(d) = delay {
            t.delays[slot(j.kind)].push(d);
        }
    }
    // False: opened on any series farther than two hours from every
    // injection.
    let explained = |o: &Opened| {
        injections
            .iter()
            .any(|j| o.at + 24 >= j.start && o.at < j.start + j.len + 24)
    };
    let mut per_week = vec![0u64; s.weeks];
    for o in opened.iter().filter(|o| !explained(o)) {
        per_week[(o.at - warm_len) / PER_WEEK] += 1;
        if s.verbose {
            eprintln!(
                "false: {:>7}/day seed {} {} {:?} {:?} observed {} expected {:.1} (holiday starts {})",
                s.daily,
                s.seed,
                at(o.at),
                o.series,
                o.kind,
                o.observed,
                o.expected,
                at(site.holiday_start())
            );
        }
    }
    for (w, n) in per_week.iter().enumerate() {
        t.false_all += n;
        if w % 2 == 0 {
            t.false_clean += n;
            t.clean_weeks += 1;
            t.worst_week = t.worst_week.max(*n);
        }
    }
    t.live_weeks = s.weeks as u64;
    t
}

fn median(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    format!("{:.0}", v[v.len() / 2])
}

/// The Markdown table of all sizes.
pub fn table(rows: &[(u64, Tally)]) -> String {
    let mut out = String::from(
        "| views/day | spike 3x, 30 min | drop to 1/3, 30 min | dark, 10 min to 3 h | dark >= 15 min at >= 120/h, found within 15 min | page surge from one referrer | median delay, min (spike/drop/dark/surge) | false alerts/week, clean weeks (mean, worst) | false alerts/week, all weeks |\n|---:|---|---|---|---|---|---|---|---|\n",
    );
    for (size, t) in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {}/{}/{}/{} | {:.2}, {} | {:.2} |\n",
            size,
            t.spike.cell(),
            t.drop.cell(),
            t.dark.cell(),
            t.dark_target.cell(),
            t.surge.cell(),
            median(&t.delays[0]),
            median(&t.delays[1]),
            median(&t.delays[2]),
            median(&t.delays[3]),
            t.false_clean as f64 / t.clean_weeks.max(1) as f64,
            t.worst_week,
            t.false_all as f64 / t.live_weeks.max(1) as f64,
        ));
    }
    out
}
