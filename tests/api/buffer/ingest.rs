//! The buffer's main path on the shared Redis: every acknowledged event
//! stored once, redelivered and duplicate entries stored once, and one
//! live view over several instances.

use std::time::Duration;

use beacon_store::testing::TestDatabase;
use serde_json::{json, Value};

use super::redis::{clean_shared, redis_cli, require_shared, unique_prefix, SHARED};
use super::{buffered, stored_ids, wait_for_count, wait_for_empty_backlog};
use crate::helpers::{spawn_app_with, SseReader};
use crate::on_both_backends;

on_both_backends!(
    buffered_ingest_stores_every_acknowledged_event_exactly_once,
    entries_claimed_from_a_dead_consumer_or_appended_twice_are_stored_once,
    an_event_posted_to_one_instance_shows_on_another_instances_stream,
    a_graceful_stop_leaves_no_batch_unacknowledged_and_the_next_instance_stores_the_rest,
    an_entry_refused_for_good_goes_to_the_dead_letters_and_the_drain_goes_on,
    consumers_of_stopped_instances_leave_the_group,
);

const REQUESTS: usize = 120;
const EVENTS_PER_REQUEST: usize = 5;

async fn buffered_ingest_stores_every_acknowledged_event_exactly_once(db: &TestDatabase) {
    require_shared();
    let prefix = unique_prefix("exactly-once");
    let app = spawn_app_with(db, |c| buffered(c, SHARED, &prefix));
    // Concurrent requests, half with ids of the client's (checked for
    // duplicates) and half without (the server's, copied fast).
    let posts = (0..REQUESTS).map(|r| {
        let events: Vec<Value> = (0..EVENTS_PER_REQUEST)
            .map(|k| {
                let mut e = json!({"type": "click", "sessionId": format!("s-{}", r % 7), "data": {"label": format!("L{k}")}});
                if r % 2 == 0 {
                    e["id"] = json!(format!("r{r}-e{k}"));
                }
                e
            })
            .collect();
        let body = json!({ "batch": events }).to_string();
        let app = &app;
        async move { app.post_track(body).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let expected = (REQUESTS * EVENTS_PER_REQUEST) as i64;
    wait_for_count(&app, expected, Duration::from_secs(30)).await;
    wait_for_empty_backlog(&app, Duration::from_secs(10)).await;
    assert_eq!(app.count().await, expected, "nothing stored twice");
    let sessions: Vec<String> = (0..7).map(|s| format!("s-{s}")).collect();
    let ids = stored_ids(&app.store, &sessions).await;
    assert_eq!(ids.len() as i64, expected);
    assert!(ids.values().all(|n| *n == 1));
    assert_eq!(app.gauge("beacon_buffer_dead_letters_total").await, 0.0);
    assert_eq!(
        app.gauge("beacon_buffer_appended_events_total").await,
        expected as f64
    );
    app.stop().await;
    clean_shared(&prefix);
}

/// An entry as Beacon writes it (`buffer/entry.rs`), for a session and id.
fn entry_json(session: &str, id: &str, generated: bool) -> String {
    json!({"id": id, "generated": generated, "type": "visit", "session": session,
           "url": "https://site.example/", "data": "{\"page_title\":\"Home\"}",
           "occurred_us": chrono::Utc::now().timestamp_micros(),
           "received_us": chrono::Utc::now().timestamp_micros()})
    .to_string()
}

async fn entries_claimed_from_a_dead_consumer_or_appended_twice_are_stored_once(db: &TestDatabase) {
    require_shared();
    let prefix = unique_prefix("redelivery");
    let stream = format!("{prefix}:events");
    let group = format!("{prefix}:drain");
    let xadd = |session: &str, id: &str, generated: bool| {
        let e = entry_json(session, id, generated);
        redis_cli(6379, &["XADD", &stream, "*", "v", "1", "e", &e]).expect("XADD");
    };
    // A consumer that read ten entries and died without acknowledging them.
    redis_cli(
        6379,
        &["XGROUP", "CREATE", &stream, &group, "0", "MKSTREAM"],
    )
    .unwrap();
    for i in 0..10 {
        xadd("ghost", &format!("0190a000-0000-7000-8000-{i:012}"), true);
    }
    let read = redis_cli(
        6379,
        &[
            "XREADGROUP",
            "GROUP",
            &group,
            "dead-consumer",
            "COUNT",
            "10",
            "STREAMS",
            &stream,
            ">",
        ],
    )
    .unwrap();
    assert!(
        read.contains("ghost"),
        "the dead consumer read the entries: {read}"
    );
    // The same events appended again, as a first delivery (what a Redis
    // that lost its acknowledgements on a crash would deliver), server ids
    // and client ids alike, plus a new one in the middle.
    for i in 0..10 {
        xadd("ghost", &format!("0190a000-0000-7000-8000-{i:012}"), true);
    }
    xadd("ghost", "client-id-1", false);
    xadd("ghost", "client-id-1", false);
    xadd("ghost", "0190a000-0000-7000-8000-999999999999", true);

    let app = spawn_app_with(db, |c| buffered(c, SHARED, &prefix));
    wait_for_count(&app, 12, Duration::from_secs(30)).await;
    wait_for_empty_backlog(&app, Duration::from_secs(20)).await;
    let ids = stored_ids(&app.store, &["ghost".to_owned()]).await;
    assert_eq!(ids.len(), 12, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    assert_eq!(app.count().await, 12);
    assert!(
        app.gauge("beacon_buffer_redeliveries_total").await >= 10.0,
        "the dead consumer's entries were claimed"
    );
    assert_eq!(
        app.gauge("beacon_buffer_dead_letters_total").await,
        0.0,
        "a duplicate never fails its batch into the dead letters"
    );
    app.stop().await;
    let _ = redis_cli(6379, &["DEL", &stream]);
    clean_shared(&prefix);
}

async fn an_event_posted_to_one_instance_shows_on_another_instances_stream(db: &TestDatabase) {
    require_shared();
    let prefix = unique_prefix("one-view");
    let a = spawn_app_with(db, |c| buffered(c, SHARED, &prefix));
    let b = spawn_app_with(db, |c| buffered(c, SHARED, &prefix));
    let mut stream = SseReader::new(
        b.client
            .get(format!("{}/stream", b.address))
            .send()
            .await
            .unwrap(),
    );
    let first = stream.next_data().await.unwrap();
    assert_eq!(first["message"], "stream-open");
    let sent = std::time::Instant::now();
    let status = a
        .post_track(r#"{"type":"click","sessionId":"seen-on-b","id":"only-via-a","data":{"label":"From A"}}"#)
        .await
        .status();
    assert_eq!(status, 200);
    // B's ticks come every 100 ms; the event is in one of the next ones.
    let tick = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let tick = stream.next_data().await.expect("the stream stays open");
            let seen = tick["recent_events"]
                .as_array()
                .is_some_and(|events| events.iter().any(|e| e["session_token"] == "seen-on-b"));
            if seen {
                return tick;
            }
        }
    })
    .await
    .expect("B shows A's event");
    eprintln!("A's event on B's /stream after {:?}", sent.elapsed());
    assert_eq!(tick["top_clicks"][0]["label"], "From A", "{tick}");
    assert_eq!(
        tick["top_clicks"][0]["count"], 1,
        "counted once on B: {tick}"
    );
    // A client sending the same event again (same id): stored once, and
    // counted once live.
    assert_eq!(
        a.post_track(r#"{"type":"click","sessionId":"seen-on-b","id":"only-via-a","data":{"label":"From A"}}"#)
            .await
            .status(),
        200
    );
    wait_for_empty_backlog(&a, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tick = stream.next_data().await.unwrap();
    assert_eq!(
        tick["top_clicks"][0]["count"], 1,
        "a duplicate counts once: {tick}"
    );
    assert_eq!(a.count().await, 1);
    a.stop().await;
    b.stop().await;
    clean_shared(&prefix);
}

async fn a_graceful_stop_leaves_no_batch_unacknowledged_and_the_next_instance_stores_the_rest(
    db: &TestDatabase,
) {
    require_shared();
    let prefix = unique_prefix("graceful");
    let app = spawn_app_with(db, |c| buffered(c, SHARED, &prefix));
    let posts = (0..60).map(|r| {
        let events: Vec<Value> = (0..10)
            .map(|k| json!({"type": "heartbeat", "sessionId": "graceful", "id": format!("g{r}-{k}")}))
            .collect();
        let body = json!({ "batch": events }).to_string();
        let app = &app;
        async move { app.post_track(body).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Stopped at once: batches may be in the consumers' hands.
    let store = app.store.clone();
    app.stop().await;
    let pending = redis_cli(
        6379,
        &[
            "XPENDING",
            &format!("{prefix}:events"),
            &format!("{prefix}:drain"),
        ],
    )
    .unwrap();
    assert_eq!(
        pending.lines().next().map(str::trim),
        Some("0"),
        "every batch in hand was stored and acknowledged: {pending}"
    );
    // What was not drained yet waits in the stream for the next instance.
    let next = spawn_app_with(db, |c| buffered(c, SHARED, &prefix));
    wait_for_count(&next, 600, Duration::from_secs(30)).await;
    wait_for_empty_backlog(&next, Duration::from_secs(10)).await;
    let ids = stored_ids(&store, &["graceful".to_owned()]).await;
    assert_eq!(ids.len(), 600);
    assert!(ids.values().all(|n| *n == 1));
    next.stop().await;
    clean_shared(&prefix);
}

async fn an_entry_refused_for_good_goes_to_the_dead_letters_and_the_drain_goes_on(
    db: &TestDatabase,
) {
    require_shared();
    let prefix = unique_prefix("dead");
    let stream = format!("{prefix}:events");
    let xadd = |e: &str| {
        redis_cli(6379, &["XADD", &stream, "*", "v", "1", "e", e]).expect("XADD");
    };
    xadd(&entry_json(
        "dl",
        "0190a000-0000-7000-8000-000000000001",
        true,
    ));
    // Not an event at all.
    xadd("{not json");
    // A NUL in a text column: PostgreSQL refuses it whatever the statement
    // (SQLite stores it).
    let nul = entry_json("dl", "0190a000-0000-7000-8000-000000000002", true)
        .replace("https://site.example/", "https://site.example/\\u0000");
    xadd(&nul);
    xadd(&entry_json(
        "dl",
        "0190a000-0000-7000-8000-000000000003",
        true,
    ));
    let postgres = db.raw_url.starts_with("postgres");
    let app = spawn_app_with(db, |c| buffered(c, SHARED, &prefix));
    wait_for_empty_backlog(&app, Duration::from_secs(20)).await;
    let ids = stored_ids(&app.store, &["dl".to_owned()]).await;
    let dead = if postgres { 2 } else { 1 };
    assert_eq!(ids.len(), 4 - dead, "the good entries are stored: {ids:?}");
    assert!(
        ids.contains_key("0190a000-0000-7000-8000-000000000003"),
        "after the bad ones"
    );
    assert_eq!(
        app.gauge("beacon_buffer_dead_letters_total").await,
        dead as f64
    );
    let letters = redis_cli(6379, &["XRANGE", &format!("{prefix}:dead"), "-", "+"]).unwrap();
    assert_eq!(letters.matches("reason").count(), dead, "{letters}");
    assert!(letters.contains("malformed entry"), "{letters}");
    app.stop().await;
    let _ = redis_cli(6379, &["DEL", &stream, &format!("{prefix}:dead")]);
    clean_shared(&prefix);
}

/// A stopping instance takes its consumers out of the group; the consumer
/// of one that died (here a consumer that never reads) is removed by the
/// others once idle for ten claim timeouts with nothing pending.
async fn consumers_of_stopped_instances_leave_the_group(db: &TestDatabase) {
    require_shared();
    let prefix = unique_prefix("consumers");
    let (stream, group) = (format!("{prefix}:events"), format!("{prefix}:drain"));
    let consumers = || redis_cli(6379, &["XINFO", "CONSUMERS", &stream, &group]).unwrap();
    redis_cli(
        6379,
        &["XGROUP", "CREATE", &stream, &group, "0", "MKSTREAM"],
    )
    .unwrap();
    redis_cli(
        6379,
        &["XGROUP", "CREATECONSUMER", &stream, &group, "ghost"],
    )
    .unwrap();
    assert!(consumers().contains("ghost"));

    let app = spawn_app_with(db, |c| buffered(c, SHARED, &prefix));
    let body = json!({"type": "click", "sessionId": "consumers", "data": {"label": "x"}});
    assert_eq!(app.post_track(body.to_string()).await.status(), 200);
    wait_for_count(&app, 1, Duration::from_secs(30)).await;
    // Claim timeout 800 ms (tests' setting): gone after 8 s idle.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while consumers().contains("ghost") {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle consumer is still in the group: {}",
            consumers()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        consumers().contains("name"),
        "the running instance's consumers stay: {}",
        consumers()
    );
    app.stop().await;
    assert_eq!(
        consumers().trim(),
        "",
        "a stopped instance leaves no consumer"
    );
    clean_shared(&prefix);
}
