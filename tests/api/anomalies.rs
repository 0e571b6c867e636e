//! `GET /anomalies`, the open anomalies on `/stream` and `/metrics`, and the
//! lease that lets one instance detect.

use std::time::Duration;

use beacon_store::testing::TestDatabase;
use beacon_store::{AnomalyRow, PoolOptions, Store};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::helpers::{
    error_code, spawn_app, spawn_app_with_token, spawn_config_with_clock, test_config, SseReader,
    TestApp,
};

crate::on_both_backends!(
    anomalies_lists_stored_anomalies_overlapping_the_range,
    anomalies_refuses_a_bad_range,
    anomalies_requires_the_read_token_when_one_is_set,
    open_anomalies_show_on_the_stream_and_in_metrics,
    two_stores_racing_for_the_lease_give_it_to_one_holder,
    a_running_instance_holds_the_detector_lease,
    the_leader_warms_from_history_and_stores_a_site_gone_dark,
    a_new_leader_closes_the_open_anomalies_it_does_not_see,
);

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
}

fn row(series: &str, kind: &str, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> AnomalyRow {
    AnomalyRow {
        series: series.to_owned(),
        kind: kind.to_owned(),
        onset_us: (start - chrono::Duration::minutes(10)).timestamp_micros(),
        start_us: start.timestamp_micros(),
        end_us: end.map(|e| e.timestamp_micros()),
        observed: 300.0,
        expected: 80.5,
        severity: 12.5,
    }
}

async fn store_rows(store: &Store, rows: Vec<AnomalyRow>) {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        for r in &rows {
            store.upsert_anomaly(r, t(12, 0)).unwrap();
        }
    })
    .await
    .unwrap();
}

/// Gives the detector lease to another instance for an hour: an app
/// started now only shows what is stored, and leaves open rows open.
fn another_instance_detects(store: &Store) {
    assert!(store
        .try_lease(
            beacon_server::anomaly_worker::LEASE,
            "another-instance",
            Utc::now(),
            Duration::from_secs(3600),
        )
        .unwrap());
}

async fn anomalies_lists_stored_anomalies_overlapping_the_range(db: &TestDatabase) {
    another_instance_detects(&db.store());
    let app = spawn_app(db);
    store_rows(
        &app.store,
        vec![
            row("site", "drop", t(1, 0), Some(t(2, 0))),
            row("page:https://site/post", "spike", t(5, 0), Some(t(6, 0))),
            row("site", "dark", t(8, 0), None),
        ],
    )
    .await;
    let response = app
        .get("/anomalies?from=2026-12-01T04:00:00Z&to=2026-12-01T23:00:00Z")
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["from"], "2026-12-01T04:00:00Z");
    assert_eq!(body["to"], "2026-12-01T23:00:00Z");
    assert_eq!(
        body["anomalies"],
        json!([
            {
                "series": "page:https://site/post",
                "kind": "spike",
                "onset": "2026-12-01T04:50:00Z",
                "start": "2026-12-01T05:00:00Z",
                "end": "2026-12-01T06:00:00Z",
                "observed": 300.0,
                "expected": 80.5,
                "severity": 12.5
            },
            {
                "series": "site",
                "kind": "dark",
                "onset": "2026-12-01T07:50:00Z",
                "start": "2026-12-01T08:00:00Z",
                "end": null,
                "observed": 300.0,
                "expected": 80.5,
                "severity": 12.5
            }
        ])
    );
    let body: Value = app
        .get("/anomalies?from=2026-12-01&to=2026-12-01T03:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = body["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["drop"], "a date is the start of that day");
    app.stop().await;
}

async fn anomalies_refuses_a_bad_range(db: &TestDatabase) {
    let app = spawn_app(db);
    let code = error_code(app.get("/anomalies?from=yesterday").await, 400).await;
    assert_eq!(code, "invalid_parameter");
    let code = error_code(
        app.get("/anomalies?from=2026-12-02&to=2026-12-01").await,
        400,
    )
    .await;
    assert_eq!(code, "invalid_parameter");
    app.stop().await;
}

async fn anomalies_requires_the_read_token_when_one_is_set(db: &TestDatabase) {
    let app = spawn_app_with_token(db, "a-read-token-long-enough-0123456789");
    assert_eq!(app.get("/anomalies").await.status(), 401);
    let authorized = app
        .client
        .get(format!("{}/anomalies", app.address))
        .bearer_auth("a-read-token-long-enough-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 200);
    app.stop().await;
}

/// The open anomalies of a gauge line of `/metrics`, once the worker has
/// refreshed them (it does at start and at every interval).
async fn open_gauge(app: &TestApp, kind: &str, want: f64) {
    let name = format!("beacon_open_anomalies{{kind=\"{kind}\"}}");
    for _ in 0..200 {
        if app.gauge(&name).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never reached {want}");
}

async fn open_anomalies_show_on_the_stream_and_in_metrics(db: &TestDatabase) {
    let store = db.store();
    another_instance_detects(&store);
    store_rows(
        &store,
        vec![
            row("site", "spike", t(9, 0), None),
            row("referrer:https://news/", "spike", t(9, 30), None),
            row("site", "drop", t(3, 0), Some(t(4, 0))),
        ],
    )
    .await;
    let app = spawn_app(db);
    open_gauge(&app, "spike", 2.0).await;
    open_gauge(&app, "drop", 0.0).await;
    open_gauge(&app, "dark", 0.0).await;
    let response = app
        .client
        .get(format!("{}/stream", app.address))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(response);
    let frame = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let data = reader.next_data().await.expect("stream still open");
            // The first frame may have been built before the worker's
            // first refresh.
            if data["anomalies"].as_array().is_some_and(|a| !a.is_empty()) {
                return data;
            }
        }
    })
    .await
    .expect("a frame with the open anomalies arrives");
    let anomalies = frame["anomalies"].as_array().unwrap();
    let series: Vec<&str> = anomalies
        .iter()
        .map(|a| a["series"].as_str().unwrap())
        .collect();
    assert_eq!(series, ["site", "referrer:https://news/"]);
    assert_eq!(anomalies[0]["start"], "2026-12-01T09:00:00Z");
    assert_eq!(anomalies[0]["end"], Value::Null);
    assert!(
        frame.get("active_users").is_some(),
        "the existing fields stay: {frame}"
    );
    app.stop().await;
}

async fn two_stores_racing_for_the_lease_give_it_to_one_holder(db: &TestDatabase) {
    db.store();
    let now = t(10, 0);
    let racers: Vec<_> = (0..2)
        .map(|i| {
            let store = Store::connect(&db.url, &PoolOptions::default()).unwrap();
            std::thread::spawn(move || {
                (0..20)
                    .filter(|_| {
                        store
                            .try_lease("race", &format!("holder-{i}"), now, Duration::from_secs(60))
                            .unwrap()
                    })
                    .count()
            })
        })
        .collect();
    let wins: Vec<usize> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(
        wins.contains(&20) && wins.contains(&0),
        "one holder every time, never the other: {wins:?}"
    );
}

async fn a_running_instance_holds_the_detector_lease(db: &TestDatabase) {
    let app = spawn_app(db);
    let store = app.store.clone();
    let taken = tokio::task::spawn_blocking(move || {
        // The worker takes the lease at its first interval, right after the
        // start; once it has, nobody else can. The probe asks as of an hour
        // ago for no time at all, so that a lease it takes before the worker
        // has expired already when the worker asks.
        for _ in 0..200 {
            if !store
                .try_lease(
                    beacon_server::anomaly_worker::LEASE,
                    "someone-else",
                    Utc::now() - chrono::Duration::hours(1),
                    Duration::ZERO,
                )
                .unwrap()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    })
    .await
    .unwrap();
    assert!(taken, "the running instance holds the lease");
    app.stop().await;
}

/// Two days of steady page views (three per five minutes), then two hours
/// without any: the worker, started at their end, warms from the rollups of
/// the two days, reads the silent hours from the events, and
/// stores a dark period of the site, which `/anomalies` and `/metrics` show.
async fn the_leader_warms_from_history_and_stores_a_site_gone_dark(db: &TestDatabase) {
    let silent_from = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let store = db.store();
    let views: Vec<String> = (1..=2 * 288 * 3)
        .map(|i| {
            let at = silent_from - chrono::Duration::seconds(100 * i);
            format!(
                r#"{{"type":"visit","sessionId":"s{}","url":"https://site/","timestamp":"{}"}}"#,
                i % 50,
                at.to_rfc3339()
            )
        })
        .collect();
    let batches: Vec<Vec<beacon_model::NewEvent>> = views
        .chunks(100)
        .map(|chunk| {
            beacon_store::testing::parse_events(
                &format!(r#"{{"batch":[{}]}}"#, chunk.join(",")),
                silent_from,
                None,
            )
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        for batch in &batches {
            store.insert_batch(batch).unwrap();
        }
    })
    .await
    .unwrap();
    let clock = std::sync::Arc::new(beacon_server::clock::FixedClock::new(
        silent_from + chrono::Duration::hours(2) + chrono::Duration::seconds(1),
    ));
    let (webhook, mut alerts) = webhook_receiver();
    let mut config = test_config(db);
    config.alert_webhook = Some(webhook);
    let app = spawn_config_with_clock(config, clock.clone());
    open_gauge(&app, "dark", 1.0).await;
    let alert = next_alert(&mut alerts).await;
    assert_eq!(alert["event"], "opened");
    assert_eq!(alert["anomaly"]["kind"], "dark");
    assert_eq!(alert["anomaly"]["series"], "site");
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .contains("no traffic at all"),
        "{alert}"
    );
    let body: Value = app
        .get("/anomalies?from=2026-11-30&to=2026-12-02")
        .await
        .json()
        .await
        .unwrap();
    let anomalies = body["anomalies"].as_array().unwrap();
    assert_eq!(anomalies.len(), 1, "{body}");
    assert_eq!(anomalies[0]["series"], "site");
    assert_eq!(anomalies[0]["kind"], "dark");
    assert_eq!(anomalies[0]["end"], Value::Null);
    assert_eq!(anomalies[0]["observed"], 0.0);
    let onset = DateTime::parse_from_rfc3339(anomalies[0]["onset"].as_str().unwrap()).unwrap();
    assert!(
        onset >= silent_from && onset < silent_from + chrono::Duration::hours(2),
        "the onset is in the silent hours: {body}"
    );

    // A page view in the next interval ends the dark period once that
    // interval is over.
    let back = silent_from + chrono::Duration::hours(2) + chrono::Duration::seconds(30);
    let view = format!(
        r#"{{"type":"visit","sessionId":"back","url":"https://site/","timestamp":"{}"}}"#,
        back.to_rfc3339()
    );
    assert!(app.post_track(view).await.status().is_success());
    // The worker reads an interval half a minute after its end.
    clock.advance(chrono::Duration::minutes(6));
    open_gauge(&app, "dark", 0.0).await;
    let body: Value = app
        .get("/anomalies?from=2026-11-30&to=2026-12-02")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["anomalies"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(
        body["anomalies"][0]["end"], "2026-12-01T02:00:00Z",
        "it ended with the interval of the first page view"
    );
    let alert = next_alert(&mut alerts).await;
    assert_eq!(alert["event"], "closed");
    assert_eq!(alert["anomaly"]["end"], "2026-12-01T02:00:00Z");
    app.stop().await;
}

async fn a_new_leader_closes_the_open_anomalies_it_does_not_see(db: &TestDatabase) {
    store_rows(&db.store(), vec![row("site", "spike", t(9, 0), None)]).await;
    let clock = std::sync::Arc::new(beacon_server::clock::FixedClock::new(
        t(10, 7) + chrono::Duration::seconds(1),
    ));
    let app = spawn_config_with_clock(test_config(db), clock);
    // The gauge reads 0 before the worker's first refresh too: wait for the
    // row to change instead.
    let mut body = Value::Null;
    for _ in 0..200 {
        body = app
            .get("/anomalies?from=2026-12-01&to=2026-12-02")
            .await
            .json()
            .await
            .unwrap();
        if !body["anomalies"][0]["end"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body["anomalies"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(
        body["anomalies"][0]["end"], "2026-12-01T10:05:00Z",
        "closed at the end of the last complete interval"
    );
    app.stop().await;
}

/// A local alert webhook that accepts every POST; returns its URL and the
/// JSON bodies it receives.
fn webhook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end().to_ascii_lowercase();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .unwrap();
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

async fn next_alert(alerts: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(20), alerts.recv())
        .await
        .expect("an alert arrives")
        .expect("the receiver runs")
}
