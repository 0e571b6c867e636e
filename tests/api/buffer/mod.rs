//! Buffered mode (`--redis-url`): the real application on a real Redis and
//! a real database. Tests on the shared Redis use a prefix of their own;
//! tests that need persistence or kill Redis start their own
//! `redis-server` (see `redis.rs`).

mod ingest;
mod instances;
mod outages;
pub mod redis;
mod tls;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use beacon_server::Config;
use beacon_store::Store;

use crate::helpers::TestApp;

/// Buffered-mode test settings on top of the usual test ones.
pub fn buffered(config: &mut Config, url: &str, prefix: &str) {
    let cli = <beacon_server::Cli as clap::Parser>::try_parse_from([
        "beacon",
        "--redis-url",
        url,
        "--redis-prefix",
        prefix,
    ])
    .unwrap();
    config.redis_url = cli.config.redis_url;
    config.redis_prefix = cli.config.redis_prefix;
    config.redis_claim_idle = Duration::from_millis(800);
}

/// Every stored event's public id, with how often it is stored, read
/// straight from the database.
pub async fn stored_ids(store: &Store, sessions: &[String]) -> BTreeMap<String, usize> {
    let store = store.clone();
    let sessions = sessions.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut ids = BTreeMap::new();
        for s in &sessions {
            for e in store.session_events(s).unwrap() {
                *ids.entry(e.public_id).or_insert(0) += 1;
            }
        }
        ids
    })
    .await
    .unwrap()
}

/// Waits until the database holds `n` events (the drain is asynchronous).
pub async fn wait_for_count(app: &TestApp, n: i64, limit: Duration) {
    let started = Instant::now();
    loop {
        let count = app.count().await;
        if count >= n {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "the drain stored {count} of {n} events within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `/metrics` says nothing is left unstored.
pub async fn wait_for_empty_backlog(app: &TestApp, limit: Duration) {
    let started = Instant::now();
    loop {
        let backlog = app.gauge("beacon_buffer_backlog_events").await;
        if backlog == 0.0 {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "backlog still {backlog} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
