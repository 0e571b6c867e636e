//! The buffer absorbing outages: the database stopped under load, the
//! backlog limit, Redis killed and restarted, and what Redis's
//! append-only file holds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_server::Config;
use beacon_store::DatabaseUrl;

use super::redis::{clean_shared, redis_cli, require_shared, unique_prefix, OwnRedis, SHARED};
use super::{buffered, stored_ids, wait_for_count, wait_for_empty_backlog};
use crate::faults::{start_load, up_status, Cluster, Outcome, CLIENTS};
use crate::helpers::{error_code, spawn_config, TestApp};

/// How long the database stays down under load (the issue's 30 seconds).
const DB_OUTAGE: Duration = Duration::from_secs(30);

fn spawn(database: &str, redis: &str, prefix: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::with_database(DatabaseUrl::parse(database).unwrap());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.http_workers = 2;
    config.pool_size = 4;
    config.db_timeout = Duration::from_secs(1);
    config.ack_timeout = Duration::from_secs(5);
    config.stream_interval = Duration::from_millis(100);
    buffered(&mut config, redis, prefix);
    tweak(&mut config);
    spawn_config(config)
}

async fn start_cluster() -> Option<Arc<Cluster>> {
    tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .map(Arc::new)
}

async fn cluster_do(cluster: &Arc<Cluster>, what: fn(&Cluster) -> Result<(), String>) {
    let cluster = Arc::clone(cluster);
    tokio::task::spawn_blocking(move || what(&cluster))
        .await
        .unwrap()
        .expect("pg_ctl");
}

/// The load's acknowledged ids, and every id it sent.
fn acknowledged(outcomes: &[Outcome]) -> BTreeSet<String> {
    outcomes
        .iter()
        .filter(|o| o.answer == Ok(200))
        .flat_map(|o| o.ids.iter().cloned())
        .collect()
}

fn load_sessions() -> Vec<String> {
    (0..CLIENTS).map(|t| format!("load-{t}")).collect()
}

/// Every acknowledged id stored once; nothing stored twice.
async fn assert_stored_once(app: &TestApp, acked: &BTreeSet<String>, all: &BTreeSet<String>) {
    let stored = stored_ids(&app.store, &load_sessions()).await;
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "acknowledged, not stored: {missing:?}");
    let foreign: Vec<_> = stored.keys().filter(|id| !all.contains(*id)).collect();
    assert!(foreign.is_empty(), "stored but never sent: {foreign:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_under_buffered_load_refuses_nothing_then_stores_every_event_once() {
    require_shared();
    let Some(cluster) = start_cluster().await else {
        return;
    };
    let prefix = unique_prefix("db-outage");
    let app = spawn(&cluster.url(), SHARED, &prefix, |_| {});
    let client = crate::helpers::client_builder().build().unwrap();
    let load = start_load(&app.address);
    load.wait_for(
        Instant::now(),
        Duration::from_secs(10),
        "200s before",
        |o| o.answer == Ok(200),
    )
    .await;
    cluster_do(&cluster, |c| c.stop("fast")).await;
    let stopped = Instant::now();
    // Under load, with the database away: still accepted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = up_status(&client, &app.address).await;
    assert_eq!(status, 200, "/up stays 200 while ingestion works: {body}");
    assert_eq!(body["database"], "down", "{body}");
    assert_eq!(body["redis"], "up", "{body}");
    let backlog = app.gauge("beacon_buffer_backlog_events").await;
    assert!(
        backlog > 0.0,
        "the backlog grows while the database is down"
    );
    tokio::time::sleep(DB_OUTAGE.saturating_sub(stopped.elapsed())).await;
    let backlog = app.gauge("beacon_buffer_backlog_events").await;
    cluster_do(&cluster, Cluster::pg_ctl_start).await;
    let restarted = Instant::now();
    load.wait_for(restarted, Duration::from_secs(10), "200s after", |o| {
        o.answer == Ok(200)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = load.finish().await;
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|o| o.answer != Ok(200))
        .map(|o| (o.answer.clone(), o.code.clone()))
        .collect();
    assert!(refused.is_empty(), "no request refused: {refused:?}");
    let during = outcomes
        .iter()
        .filter(|o| o.sent_at > stopped && o.sent_at < restarted)
        .count();
    assert!(during > 0, "requests were sent during the outage");
    wait_for_empty_backlog(&app, Duration::from_secs(60)).await;
    let acked = acknowledged(&outcomes);
    wait_for_count(&app, acked.len() as i64, Duration::from_secs(30)).await;
    assert_stored_once(&app, &acked, &acked).await;
    assert_eq!(app.count().await as usize, acked.len());
    eprintln!(
        "database outage: {} requests, {during} during the {DB_OUTAGE:?} outage, backlog {backlog} before the restart",
        outcomes.len()
    );
    app.stop().await;
    clean_shared(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_backlog_limit_answers_503_and_no_unstored_entry_is_ever_trimmed() {
    require_shared();
    let Some(cluster) = start_cluster().await else {
        return;
    };
    let prefix = unique_prefix("backlog");
    let stream = format!("{prefix}:events");
    let app = spawn(&cluster.url(), SHARED, &prefix, |c| {
        c.redis_max_backlog = 50
    });
    cluster_do(&cluster, |c| c.stop("fast")).await;
    let body = |r: usize| {
        let events: Vec<String> = (0..5)
            .map(|k| format!(r#"{{"type":"heartbeat","sessionId":"load-0","id":"b{r}-{k}"}}"#))
            .collect();
        format!(r#"{{"batch":[{}]}}"#, events.join(","))
    };
    for r in 0..10 {
        assert_eq!(
            app.post_track(body(r)).await.status(),
            200,
            "request {r} fits"
        );
    }
    let refused = app.post_track(body(10)).await;
    assert!(refused.headers().contains_key("retry-after"), "Retry-After");
    assert_eq!(error_code(refused, 503).await, "overloaded");
    // The monitor trims every second: the unstored entries stay.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let xlen = || {
        redis_cli(6379, &["XLEN", &stream])
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(xlen(), 50, "no unstored entry trimmed");
    cluster_do(&cluster, Cluster::pg_ctl_start).await;
    wait_for_count(&app, 50, Duration::from_secs(30)).await;
    wait_for_empty_backlog(&app, Duration::from_secs(10)).await;
    let sent: BTreeSet<String> = (0..10)
        .flat_map(|r| (0..5).map(move |k| format!("b{r}-{k}")))
        .collect();
    assert_stored_once(&app, &sent, &sent).await;
    // Stored entries are removed (trimmed once every reader has them).
    let started = Instant::now();
    while xlen() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stored entries are trimmed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.post_track(body(11)).await.status(), 200, "room again");
    app.stop().await;
    clean_shared(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_and_restarted_loses_no_acknowledged_event() {
    let Some(cluster) = start_cluster().await else {
        return;
    };
    let mut redis = tokio::task::spawn_blocking(OwnRedis::start).await.unwrap();
    let app = spawn(&cluster.url(), &redis.url(), "beacon", |_| {});
    let load = start_load(&app.address);
    load.wait_for(
        Instant::now(),
        Duration::from_secs(10),
        "200s before",
        |o| o.answer == Ok(200),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let redis = tokio::task::spawn_blocking(move || {
        redis.kill();
        redis
    })
    .await
    .unwrap();
    let killed = Instant::now();
    load.wait_for(
        killed,
        Duration::from_secs(10),
        "503s while Redis is down",
        |o| o.answer == Ok(503) && o.code.as_deref() == Some("buffer_unavailable"),
    )
    .await;
    let (status, body) = up_status(
        &crate::helpers::client_builder().build().unwrap(),
        &app.address,
    )
    .await;
    assert_eq!(status, 503, "/up while Redis is down: {body}");
    assert_eq!(body["redis"], "down", "{body}");
    let mut redis = redis;
    let redis = tokio::task::spawn_blocking(move || {
        redis.spawn();
        redis
    })
    .await
    .unwrap();
    let restarted = Instant::now();
    load.wait_for(
        restarted,
        Duration::from_secs(20),
        "200s after the restart",
        |o| o.answer == Ok(200),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = load.finish().await;
    wait_for_empty_backlog(&app, Duration::from_secs(30)).await;
    let acked = acknowledged(&outcomes);
    let all: BTreeSet<String> = outcomes
        .iter()
        .flat_map(|o| o.ids.iter().cloned())
        .collect();
    wait_for_count(&app, acked.len() as i64, Duration::from_secs(30)).await;
    assert_stored_once(&app, &acked, &all).await;
    app.stop().await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_address_reaches_redis_or_its_append_only_file() {
    let redis = tokio::task::spawn_blocking(OwnRedis::start).await.unwrap();
    let db = beacon_store::testing::TestDatabase::sqlite();
    let mut config = crate::helpers::test_config(&db);
    buffered(&mut config, &redis.url(), "beacon");
    let app = spawn_config(config);
    let response = app
        .client
        .post(format!("{}/track", app.address))
        .header("X-Forwarded-For", "203.0.113.77")
        .header("X-Real-IP", "203.0.113.78")
        .body(r#"{"type":"visit","sessionId":"aof-search","url":"https://site.example/"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for_count(&app, 1, Duration::from_secs(10)).await;
    app.stop().await;
    let aof = redis.aof_bytes();
    let text = String::from_utf8_lossy(&aof);
    assert!(
        text.contains("aof-search"),
        "the event is in the append-only file"
    );
    // The peer (127.0.0.1) and the forwarded addresses: none of them.
    // (`data.ip` sent by a client is the enrichment's to strip, before
    // an event reaches the buffer; the entry has no field of its own for
    // an address.)
    for address in ["203.0.113.77", "203.0.113.78", "127.0.0.1"] {
        assert!(
            !text.contains(address),
            "{address} found in the append-only file"
        );
    }
}
