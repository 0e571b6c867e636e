//! The real binary, signalled in the middle of a burst: nothing that got a
//! 200 may be missing afterwards, whether it stops gracefully (SIGTERM,
//! SIGINT) or is killed (SIGKILL).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use beacon_store::testing::TestDatabase;
use beacon_store::{PoolOptions, Store};
use serde_json::json;

use crate::on_both_backends;

on_both_backends!(
    sigterm_in_the_middle_of_a_burst_loses_nothing_acknowledged =>
        graceful_stop_in_the_middle_of_a_burst_loses_nothing_acknowledged("TERM"),
    sigint_in_the_middle_of_a_burst_loses_nothing_acknowledged =>
        graceful_stop_in_the_middle_of_a_burst_loses_nothing_acknowledged("INT"),
    kill_9_in_the_middle_of_a_burst_loses_nothing_acknowledged,
);

const REQUESTS: usize = 300;
const EVENTS_PER_REQUEST: usize = 5;

pub(crate) struct Server {
    pub child: Child,
    pub address: String,
}

fn start_binary(db: &TestDatabase) -> Server {
    start_binary_logging(db, "warn", Stdio::null())
}

/// Starts the real binary on a free port, logging at `log` into `stderr`.
pub(crate) fn start_binary_logging(db: &TestDatabase, log: &str, stderr: Stdio) -> Server {
    start_binary_with(db, log, stderr, &[])
}

/// [`start_binary_logging`] with more flags.
pub(crate) fn start_binary_with(
    db: &TestDatabase,
    log: &str,
    stderr: Stdio,
    flags: &[&str],
) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_beacon"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .args(flags)
        .env("DATABASE_URL", &db.raw_url)
        .env("RUST_LOG", log)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the beacon binary starts");
    Server {
        child,
        address: format!("http://127.0.0.1:{port}"),
    }
}

pub(crate) async fn wait_until_up(server: &Server) {
    let client = crate::helpers::client_builder().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{}/up", server.address)).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not come up");
}

pub(crate) fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// Sends the burst, signals the server once a third of it is acknowledged,
/// and returns the session tokens whose request got a 200.
async fn burst_and_signal(server: &Server, signal_name: &'static str) -> Vec<String> {
    let client = crate::helpers::client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let token = format!("{signal_name}-{i}");
        let events: Vec<_> = (0..EVENTS_PER_REQUEST)
            .map(|k| json!({"type": "heartbeat", "sessionId": token, "id": format!("{token}-{k}")}))
            .collect();
        let body = json!({ "batch": events }).to_string();
        let (client, url, acked) = (
            client.clone(),
            format!("{}/track", server.address),
            acked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Spread the burst a little so the signal lands in its middle.
            tokio::time::sleep(Duration::from_millis((i as u64 % 50) * 2)).await;
            let ok = matches!(client.post(url).body(body).send().await, Ok(r) if r.status() == 200);
            if ok {
                acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            ok.then_some(token)
        }));
    }
    while acked.load(std::sync::atomic::Ordering::SeqCst) < REQUESTS / 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    signal(server, signal_name);
    let mut tokens = Vec::new();
    for task in tasks {
        if let Some(token) = task.await.unwrap() {
            tokens.push(token);
        }
    }
    tokens
}

async fn assert_all_stored(db: &TestDatabase, acked: &[String]) {
    let store = Store::connect(&db.url, &PoolOptions::default()).unwrap();
    let acked = acked.to_vec();
    let missing = tokio::task::spawn_blocking(move || {
        acked
            .iter()
            .filter(|t| store.session_events(t).unwrap().len() != EVENTS_PER_REQUEST)
            .cloned()
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
}

async fn graceful_stop_in_the_middle_of_a_burst_loses_nothing_acknowledged(
    db: &TestDatabase,
    sig: &'static str,
) {
    let mut server = start_binary(db);
    wait_until_up(&server).await;
    let acked = burst_and_signal(&server, sig).await;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "stops within a bounded time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status 0 after {sig}: {status:?}");
    assert!(acked.len() >= REQUESTS / 3, "{} acknowledged", acked.len());
    assert_all_stored(db, &acked).await;
}

async fn kill_9_in_the_middle_of_a_burst_loses_nothing_acknowledged(db: &TestDatabase) {
    let mut server = start_binary(db);
    wait_until_up(&server).await;
    let acked = burst_and_signal(&server, "KILL").await;
    let _ = server.child.wait();
    assert!(acked.len() >= REQUESTS / 3, "{} acknowledged", acked.len());
    assert!(
        acked.len() < REQUESTS,
        "the kill landed in the middle of the burst"
    );
    assert_all_stored(db, &acked).await;
}
