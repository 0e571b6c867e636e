//! The anomaly worker watches the busiest pages and referrers beside the
//! site's total, and every instance shows the detector's mode.

use std::time::Duration;

use beacon_store::testing::TestDatabase;
use beacon_store::Store;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_config_with_clock, test_config, SseReader, TestApp};

crate::on_both_backends!(
    a_page_surging_from_one_referrer_is_found_while_the_site_total_hardly_moves,
    a_detector_without_history_says_it_is_learning,
    a_stopping_server_sends_the_alerts_still_queued,
);

/// Stores page views `(time, path, referrer)`, in batches received at the
/// time of their last view (the server believes client times of the last
/// days only).
async fn store_views(store: &Store, views: Vec<(DateTime<Utc>, &'static str, &'static str)>) {
    let batches: Vec<Vec<beacon_model::NewEvent>> = views
        .chunks(500)
        .enumerate()
        .map(|(b, chunk)| {
            let body: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, (at, path, referrer))| {
                    format!(
                        r#"{{"type":"visit","sessionId":"s{b}-{}","url":"https://site{path}","referrer":"{referrer}","timestamp":"{}"}}"#,
                        i % 25,
                        at.to_rfc3339()
                    )
                })
                .collect();
            let received = chunk.last().map(|v| v.0).unwrap_or_default();
            beacon_store::testing::parse_events(
                &format!(r#"{{"batch":[{}]}}"#, body.join(",")),
                received,
                None,
            )
        })
        .collect();
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        for batch in &batches {
            store.insert_batch(batch).unwrap();
        }
    })
    .await
    .unwrap();
}

/// Fifteen days of 20 page views a quarter of `/` from a search engine
/// and one every half hour of `/a` from `https://news/`, then two hours in
/// which `/a` gets two page views every five minutes from `https://news/`:
/// the site's total rises by a quarter, the page's twelvefold.
fn surge_views(surge_from: DateTime<Utc>) -> Vec<(DateTime<Utc>, &'static str, &'static str)> {
    let start = surge_from - TimeDelta::days(15);
    let home = (0..(15 * 96 + 8) * 20).map(|i| {
        (
            start + TimeDelta::seconds(45 * i),
            "/",
            "https://search.example/",
        )
    });
    let page = (0..15 * 48).map(|i| {
        (
            start + TimeDelta::minutes(30 * i + 7),
            "/a",
            "https://news/",
        )
    });
    let surge = (0..48).map(|i| {
        (
            surge_from + TimeDelta::seconds(150 * i + 20),
            "/a",
            "https://news/",
        )
    });
    let mut views: Vec<_> = home.chain(page).chain(surge).collect();
    views.sort_by_key(|v| v.0);
    views
}

/// A local alert webhook that accepts every POST; returns its URL and the
/// JSON bodies it receives.
fn webhook() -> (String, std::sync::mpsc::Receiver<Value>) {
    let (url, gate, bodies) = gated_webhook();
    std::thread::spawn(move || while gate.send(()).is_ok() {});
    (url, bodies)
}

/// A local alert webhook that hands over each JSON body as soon as it has
/// read it, and answers it (204) only once the returned gate lets one
/// answer through.
fn gated_webhook() -> (
    String,
    std::sync::mpsc::SyncSender<()>,
    std::sync::mpsc::Receiver<Value>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let (gate, answer) = std::sync::mpsc::sync_channel::<()>(0);
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
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() || answer.recv().is_err() {
                return;
            }
            // The sender may have given up waiting meanwhile.
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    (url, gate, rx)
}

/// `GET /anomalies` over the test's days, once `done` holds for it.
async fn anomalies_once(app: &TestApp, done: impl Fn(&Value) -> bool) -> Value {
    let mut body = Value::Null;
    for _ in 0..400 {
        body = app
            .get("/anomalies?from=2026-11-01&to=2026-12-31")
            .await
            .json()
            .await
            .unwrap();
        if done(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/anomalies never showed what was expected: {body}");
}

fn series_of(body: &Value) -> Vec<String> {
    let mut series: Vec<String> = body["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{} {}", a["series"].as_str().unwrap(), a["kind"]))
        .collect();
    series.sort();
    series
}

async fn a_page_surging_from_one_referrer_is_found_while_the_site_total_hardly_moves(
    db: &TestDatabase,
) {
    let surge_from = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    store_views(&db.store(), surge_views(surge_from)).await;
    let clock = std::sync::Arc::new(beacon_server::clock::FixedClock::new(
        surge_from + TimeDelta::hours(2) + TimeDelta::seconds(1),
    ));
    let (url, alerts) = webhook();
    let mut config = test_config(db);
    config.alert_webhook = Some(url);
    let app = spawn_config_with_clock(config, clock);

    let body = anomalies_once(&app, |b| series_of(b).len() >= 2).await;
    assert_eq!(
        series_of(&body),
        [
            "page:https://site/a \"spike\"",
            "referrer:https://news/ \"spike\""
        ],
        "the page and its referrer, not the site: {body}"
    );
    let page = &body["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["series"] == "page:https://site/a")
        .unwrap();
    assert_eq!(page["end"], Value::Null);
    let onset = DateTime::parse_from_rfc3339(page["onset"].as_str().unwrap()).unwrap();
    assert!(onset >= surge_from, "the onset is in the surge: {page}");
    assert!(
        page["observed"].as_f64().unwrap() > 4.0 * page["expected"].as_f64().unwrap(),
        "{page}"
    );
    assert_eq!(body["detector"]["mode"], "ready", "{body}");
    assert!(body["detector"]["history_days"].as_f64().unwrap() >= 14.0);
    assert_eq!(
        body["detector"]["series"], 5,
        "the site, two pages and two referrers"
    );

    let mut texts = Vec::new();
    while texts.len() < 2 {
        let alert = alerts
            .recv_timeout(Duration::from_secs(20))
            .expect("an alert for each anomaly");
        assert_eq!(alert["event"], "opened");
        texts.push(alert["text"].as_str().unwrap().to_owned());
    }
    texts.sort();
    assert!(
        texts[0]
            .starts_with("Beacon: traffic spike in page views from referrer https://news/ since"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with("Beacon: traffic spike on page https://site/a since"),
        "{texts:?}"
    );

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
            if data["anomalies"].as_array().is_some_and(|a| a.len() == 2) {
                return data;
            }
        }
    })
    .await
    .expect("a frame with both open anomalies");
    assert_eq!(frame["anomalies"][0]["series"], "page:https://site/a");
    assert_eq!(
        app.gauge("beacon_anomaly_detector_mode{mode=\"ready\"}")
            .await,
        1.0
    );
    assert!(app.gauge("beacon_anomaly_detector_history_days").await >= 14.0);
    assert_eq!(
        app.gauge("beacon_open_anomalies{kind=\"spike\"}").await,
        2.0
    );
    app.stop().await;
}

async fn a_detector_without_history_says_it_is_learning(db: &TestDatabase) {
    let app = spawn_app(db);
    let body = anomalies_once(&app, |b| !b["detector"].is_null()).await;
    assert_eq!(body["detector"]["mode"], "learning", "{body}");
    assert!(
        body["detector"]["history_days"].as_f64().unwrap() < 1.0,
        "{body}"
    );
    assert_eq!(body["detector"]["series"], 1, "the site alone: {body}");
    assert!(body["detector"]["updated"].is_string());
    // /metrics shows what the worker refreshed at its interval.
    for _ in 0..200 {
        if app
            .gauge("beacon_anomaly_detector_mode{mode=\"learning\"}")
            .await
            == 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.gauge("beacon_anomaly_detector_mode{mode=\"learning\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.gauge("beacon_anomaly_detector_mode{mode=\"ready\"}")
            .await,
        0.0
    );
    app.stop().await;
}

/// Two alerts queued at once (the page's and the referrer's); the webhook
/// holds its answer to the first until the server is stopping: the second
/// is sent before the stop completes, not dropped with the process.
async fn a_stopping_server_sends_the_alerts_still_queued(db: &TestDatabase) {
    let surge_from = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    store_views(&db.store(), surge_views(surge_from)).await;
    let clock = std::sync::Arc::new(beacon_server::clock::FixedClock::new(
        surge_from + TimeDelta::hours(2) + TimeDelta::seconds(1),
    ));
    let (url, gate, alerts) = gated_webhook();
    let mut config = test_config(db);
    config.alert_webhook = Some(url);
    let app = spawn_config_with_clock(config, clock);
    let address = app.address.clone();
    let (first, alerts) = tokio::task::spawn_blocking(move || {
        let first = alerts.recv_timeout(Duration::from_secs(30));
        (first, alerts)
    })
    .await
    .unwrap();
    assert_eq!(first.expect("the first alert arrives")["event"], "opened");

    let stopping = tokio::spawn(app.stop());
    // The server stops accepting first; the alerts are finished last.
    let client = reqwest::Client::new();
    while client.get(format!("{address}/up")).send().await.is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let released = tokio::task::spawn_blocking(move || {
        // The first answer, then the second's once it is asked for.
        gate.send(()).unwrap();
        gate.send(()).unwrap();
    });
    stopping.await.unwrap();
    released.await.unwrap();
    let second = alerts
        .try_recv()
        .expect("the queued alert was sent before the stop completed");
    assert_eq!(second["event"], "opened");
    assert_ne!(second["anomaly"]["series"], Value::Null);
}
