//! The real binary's log, at `debug`, after hostile requests: it never
//! carries a payload, a header value or a path the client chose, so neither
//! can it carry the client's CR/LF (a forged log line).

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::raw_http::RawConnection;
use crate::helpers::Db;
use crate::shutdown::{signal, start_binary_logging, wait_until_up};

/// Put in every field a client controls. The log must never show it.
const MARK: &str = "LEAKMARK";

/// Sends `bytes` on a new connection and reads until the server answers and
/// closes, or a second passes.
async fn raw(address: &str, bytes: &[u8]) -> String {
    let mut connection = RawConnection::open(address).await;
    connection.send(bytes).await.unwrap();
    let _ = connection.read_to_end_within(Duration::from_secs(1)).await;
    connection.received_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_never_carries_what_a_client_sent() {
    let db = Db::Sqlite.fresh().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("beacon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = start_binary_logging(&db, "debug", Stdio::from(log));
    wait_until_up(&server).await;
    let client = crate::helpers::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let track = format!("{}/track", server.address);
    let injected = format!("{MARK}\\r\\n[ERROR] forged {MARK}");
    let bodies = [
        // Valid and stored, with the mark everywhere it can go.
        format!(
            r#"{{"type":"click","sessionId":"s-{MARK}","url":"https://x/{MARK}?a=%0d%0a","referrer":"{injected}","data":{{"label":"{injected}"}}}}"#
        ),
        // Refused in every way a field can be refused.
        format!(r#"{{"type":"visit","sessionId":"{injected}"}}"#),
        format!(r#"{{"type":"{injected}","sessionId":"s"}}"#),
        format!(r#"{{"type":"visit","sessionId":"s","data":"{injected}"}}"#),
        format!(r#"{{"type":"visit","sessionId":"s","id":"{injected}"}}"#),
        format!(r#"{{"type":"visit","sessionId":"s","timestamp":"{injected}"}}"#),
        format!(
            r#"{{"type":"visit","sessionId":"s","url":"{}{MARK}"}}"#,
            "u".repeat(9000)
        ),
        format!(r#"{{"batch":[{{"type":"visit","sessionId":"s"}},"{injected}"]}}"#),
        format!(r#"{{"batch":"{injected}"}}"#),
        format!("{MARK} not json\r\n{MARK}"),
        format!(r#"["{injected}"]"#),
    ];
    for body in &bodies {
        let response = client
            .post(&track)
            .header("User-Agent", format!("agent {MARK}"))
            .header("Referer", format!("https://{MARK}/"))
            .header("X-Forwarded-For", MARK)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().as_u16() < 500,
            "{body:.80}: {}",
            response.status()
        );
    }
    let status = client
        .post(&track)
        .header("Content-Encoding", format!("gzip-{MARK}"))
        .body(MARK)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_client_error(), "unsupported encoding: {status}");
    for path in [
        format!("/track?{MARK}=%0d%0a{MARK}"),
        format!("/sessions/{MARK}%0d%0a{MARK}"),
        format!("/events?type={MARK}&from={MARK}"),
        format!("/{MARK}%0d%0a"),
    ] {
        let status = client
            .get(format!("{}{path}", server.address))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_client_error(), "{path}: {status}");
    }
    // What no HTTP client sends: a bare CR inside a header value, and a body
    // over the limit.
    let answer = raw(
        &server.address,
        format!("POST /track HTTP/1.1\r\nHost: x\r\nX-A: {MARK}\r{MARK}\r\nContent-Length: 2\r\n\r\n{{}}")
            .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:.80}");
    let answer = raw(
        &server.address,
        format!("POST /track HTTP/1.1\r\nHost: x\r\nContent-Length: 600000\r\n\r\n{MARK}")
            .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.80}");

    signal(&server, "TERM");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("listening on"),
        "the log was captured: {log:.500}"
    );
    assert!(
        log.contains("stopped: every acknowledged event is committed"),
        "the log holds the whole run: {log:.500}"
    );
    let leaks: Vec<&str> = log.lines().filter(|line| line.contains(MARK)).collect();
    assert!(leaks.is_empty(), "the log carries client data: {leaks:#?}");
}
