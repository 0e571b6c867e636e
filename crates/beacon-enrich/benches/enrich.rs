//! Criterion benches of the enrichment steps: what a new session or a new
//! user agent costs, and what a repeat costs.
//!
//! `cargo bench -p beacon-enrich --bench enrich`; the numbers and the
//! machine are in docs/enrichment.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use beacon_enrich::{
    client_addr, visitor_id, ForwardingHeaders, GeoIp, Salt, TrustedProxies, UserAgents,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ipnet::{IpNet, Ipv4Net};
use mmdb_writer::Writer;
use serde_json::json;

/// Real browser user agents (desktop and mobile) and real bots.
const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
];

const BOTS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
];

fn user_agents(c: &mut Criterion) {
    let agents = UserAgents::new(100_000).unwrap();
    let unique = AtomicU64::new(0);
    let mut group = c.benchmark_group("user_agent");
    // A miss: a user agent never seen (a real one with a unique suffix),
    // parsed, checked against the bot patterns and inserted in the cache.
    for (name, pool) in [("browser", BROWSERS), ("bot", BOTS)] {
        group.bench_function(format!("classify_miss_{name}"), |b| {
            b.iter_batched(
                || {
                    let n = unique.fetch_add(1, Ordering::Relaxed);
                    format!("{} {n}", pool[n as usize % pool.len()])
                },
                |ua| agents.classify(Some(black_box(&ua))),
                BatchSize::SmallInput,
            );
        });
    }
    // A hit: the verdict from the cache.
    for ua in BROWSERS.iter().chain(BOTS) {
        agents.classify(Some(ua));
    }
    let mut i = 0;
    group.bench_function("classify_hit", |b| {
        b.iter(|| {
            i += 1;
            agents.classify(Some(black_box(BROWSERS[i % BROWSERS.len()])))
        });
    });
    // The bot patterns alone, without the cache: a browser goes through
    // every pattern (no match), a bot stops at its first.
    let bots = agents.bot_patterns();
    for (name, pool) in [("browser", BROWSERS), ("bot", BOTS)] {
        let mut i = 0;
        group.bench_function(format!("bot_patterns_{name}"), |b| {
            b.iter(|| {
                i += 1;
                bots.is_bot(black_box(pool[i % pool.len()]))
            });
        });
    }
    // Building the classifier: once per process.
    group.sample_size(10);
    group.bench_function("new", |b| {
        b.iter(|| UserAgents::new(black_box(10)).unwrap())
    });
    group.finish();
}

/// A City-layout database of `networks` IPv4 /24s, in a temporary file.
fn city_db(networks: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let mut writer = Writer::builder("Bench-City")
        .description(&[("en", "beacon-enrich benchmark")])
        .build();
    let record = |i: u32| {
        let iso = ["DE", "FR", "US", "GB", "JP"][i as usize % 5];
        json!({
            "city": {"geoname_id": i, "names": {"en": format!("City {}", i % 1000), "de": "Stadt"}},
            "country": {"iso_code": iso, "names": {"en": "x"}},
            "location": {"latitude": 1.5, "longitude": 2.5},
            "subdivisions": [{"iso_code": "X", "names": {"en": format!("Region {}", i % 100)}}]
        })
    };
    for i in 0..networks {
        let base = Ipv4Addr::from(0x0100_0000 + (i << 8));
        writer
            .insert(IpNet::V4(Ipv4Net::new(base, 24).unwrap()), &record(i))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.mmdb");
    std::fs::write(&path, writer.to_bytes().unwrap()).unwrap();
    (dir, path)
}

fn geoip(c: &mut Criterion) {
    const NETWORKS: u32 = 20_000;
    let (_dir, path) = city_db(NETWORKS);
    let geo = GeoIp::open(&path).unwrap();
    let mut group = c.benchmark_group("geoip");
    let mut i = 0u32;
    group.bench_function("lookup_city_hit", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919) % NETWORKS;
            geo.lookup(black_box(IpAddr::V4(Ipv4Addr::from(
                0x0100_0000 + (i << 8) + 42,
            ))))
        });
    });
    group.bench_function("lookup_miss", |b| {
        b.iter(|| geo.lookup(black_box(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)))));
    });
    group.bench_function("reload_check_unchanged", |b| {
        b.iter(|| geo.reload_if_changed().unwrap());
    });
    group.sample_size(10);
    group.bench_function("open_20k_networks", |b| {
        b.iter(|| GeoIp::open(black_box(&path)).unwrap());
    });
    group.finish();
}

fn addresses_and_ids(c: &mut Criterion) {
    let trusted: TrustedProxies = "10.0.0.0/8, 172.16.0.0/12, 2001:db8::/32".parse().unwrap();
    let headers = ForwardingHeaders {
        x_forwarded_for: vec!["203.0.113.9, 198.51.100.20, 10.1.2.3"],
        x_forwarded_proto: Some("https"),
        ..Default::default()
    };
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    c.bench_function("client_addr_xff_3_hops", |b| {
        b.iter(|| client_addr(black_box(peer), false, black_box(&headers), &trusted));
    });
    let salt = Salt::from_bytes([7; 32]);
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    c.bench_function("visitor_id", |b| {
        b.iter(|| {
            visitor_id(
                &salt,
                black_box("site.example"),
                black_box(ip),
                black_box(BROWSERS[0]),
            )
        });
    });
}

criterion_group!(benches, user_agents, geoip, addresses_and_ids);
criterion_main!(benches);
