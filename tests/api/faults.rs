//! Database faults under load: a PostgreSQL cluster of the test's own
//! (`initdb` + `pg_ctl` on a spare port, never the shared server) is stopped
//! while clients post to `/track` without pause, then started again.
//!
//! Expected: `/track` answers 503 with `Retry-After` instead of hanging,
//! `/up` says the database is down, `/stream` goes on with `"stale": true`,
//! everything recovers without restarting Beacon, and the events that got a
//! 200 are exactly the events in the database.

#![cfg(unix)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beacon_server::Config;
use beacon_store::DatabaseUrl;
use serde_json::{json, Value};

use crate::helpers::{spawn_config, SseReader, TestApp};

/// Load tasks posting at once.
pub(crate) const CLIENTS: usize = 4;
/// Events per request.
const EVENTS_PER_REQUEST: usize = 3;
/// Beacon's commit timeout in this test. The load client waits longer, so
/// every request gets Beacon's own answer, never a client-side timeout whose
/// outcome would be unknown.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// "Does not hang": a generous bound on any one answer.
const ANSWER_BOUND: Duration = Duration::from_secs(12);

// ---- a throw-away PostgreSQL cluster ----

/// A PostgreSQL cluster in a temporary directory, owned by the `postgres`
/// OS user when the test runs as root (`initdb` refuses root). Stopped and
/// removed on drop.
pub(crate) struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

/// Why the cluster could not be had: fails the test when
/// `BEACON_REQUIRE_POSTGRES=1` (CI), else a loud notice.
fn unavailable(why: &str) -> Option<Cluster> {
    assert!(
        std::env::var("BEACON_REQUIRE_POSTGRES").as_deref() != Ok("1"),
        "BEACON_REQUIRE_POSTGRES=1 but the test's own PostgreSQL cluster cannot start: {why}"
    );
    eprintln!("NOTICE: database fault test NOT run: {why}");
    None
}

/// The directory of `initdb` and `pg_ctl`: on PATH, or the newest
/// `/usr/lib/postgresql/*/bin`.
fn postgres_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

impl Cluster {
    pub(crate) fn start() -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            return unavailable("initdb and pg_ctl not found (PATH, /usr/lib/postgresql/*/bin)");
        };
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut builder = tempfile::Builder::new();
        builder.prefix("beacon-pg-");
        // As root, the cluster runs as `postgres`, which must reach its
        // directory: under /tmp, whatever TMPDIR says.
        let dir = if is_root {
            builder.tempdir_in("/tmp")
        } else {
            builder.tempdir()
        }
        .unwrap();
        if is_root {
            // The cluster runs as `postgres`, which must own its directory.
            let ids = |flag: &str| -> Option<u32> {
                let o = Command::new("id").args([flag, "postgres"]).output().ok()?;
                String::from_utf8_lossy(&o.stdout).trim().parse().ok()
            };
            let (Some(uid), Some(gid)) = (ids("-u"), ids("-g")) else {
                return unavailable("running as root and there is no `postgres` user");
            };
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            bin,
            dir,
            port,
            as_postgres: is_root,
        };
        let data = cluster.data();
        let init = cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        match init {
            Ok(o) if o.status.success() => {}
            Ok(o) => return unavailable(&format!("initdb failed: {}", output_text(&o))),
            Err(e) => return unavailable(&format!("initdb cannot run: {e}")),
        }
        if let Err(e) = cluster.pg_ctl_start() {
            return unavailable(&e);
        }
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::io::Result<Output> {
        let tool = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        };
        command.args(args).current_dir(self.dir.path()).output()
    }

    pub(crate) fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        let data = self.data();
        let out = self
            .run(
                "pg_ctl",
                &[
                    "start", "-D", &data, "-l", &log, "-w", "-t", "30", "-o", &options,
                ],
            )
            .map_err(|e| format!("pg_ctl cannot run: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(Path::new(&log)).unwrap_or_default();
            Err(format!("pg_ctl start failed: {}\n{log}", output_text(&out)))
        }
    }

    /// Stops the server. `fast` ends the sessions at once, but lets a
    /// backend finish and report a commit it is in; `immediate` may cut a
    /// commit off from its answer, and then nobody can know whether it
    /// happened (an in-doubt commit).
    pub(crate) fn stop(&self, mode: &str) -> Result<(), String> {
        let data = self.data();
        let out = self
            .run(
                "pg_ctl",
                &["stop", "-D", &data, "-m", mode, "-w", "-t", "30"],
            )
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(output_text(&out))
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Whatever state the test left it in; the directory goes with
        // `TempDir` (root may remove files that `postgres` owns).
        let _ = self.stop("immediate");
    }
}

// ---- Beacon on that cluster ----

fn spawn(url: &str) -> TestApp {
    let mut config = Config::with_database(DatabaseUrl::parse(url).unwrap());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.http_workers = 2;
    config.pool_size = 4;
    // A stopped database must be noticed fast: the pool waits this long for
    // a connection, and libpq's connect_timeout follows it.
    config.db_timeout = Duration::from_secs(1);
    config.ack_timeout = ACK_TIMEOUT;
    config.stream_interval = Duration::from_millis(100);
    spawn_config(config)
}

// ---- steady load ----

/// One request of the load and Beacon's answer.
pub(crate) struct Outcome {
    pub(crate) ids: Vec<String>,
    pub(crate) sent_at: Instant,
    took: Duration,
    /// HTTP status, or the transport error.
    pub(crate) answer: Result<u16, String>,
    retry_after: bool,
    pub(crate) code: Option<String>,
}

pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub(crate) fn start_load(address: &str) -> Load {
    let client = crate::helpers::client_builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let tasks = (0..CLIENTS)
        .map(|task| {
            let (client, stop, outcomes) = (client.clone(), stop.clone(), outcomes.clone());
            let url = format!("{address}/track");
            tokio::spawn(async move {
                let mut seq = 0;
                while !stop.load(Ordering::SeqCst) {
                    seq += 1;
                    let ids: Vec<String> =
                        (0..EVENTS_PER_REQUEST).map(|k| format!("c{task}-r{seq}-e{k}")).collect();
                    let events: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"type": "heartbeat", "sessionId": format!("load-{task}"), "id": id}))
                        .collect();
                    let sent_at = Instant::now();
                    let response = client.post(&url).body(json!({ "batch": events }).to_string()).send().await;
                    let took = sent_at.elapsed();
                    let outcome = match response {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let retry_after = r.headers().contains_key("retry-after");
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            Outcome {
                                ids,
                                sent_at,
                                took,
                                answer: Ok(status),
                                retry_after,
                                code: body["error"].as_str().map(str::to_owned),
                            }
                        }
                        Err(e) => Outcome {
                            ids,
                            sent_at,
                            took,
                            answer: Err(e.to_string()),
                            retry_after: false,
                            code: None,
                        },
                    };
                    let failed = outcome.answer != Ok(200);
                    outcomes.lock().unwrap().push(outcome);
                    // Steady, not frantic: a short pause, longer after a
                    // refusal (as a client honouring Retry-After would, in
                    // miniature).
                    let pause = if failed { 100 } else { 10 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        })
        .collect();
    Load {
        stop,
        outcomes,
        tasks,
    }
}

impl Load {
    /// Waits until an outcome of a request sent after `since` satisfies
    /// `done`; returns how long after `since` its answer came.
    pub(crate) async fn wait_for(
        &self,
        since: Instant,
        limit: Duration,
        what: &str,
        done: impl Fn(&Outcome) -> bool,
    ) -> Duration {
        loop {
            let first = self
                .outcomes
                .lock()
                .unwrap()
                .iter()
                .filter(|o| o.sent_at >= since && done(o))
                .map(|o| o.sent_at + o.took - since)
                .min();
            if let Some(after) = first {
                return after;
            }
            assert!(since.elapsed() < limit, "{what}: not within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(self.outcomes)
            .ok()
            .expect("every load task is done")
            .into_inner()
            .unwrap()
    }
}

pub(crate) async fn up_status(client: &reqwest::Client, address: &str) -> (u16, Value) {
    let response = client
        .get(format!("{address}/up"))
        .send()
        .await
        .expect("/up answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reads ticks until one satisfies `done`.
async fn tick_until(
    stream: &mut SseReader,
    limit: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(limit, async {
        loop {
            let tick = stream.next_data().await.expect("the stream stays open");
            if done(&tick) {
                return tick;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: no such tick within {limit:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_under_load_gets_503s_then_recovers_with_exactly_the_acknowledged_events()
{
    let cluster = match tokio::task::spawn_blocking(Cluster::start).await.unwrap() {
        Some(cluster) => Arc::new(cluster),
        None => return,
    };
    let app = spawn(&cluster.url());
    let client = crate::helpers::client_builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let mut stream = SseReader::new(
        client
            .get(format!("{}/stream", app.address))
            .send()
            .await
            .expect("/stream opens"),
    );

    // Steady load, acknowledged while the database is up.
    let load = start_load(&app.address);
    load.wait_for(
        Instant::now(),
        Duration::from_secs(10),
        "200s before the outage",
        |o| o.answer == Ok(200),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    tick_until(
        &mut stream,
        Duration::from_secs(5),
        "fresh figures before the outage",
        |t| t["stale"] == false && t["recent_events"].as_array().is_some_and(|e| !e.is_empty()),
    )
    .await;

    // The database goes away under the load (`fast`: see `Cluster::stop`).
    let stopped_at = Instant::now();
    {
        let cluster = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || cluster.stop("fast"))
            .await
            .unwrap()
            .expect("pg_ctl stop");
    }
    let first_503 = load
        .wait_for(
            stopped_at,
            Duration::from_secs(10),
            "a 503 with Retry-After after the stop",
            |o| o.answer == Ok(503) && o.retry_after,
        )
        .await;
    let (status, body) = up_status(&client, &app.address).await;
    assert_eq!(status, 503, "/up while the database is down: {body}");
    assert_eq!(body["database"], "down", "{body}");
    let stale = tick_until(&mut stream, Duration::from_secs(5), "a stale tick", |t| {
        t["stale"] == true
    })
    .await;
    assert!(
        stale["recent_events"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "the stream keeps the last figures: {stale}"
    );
    // The outage lasts a while, under load, every request still answered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stale = tick_until(
        &mut stream,
        Duration::from_secs(5),
        "ticks go on during the outage",
        |_| true,
    )
    .await;
    assert_eq!(
        stale["stale"], true,
        "still stale while the database is down: {stale}"
    );

    // The database comes back; Beacon recovers by itself.
    let restarted_at = Instant::now();
    {
        let cluster = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || cluster.pg_ctl_start())
            .await
            .unwrap()
            .expect("pg_ctl start again");
    }
    load.wait_for(
        restarted_at,
        Duration::from_secs(20),
        "a 200 after the restart",
        |o| o.answer == Ok(200),
    )
    .await;
    let (status, body) = up_status(&client, &app.address).await;
    assert_eq!(status, 200, "/up after the database returned: {body}");
    tick_until(
        &mut stream,
        Duration::from_secs(10),
        "a fresh tick after recovery",
        |t| t["stale"] == false,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = load.finish().await;

    // Every request got Beacon's answer, in bounded time: 200, or 503 with
    // Retry-After and a code saying why.
    let mut by_answer: HashMap<String, usize> = HashMap::new();
    for o in &outcomes {
        let key = match (&o.answer, &o.code) {
            (Ok(status), Some(code)) => format!("{status} {code}"),
            (Ok(status), None) => status.to_string(),
            (Err(e), _) => format!("transport error: {e}"),
        };
        *by_answer.entry(key).or_default() += 1;
    }
    for o in &outcomes {
        match (&o.answer, o.code.as_deref()) {
            (Ok(200), _) => {}
            (Ok(503), Some("database_unavailable" | "commit_timeout" | "overloaded")) => {
                assert!(o.retry_after, "a 503 without Retry-After ({by_answer:?})")
            }
            _ => panic!(
                "only 200s and 503s with Retry-After are expected; got {:?} {:?} (all answers: {by_answer:?})",
                o.answer, o.code
            ),
        }
        assert!(
            o.took < ANSWER_BOUND,
            "an answer took {:?} ({by_answer:?})",
            o.took
        );
    }
    let refused = outcomes.iter().filter(|o| o.answer == Ok(503)).count();
    assert!(refused > 0, "the outage was seen: {by_answer:?}");
    let after_restart = outcomes
        .iter()
        .filter(|o| o.sent_at >= restarted_at && o.answer == Ok(200))
        .count();
    assert!(
        after_restart > 0,
        "requests succeed again after the restart: {by_answer:?}"
    );
    eprintln!(
        "database fault test: {} requests, {by_answer:?}; first 503 {first_503:?} after `pg_ctl stop` began",
        outcomes.len()
    );

    // Exactly the acknowledged events are stored: none missing, none extra,
    // none twice.
    let acknowledged: BTreeSet<String> = outcomes
        .iter()
        .filter(|o| o.answer == Ok(200))
        .flat_map(|o| o.ids.iter().cloned())
        .collect();
    let store = app.store.clone();
    let stored: Vec<String> = tokio::task::spawn_blocking(move || {
        let mut ids = vec![];
        for task in 0..CLIENTS {
            ids.extend(
                store
                    .session_events(&format!("load-{task}"))
                    .unwrap()
                    .into_iter()
                    .map(|e| e.public_id),
            );
        }
        assert_eq!(
            store.count_events().unwrap() as usize,
            ids.len(),
            "no event outside the load's sessions"
        );
        ids
    })
    .await
    .unwrap();
    let stored_set: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored_set.len(), stored.len(), "no event is stored twice");
    let missing: Vec<&String> = acknowledged.difference(&stored_set).collect();
    let extra: Vec<&String> = stored_set.difference(&acknowledged).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "stored but answered with an error: {extra:?}"
    );
    assert_eq!(acknowledged.len(), stored.len());

    // The rollup worker's passes, cut by the outage at any point, counted
    // every stored event exactly once: after the graceful stop's last
    // passes, the rollups equal a rebuild from the events.
    let store = app.store.clone();
    app.stop().await;
    tokio::task::spawn_blocking(move || {
        assert_eq!(
            store.roll_up(1).unwrap().applied,
            0,
            "the stop rolled up every stored event"
        );
        let incremental = store.rollup_fingerprint().unwrap();
        assert!(!incremental.is_empty(), "the worker rolled events up");
        store.rebuild_rollups().unwrap();
        assert_eq!(
            incremental,
            store.rollup_fingerprint().unwrap(),
            "rollups after the outage equal a rebuild"
        );
    })
    .await
    .unwrap();
}

/// What no answer to a client may carry while the database is down: the
/// database's address, its directory, and the words the driver, the pool and
/// the OS use for a failed connection.
fn leaks(body: &str, cluster: &Cluster) -> Vec<String> {
    let port = cluster.port.to_string();
    let dir = cluster.dir.path().display().to_string();
    let lower = body.to_lowercase();
    let mut found: Vec<String> = [port.as_str(), "127.0.0.1", dir.as_str(), "/tmp"]
        .into_iter()
        .filter(|needle| body.contains(needle))
        .map(str::to_owned)
        .collect();
    found.extend(
        [
            "refused",
            "os error",
            "server at",
            "timed out waiting",
            "connection to",
            "could not",
            "fatal",
            "libpq",
            "r2d2",
            "diesel",
            "socket",
        ]
        .into_iter()
        .filter(|needle| lower.contains(needle))
        .map(str::to_owned),
    );
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_database_down_no_endpoint_tells_a_client_how_the_inside_looks() {
    let Some(cluster) = tokio::task::spawn_blocking(Cluster::start).await.unwrap() else {
        return;
    };
    let app = spawn(&cluster.url());
    let client = crate::helpers::client_builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let stored = client
        .post(format!("{}/track", app.address))
        .body(r#"{"type":"visit","sessionId":"outage-1","url":"https://site.example/"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200, "a visit is stored before the outage");

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop("fast").expect("pg_ctl stop");
        cluster
    })
    .await
    .unwrap();

    // Every endpoint that reads or writes the database, and the ones that
    // do not, each asked twice (a second request must not tell more than
    // the first).
    let track = r#"{"type":"visit","sessionId":"outage-2","url":"https://site.example/"}"#;
    let reads = [
        "/up",
        "/sessions",
        "/sessions/outage-1",
        "/events?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z",
        "/events?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&format=csv",
        "/events?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&format=ndjson",
        "/stats/hourly",
        "/stats/daily",
        "/top-pages",
        "/top-referrers",
        "/top-clicks",
        "/metrics",
    ];
    for round in 0..2 {
        let mut answers = vec![];
        let response = client
            .post(format!("{}/track", app.address))
            .body(track)
            .send()
            .await
            .unwrap();
        answers.push(("POST /track".to_owned(), response));
        for path in reads {
            let response = client
                .get(format!("{}{path}", app.address))
                .send()
                .await
                .unwrap();
            answers.push((format!("GET {path}"), response));
        }
        for (what, response) in answers {
            let status = response.status().as_u16();
            let headers = format!("{:?}", response.headers());
            let body = response.text().await.unwrap_or_default();
            let found = leaks(&format!("{headers}\n{body}"), &cluster);
            assert!(
                found.is_empty(),
                "round {round}, {what} ({status}) shows {found:?} to the client: {body}"
            );
            if what == "POST /track" || what.starts_with("GET /up") {
                assert_eq!(status, 503, "{what} while the database is down: {body}");
            }
            if status == 503 && what != "GET /up" {
                let error: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{what}: a 503 answers JSON ({e}): {body}"));
                assert_eq!(
                    error["error"], "database_unavailable",
                    "{what}: the code says what happened: {body}"
                );
                assert!(
                    error["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{what}: a message for humans: {body}"
                );
            }
        }
    }
    // The outage was seen once, however many requests met it.
    let metrics = client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("beacon_database_outages_total 1\n"),
        "one outage counted (and logged once): {metrics}"
    );
    app.stop().await;
    drop(cluster);
}
