//! Slow and abusive clients: rate limits, trickled bodies, stalled heads.

use std::time::{Duration, Instant};

use beacon_store::testing::TestDatabase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"POST /track HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let started = Instant::now();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                // Trickle one more byte; ignore errors once the server closed.
                let _ = stream.write_all(b" ").await;
            }
        }
        if started.elapsed() > Duration::from_secs(8) {
            panic!("the slow client was not cut off within 8 s");
        }
    }
    let text = String::from_utf8_lossy(&response);
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
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"POST /track HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the connection");
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "got {text:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    app.stop().await;
}

/// Opens `GET /stream` on a new connection and reads until its first bytes
/// arrive: the connection has been accepted and is held open.
async fn held_stream(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("a stream within the cap is served")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_one_closes() {
    let db = sqlite();
    // Two HTTP workers with two connections each.
    let app = spawn_app_with(&db, |c| {
        c.http_workers = 2;
        c.max_connections = 4;
    });
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(held_stream(&addr).await);
    }

    // The fifth connection gets through TCP (the kernel's backlog) but is
    // not served while four are open.
    let mut fifth = TcpStream::connect(&addr).await.unwrap();
    fifth
        .write_all(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(1500), fifth.read_to_end(&mut answer)).await;
    assert!(
        early.is_err() && answer.is_empty(),
        "a connection over the cap was served: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // One held connection closes: the waiting one is served.
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(5), fifth.read_to_end(&mut answer))
        .await
        .expect("the waiting connection is served once a slot is free")
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
    app.stop().await;
}
