//! `rediss://` with a password: the real binary on a `redis-server` of the
//! test's own that speaks only TLS and requires a password, its
//! certificate signed by a CA the test makes (trusted through
//! `SSL_CERT_FILE`, which OpenSSL reads), so the certificate is verified.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use beacon_store::testing::TestDatabase;

use super::redis::redis_cli;

fn run(dir: &std::path::Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_mode_works_over_tls_with_a_password_that_the_log_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    run(
        d,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=beacon-test-ca",
        ],
    );
    run(
        d,
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    run(
        d,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "redis.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
        ])
        .args([
            "--tls-cert-file",
            "redis.crt",
            "--tls-key-file",
            "redis.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .args([
            "--requirepass",
            "s3cret-pw",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    // Plain TCP is refused: this Redis speaks only TLS.
    assert!(redis_cli(port, &["PING"]).is_none_or(|o| o.trim() != "PONG"));

    let db = TestDatabase::sqlite();
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = d.join("beacon.log");
    let mut beacon = Command::new(env!("CARGO_BIN_EXE_beacon"))
        .args(["serve", "--bind", &format!("127.0.0.1:{http}")])
        .env("DATABASE_URL", &db.raw_url)
        .env(
            "BEACON_REDIS_URL",
            format!("rediss://:s3cret-pw@localhost:{port}/0"),
        )
        .env("SSL_CERT_FILE", d.join("ca.crt"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the beacon binary starts");
    let address = format!("http://127.0.0.1:{http}");
    let client = crate::helpers::client_builder().build().unwrap();
    let started = Instant::now();
    let up = loop {
        if let Ok(r) = client.get(format!("{address}/up")).send().await {
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            if body["redis"] == "up" {
                break body;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "Redis over TLS never up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(up["status"], "ok", "{up}");
    let posted = client
        .post(format!("{address}/track"))
        .body(r#"{"type":"visit","sessionId":"over-tls","url":"https://site.example/"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let store =
        beacon_store::Store::connect(&db.url, &beacon_store::PoolOptions::default()).unwrap();
    let started = Instant::now();
    loop {
        let s = store.clone();
        let n = tokio::task::spawn_blocking(move || s.session_events("over-tls").unwrap().len())
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the event is stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &beacon.id().to_string()])
        .status();
    beacon.wait().unwrap();
    redis.kill().unwrap();
    redis.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("buffered mode"), "the start-up line: {log}");
    assert!(!log.contains("s3cret-pw"), "the password is masked: {log}");
}
