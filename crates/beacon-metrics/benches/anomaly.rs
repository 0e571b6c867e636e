//! Criterion benches of the anomaly detector: cost of one interval of one
//! series (`Detector::observe`), and of one interval of a site with its
//! five top pages and five top referrers (`AnomalyDetector::observe`, eleven
//! series). Memory per series is printed.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use beacon_metrics::anomaly::{
    AnomalyDetector, Detector, DetectorConfig, IntervalCounts, SeriesKey,
};
use chrono::{DateTime, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WEEK: usize = 7 * 288;
const STEP: Duration = Duration::from_secs(300);

fn t(i: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap() + chrono::Duration::minutes(5 * i as i64)
}

/// A daily rhythm with some deterministic wobble, around `level` per interval.
fn count(i: usize, level: f64) -> u64 {
    let hour = (i % 288) as f64 / 12.0;
    let day = 1.0 + 0.6 * (std::f64::consts::TAU * (hour - 9.0) / 24.0).sin();
    let wobble = 1.0 + 0.1 * (((i * 7919) % 101) as f64 / 50.0 - 1.0);
    (level * day * wobble).round() as u64
}

fn history(level: f64) -> Vec<Option<u64>> {
    (0..3 * WEEK).map(|i| Some(count(i, level))).collect()
}

fn one_series(c: &mut Criterion) {
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    d.warm(t(0), STEP, &history(50.0)).unwrap();
    println!(
        "anomaly/memory: {} bytes per series (Detector::memory_bytes)",
        d.memory_bytes()
    );
    let mut group = c.benchmark_group("anomaly");
    group.throughput(Throughput::Elements(1));
    let mut i = 3 * WEEK;
    group.bench_function("observe_one_series_one_interval", |b| {
        b.iter(|| {
            i += 1;
            black_box(d.observe(t(i), count(i, 50.0)).unwrap())
        })
    });
    group.finish();
}

const PAGES: [&str; 5] = ["/", "/blog", "/about", "/docs", "/pricing"];
const REFERRERS: [&str; 5] = [
    "(direct)",
    "google.com",
    "bing.com",
    "twitter.com",
    "news.example",
];

fn site(c: &mut Criterion) {
    let mut d = AnomalyDetector::new(DetectorConfig::default(), 5, 5).unwrap();
    d.warm(&SeriesKey::Site, t(0), STEP, &history(500.0))
        .unwrap();
    for k in 0..5 {
        let h = history(80.0 / (k + 1) as f64);
        d.warm(&SeriesKey::Page(PAGES[k].into()), t(0), STEP, &h)
            .unwrap();
        d.warm(&SeriesKey::Referrer(REFERRERS[k].into()), t(0), STEP, &h)
            .unwrap();
    }
    println!(
        "anomaly/memory: {} bytes for a site with 11 series (AnomalyDetector::memory_bytes)",
        d.memory_bytes()
    );
    let mut group = c.benchmark_group("anomaly");
    group.throughput(Throughput::Elements(11));
    let mut i = 3 * WEEK;
    group.bench_function("observe_site_of_11_series_one_interval", |b| {
        b.iter(|| {
            i += 1;
            let pages: Vec<(&str, u64)> = (0..5)
                .map(|k| (PAGES[k], count(i, 80.0 / (k + 1) as f64)))
                .collect();
            let refs: Vec<(&str, u64)> = (0..5)
                .map(|k| (REFERRERS[k], count(i, 80.0 / (k + 1) as f64)))
                .collect();
            let counts = IntervalCounts {
                total: count(i, 500.0),
                pages: &pages,
                referrers: &refs,
            };
            black_box(d.observe(t(i), &counts).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, one_series, site);
criterion_main!(benches);
