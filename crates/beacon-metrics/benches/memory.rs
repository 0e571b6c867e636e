//! Bytes per active session: `approx_memory_bytes()` against the growth of
//! the process's resident memory (`/proc/self/statm`, Linux only).
//!
//! A counting `#[global_allocator]` would be the sharper cross-check, but
//! `GlobalAlloc` needs `unsafe impl` and the workspace *forbids* unsafe code
//! (a `forbid` cannot be relaxed by an `allow` in this file), so RSS it is.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use beacon_metrics::{LiveConfig, LiveMetrics};
use chrono::Duration;
use common::{profile, referrer, start, token, url, Event};

fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// `profiled`: each session with its visitor id, country and device type.
fn measure(
    name: &str,
    n: u64,
    url_of: impl Fn(u64) -> u64,
    ref_of: impl Fn(u64) -> u64,
    profiled: bool,
) {
    let before = rss_bytes();
    let mut live = LiveMetrics::new(LiveConfig::default());
    let t0 = start();
    live.expire(t0);
    let empty = live.approx_memory_bytes();
    for i in 0..n {
        let (visitor, country, device) = profile(i);
        let event = Event {
            id: i as i64,
            kind: "heartbeat".into(),
            session: token(i),
            url: Some(url(url_of(i))),
            referrer: Some(referrer(ref_of(i))),
            timestamp: t0 + Duration::microseconds((i * 590) as i64 + 1_000),
            label: None,
            metadata: r#"{"uptime":1}"#.into(),
            visitor: profiled.then_some(visitor),
            country: profiled.then_some(country),
            device: profiled.then_some(device),
        };
        live.record(&event.view());
    }
    let snap = live.snapshot(t0 + Duration::seconds(60));
    assert_eq!(snap.active_users, n);
    let approx = live.approx_memory_bytes();
    let after = rss_bytes();
    println!(
        "memory/{name}: {n} active sessions, approx_memory_bytes {approx} ({} empty) = {:.1} bytes/session",
        empty,
        (approx - empty) as f64 / n as f64
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "memory/{name}: RSS grew {} bytes = {:.1} bytes/session (includes allocator slack)",
            a.saturating_sub(b),
            a.saturating_sub(b) as f64 / n as f64
        );
    }
    drop(live);
}

/// Selects the case a child process measures.
const CASE: &str = "BEACON_MEMORY_CASE";

fn main() {
    let n = 100_000;
    match std::env::var(CASE).as_deref() {
        // Realistic: 20-byte tokens, 1,000 distinct 40-byte urls, 50 referrers.
        Ok("shared_urls") => measure("shared_urls", n, |i| i % 1_000, |i| i % 50, false),
        // The same with the server's profiles: visitor ids (one visitor in
        // four with two sessions), 20 countries, 3 device types.
        Ok("shared_urls_profiled") => {
            measure("shared_urls_profiled", n, |i| i % 1_000, |i| i % 50, true)
        }
        // Worst case: every session on its own url with its own referrer.
        Ok("distinct_urls") => measure("distinct_urls", n, |i| i, |i| i, false),
        Ok("distinct_urls_profiled") => measure("distinct_urls_profiled", n, |i| i, |i| i, true),
        // Each case in a fresh process: memory an earlier case freed stays
        // with the allocator and would hide the next case's RSS growth.
        _ => {
            let exe = std::env::current_exe().expect("own path");
            for case in [
                "shared_urls",
                "shared_urls_profiled",
                "distinct_urls",
                "distinct_urls_profiled",
            ] {
                let status = std::process::Command::new(&exe)
                    .env(CASE, case)
                    .status()
                    .expect("run a case");
                assert!(status.success(), "case {case} failed");
            }
        }
    }
}
