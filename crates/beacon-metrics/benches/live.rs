//! Criterion benches: `record` ns per event, `snapshot` with 100k active sessions.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use beacon_metrics::{LiveConfig, LiveMetrics};
use chrono::{DateTime, Duration, Utc};
use common::{profile, referrer, start, token, url, Event, Traffic};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Times `record` over the mixed traffic. Timed per event: building the
/// borrowed view from the owned event (as the server does from its stored
/// row) and `record`, which copies what it keeps. The owned events are
/// generated before and freed after the clock runs: the server holds and
/// frees its rows whether or not live metrics exist.
///
/// `profiled`: each event carries its session's visitor id, country and
/// device type, as the server's do.
fn record_mixed(b: &mut criterion::Bencher<'_>, sessions: u64, profiled: bool) {
    // 1 event per ms of event time: over 10k sessions each one sends one
    // every ~10 s, so all stay active; events up to 3 s late.
    let mut traffic = if profiled {
        Traffic::profiled(sessions, 1)
    } else {
        Traffic::new(sessions, 1)
    };
    let mut live = LiveMetrics::new(LiveConfig::default());
    live.expire(traffic.now());
    for _ in 0..200 {
        for _ in 0..1_000 {
            live.record(&traffic.next_event().view());
        }
        live.expire(traffic.now());
    }
    b.iter_custom(|iters| {
        let mut total = StdDuration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(1_000);
            let batch: Vec<Event> = (0..n).map(|_| traffic.next_event()).collect();
            let t = Instant::now();
            for e in &batch {
                live.record(black_box(&e.view()));
            }
            total += t.elapsed();
            drop(batch);
            live.expire(traffic.now());
            left -= n;
        }
        total
    });
}

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("mixed_10k_sessions", |b| record_mixed(b, 10_000, false));
    g.bench_function("mixed_100_sessions", |b| record_mixed(b, 100, false));
    g.bench_function("mixed_10k_sessions_profiled", |b| {
        record_mixed(b, 10_000, true)
    });
    g.finish();

    // Calibration of this machine: one std HashMap<String, u64> lookup by a
    // 20-byte token among 10k, and freeing one generated event (what the
    // owned input used to cost inside `record`).
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(1));
    let map: std::collections::HashMap<String, u64> = (0..10_000).map(|i| (token(i), i)).collect();
    let keys: Vec<String> = (0..10_000u64)
        .map(|i| token((i * 7_919) % 10_000))
        .collect();
    let mut i = 0;
    g.bench_function("hashmap_string_lookup_10k", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            map.get(black_box(keys[i].as_str())).copied()
        })
    });
    let mut traffic = Traffic::new(10_000, 1);
    g.bench_function("drop_one_event", |b| {
        b.iter_batched(
            || traffic.next_event(),
            drop,
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A page view of `session`; `profiled`: with the session's [`profile`].
fn heartbeat(session: u64, at: DateTime<Utc>, url_id: u64, ref_id: u64, profiled: bool) -> Event {
    let (visitor, country, device) = profile(session);
    Event {
        id: session as i64,
        kind: "visit".to_owned(),
        session: token(session),
        url: Some(url(url_id)),
        referrer: Some(referrer(ref_id)),
        timestamp: at,
        label: None,
        metadata: r#"{"country":"FR"}"#.to_owned(),
        visitor: profiled.then_some(visitor),
        country: profiled.then_some(country),
        device: profiled.then_some(device),
    }
}

/// 100k sessions spread over the last 59 s; `distinct` gives each its own
/// url; `profiled` its [`profile`].
fn hundred_k(distinct: bool, profiled: bool) -> (LiveMetrics, DateTime<Utc>) {
    let mut live = LiveMetrics::new(LiveConfig::default());
    let t0 = start();
    live.expire(t0);
    let n = 100_000u64;
    for i in 0..n {
        let at = t0 + Duration::microseconds((i * 590) as i64 + 1_000);
        let u = if distinct { i } else { i % 1_000 };
        live.record(&heartbeat(i, at, u, i % 50, profiled).view());
        if i % 3 == 0 {
            let label = format!("Button {}", i % 50);
            live.record(
                &Event {
                    kind: "click".into(),
                    metadata: format!(r#"{{"label":"{label}"}}"#),
                    label: Some(label),
                    ..heartbeat(i, at, u, i % 50, profiled)
                }
                .view(),
            );
        }
    }
    let now = t0 + Duration::seconds(60);
    assert_eq!(live.snapshot(now).active_users, n);
    (live, now)
}

fn snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot");
    let (mut live, now) = hundred_k(false, false);
    g.bench_function("100k_active_1k_urls", |b| {
        b.iter(|| live.snapshot(black_box(now)))
    });
    let (mut live, now) = hundred_k(true, false);
    g.bench_function("100k_active_100k_urls", |b| {
        b.iter(|| live.snapshot(black_box(now)))
    });
    let (mut live, now) = hundred_k(false, true);
    g.bench_function("100k_active_1k_urls_profiled", |b| {
        b.iter(|| live.snapshot(black_box(now)))
    });
    g.bench_function("100k_active_churn_1667_per_tick", |b| churn(b, false));
    g.bench_function("100k_active_churn_1667_per_tick_profiled", |b| {
        churn(b, true)
    });
    g.finish();
}

/// Steady churn: every tick (1 s) 1,667 new sessions arrive and as many
/// leave the window, so each timed snapshot evicts ~1,667 sessions.
fn churn(b: &mut criterion::Bencher<'_>, profiled: bool) {
    let mut live = LiveMetrics::new(LiveConfig::default());
    let mut now = start();
    live.expire(now);
    let mut next = 0u64;
    let per_tick = 1_667u64;
    let mut tick = |live: &mut LiveMetrics, now: &mut DateTime<Utc>| {
        *now += Duration::seconds(1);
        for _ in 0..per_tick {
            live.record(&heartbeat(next, *now, next % 1_000, next % 50, profiled).view());
            next += 1;
        }
    };
    for _ in 0..60 {
        tick(&mut live, &mut now);
        live.expire(now);
    }
    b.iter_custom(|iters| {
        let mut total = StdDuration::ZERO;
        for _ in 0..iters {
            tick(&mut live, &mut now);
            let t = Instant::now();
            let s = live.snapshot(now);
            total += t.elapsed();
            assert!(s.active_users >= 99_000, "{}", s.active_users);
            black_box(s);
        }
        total
    });
}

criterion_group!(benches, record, snapshot);
criterion_main!(benches);
