//! Slow and abusive clients: rate limits, trickled bodies, stalled heads.

use std::time::{Duration, Instant};

use beacon_store::testing::TestDatabase;

use crate::helpers::raw_http::RawConnection;
use crate::helpers::*;

fn sqlite() -> TestDatabase {
    Db::Sqlite.fresh().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_over_the_rate_limit_gets_429_with_retry_after() {
    let db = sqlite();
    let app = spawn_app_with(&db, |c| {
        c.rate_limit = Some(beacon_server::config::RateLimit {
            count: 3,
            per: Duration::from_secs(60),
        })
    });
    for i in 0..3 {
        assert_eq!(
            app.post_track(SINGLE).await.status(),
            200,
            "request {i} is within the limit"
        );
    }
    let response = app.post_track(SINGLE).await;
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(error_code(response, 429).await, "rate_limited");
    assert_eq!(app.count().await, 3, "the limited request stored nothing");
    assert_eq!(
        app.get("/up").await.status(),
        200,
        "other endpoints are not limited"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_one_byte_a_second_is_cut_off_with_408() {
    let db = sqlite();
    let app = spawn_app_with(&db, |c| c.request_timeout = Duration::from_secs(1));
    let mut connection = RawConnection::open(&app.address).await;
    connection
        .send(b"POST /track HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        match connection.read_within(Duration::from_millis(500)).await {
            Some(Ok(0) | Err(_)) => break,
            Some(Ok(_)) => {}
            None => {
                // Trickle one more byte; ignore errors once the server closed.
                let _ = connection.send(b" ").await;
            }
        }
        if started.elapsed() > Duration::from_secs(8) {
            panic!("the slow client was not cut off within 8 s");
        }
    }
    let text = connection.received_text();
    assert!(text.starts_with("HTTP/1.1 408"), "got {text:?}");
    assert!(text.contains("request_timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off near the 1 s limit"
    );
    assert_eq!(app.count().await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_closed_within_the_limit() {
    let db = sqlite();
    let app = spawn_app_with(&db, |c| c.request_timeout = Duration::from_secs(1));
    let mut connection = RawConnection::open(&app.address).await;
    connection
        .send(b"POST /track HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let read = connection.read_to_end_within(Duration::from_secs(6)).await;
    assert!(read.is_some(), "the server closed the connection");
    let text = connection.received_text();
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "got {text:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    app.stop().await;
}

/// Opens `GET /stream` on a new connection and reads until its first bytes
/// arrive: the connection has been accepted and is held open.
async fn held_stream(address: &str) -> RawConnection {
    let mut connection = RawConnection::open(address).await;
    connection
        .send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    connection
        .read_within(Duration::from_secs(5))
        .await
        .expect("a stream within the cap is served")
        .unwrap();
    assert!(
        connection.received().starts_with(b"HTTP/1.1 200"),
        "{:?}",
        connection.received()
    );
    connection
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_one_closes() {
    let db = sqlite();
    // Two HTTP workers with two connections each.
    let app = spawn_app_with(&db, |c| {
        c.http_workers = 2;
        c.max_connections = 4;
    });
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(held_stream(&app.address).await);
    }

    // The fifth connection gets through TCP (the kernel's backlog) but is
    // not served while four are open.
    let mut fifth = RawConnection::open(&app.address).await;
    fifth
        .send(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = fifth.read_to_end_within(Duration::from_millis(1500)).await;
    assert!(
        early.is_none() && fifth.received().is_empty(),
        "a connection over the cap was served: {:?}",
        fifth.received_text()
    );

    // One held connection closes: the waiting one is served.
    drop(held.pop());
    fifth
        .read_to_end_within(Duration::from_secs(5))
        .await
        .expect("the waiting connection is served once a slot is free")
        .unwrap();
    assert!(
        fifth.received().starts_with(b"HTTP/1.1 200"),
        "{:?}",
        fifth.received_text()
    );
    drop(held);
    app.stop().await;
}
