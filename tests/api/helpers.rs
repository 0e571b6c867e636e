//! `spawn_app()` and typed helpers: the real application on port 0 with a
//! fresh database, talked to over HTTP.

pub mod raw_http;

use std::sync::mpsc;
use std::thread::JoinHandle;

use beacon_server::{Application, Config};
use beacon_store::testing::TestDatabase;
use beacon_store::{PoolOptions, Store, StoredEvent};
use serde_json::Value;

pub const PIXEL: &str = include_str!("../fixtures/batch-pixel.json");
pub const HEARTBEAT: &str = include_str!("../fixtures/batch-heartbeat.json");
pub const SESSION_END: &str = include_str!("../fixtures/beacon-session-end.txt");
pub const SINGLE: &str = include_str!("../fixtures/single-event.json");
pub const SNAKE: &str = include_str!("../fixtures/snake-case.json");

/// A desktop Chrome's user agent. Every test client sends it: HTTP
/// libraries' own user agents are bots, which Beacon answers but does not
/// store (tests of bots set theirs explicitly).
pub const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A client builder that sends [`BROWSER_UA`].
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(BROWSER_UA)
}

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    /// A fresh database, or `None` for PostgreSQL without `TEST_DATABASE_URL`
    /// (SQLite always has one).
    pub fn fresh(self) -> Option<TestDatabase> {
        match self {
            Db::Sqlite => Some(TestDatabase::sqlite()),
            Db::Postgres => TestDatabase::postgres(),
        }
    }
}

/// A running application.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// A separate pool on the same database, to check what was stored.
    pub store: Store,
    handle: Option<beacon_server::StopHandle>,
    thread: Option<JoinHandle<()>>,
}

/// Test defaults: port 0, short timeouts.
pub fn test_config(db: &TestDatabase) -> Config {
    let mut config = Config::with_database(db.url.clone());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.http_workers = 2;
    config.pool_size = 4;
    config.db_timeout = std::time::Duration::from_secs(1);
    config.ack_timeout = std::time::Duration::from_secs(5);
    config.stream_interval = std::time::Duration::from_millis(100);
    config
}

pub fn spawn_app(db: &TestDatabase) -> TestApp {
    spawn_app_with(db, |_| {})
}

pub fn spawn_app_with(db: &TestDatabase, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(db);
    tweak(&mut config);
    spawn_config(config)
}

/// The application with a read token, set as the `--read-token` flag sets
/// it.
pub fn spawn_app_with_token(db: &TestDatabase, token: &str) -> TestApp {
    let cli =
        <beacon_server::Cli as clap::Parser>::try_parse_from(["beacon", "--read-token", token])
            .unwrap();
    spawn_app_with(db, |c| c.read_token = cli.config.read_token)
}

/// Runs the application with `config` on its own thread; the returned
/// app's `store` is a separate pool on the same database.
pub fn spawn_config(config: Config) -> TestApp {
    spawn_config_with_clock(
        config,
        std::sync::Arc::new(beacon_server::clock::SystemClock),
    )
}

/// [`spawn_config`] with the clock the application's handlers and workers
/// take the time from.
pub fn spawn_config_with_clock(
    config: Config,
    clock: beacon_server::clock::SharedClock,
) -> TestApp {
    let store = Store::connect(&config.database_url, &PoolOptions::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let app = Application::build_with_clock(config, clock)
                .await
                .expect("application builds");
            tx.send((app.port(), app.handle())).unwrap();
            app.run_until_stopped().await.expect("application runs");
        });
    });
    let (port, handle) = rx.recv().expect("application started");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: client_builder().build().unwrap(),
        store,
        handle: Some(handle),
        thread: Some(thread),
    }
}

impl TestApp {
    /// Posts a body as the pixel does (`application/json`).
    pub async fn post_track(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}/track", self.address))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A gauge from `/metrics`.
    pub async fn gauge(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
    }

    /// GET `path`. Before a read of the rollups (stats, top lists, session
    /// counters), every acknowledged event is folded into them, as the
    /// server's rollup worker does within `--rollup-interval`, so that the
    /// figures are exact without sleeping (`history.rs` checks the worker
    /// on its own).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        if ["/stats/", "/top-", "/sessions"]
            .iter()
            .any(|p| path.starts_with(p))
        {
            self.settle().await;
        }
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    /// Stored events of a session, read straight from the database.
    pub async fn stored(&self, token: &str) -> Vec<StoredEvent> {
        let store = self.store.clone();
        let token = token.to_owned();
        tokio::task::spawn_blocking(move || store.session_events(&token).unwrap())
            .await
            .unwrap()
    }

    /// Folds every acknowledged event into the rollups.
    pub async fn settle(&self) {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.roll_up_all().unwrap())
            .await
            .unwrap();
    }

    pub async fn count(&self) -> i64 {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.count_events().unwrap())
            .await
            .unwrap()
    }

    /// Stops gracefully, as SIGTERM does, and waits until it has.
    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop().await;
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join().unwrap())
                .await
                .unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // A test that failed before `stop`: stop in the background.
            std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(handle.stop());
            });
        }
    }
}

/// Asserts the JSON error shape and returns the code.
pub async fn error_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "errors are JSON"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    body["error"].as_str().unwrap().to_owned()
}

/// Declares each async test once per backend, in modules `sqlite` and
/// `postgres` of the calling module, each on a fresh database: `name` calls
/// `async fn name(db: &TestDatabase)` of the calling module, and
/// `name => function(args…)` calls `function(db, args…)` under the test
/// name `name`. A PostgreSQL test without `TEST_DATABASE_URL` prints a
/// notice and does not run (it fails under `BEACON_REQUIRE_POSTGRES=1`).
#[macro_export]
macro_rules! on_both_backends {
    (@test $backend:ident, $name:ident) => {
        $crate::on_both_backends!(@test $backend, $name => $name());
    };
    (@test $backend:ident, $name:ident => $function:ident($($arg:expr),* $(,)?)) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            if let Some(db) = $crate::helpers::Db::$backend.fresh() {
                super::$function(&db $(, $arg)*).await;
            }
        }
    };
    ($($name:ident $(=> $function:ident($($arg:expr),* $(,)?))?),* $(,)?) => {
        mod sqlite {
            $($crate::on_both_backends!(@test Sqlite, $name $(=> $function($($arg),*))?);)*
        }
        mod postgres {
            $($crate::on_both_backends!(@test Postgres, $name $(=> $function($($arg),*))?);)*
        }
    };
}

/// Re-dates a fixture so that its first event happened `ago` before now,
/// keeping the offsets between events (the server only believes client
/// times within [received - 7 days, received + 10 minutes], and live
/// windows are relative to now).
pub fn redate_to(fixture: &str, ago: chrono::Duration) -> String {
    let mut doc: Value = serde_json::from_str(fixture).unwrap();
    let events: Vec<&mut Value> = match doc.get_mut("batch") {
        Some(batch) => batch.as_array_mut().unwrap().iter_mut().collect(),
        None => vec![&mut doc],
    };
    let parse =
        |e: &Value| chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap();
    let first = events.iter().map(|e| parse(e)).min().unwrap();
    let shift = (chrono::Utc::now() - ago).signed_duration_since(first);
    for e in events {
        let t = (parse(e) + shift).with_timezone(&chrono::Utc);
        e["timestamp"] = Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    doc.to_string()
}

/// Reads SSE frames from a response body.
pub struct SseReader {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next frame (text up to a blank line), or `None` at the end.
    pub async fn next_frame(&mut self) -> Option<String> {
        use futures_util::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(frame);
            }
            let chunk = self.stream.next().await?.ok()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The JSON of the next `data:` frame.
    pub async fn next_data(&mut self) -> Option<Value> {
        loop {
            let frame = self.next_frame().await?;
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                return Some(serde_json::from_str(data).unwrap());
            }
        }
    }
}
