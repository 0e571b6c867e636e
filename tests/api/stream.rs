//! GET /stream: the dashboard's contract, and many clients at once.

use std::sync::Arc;
use std::time::Duration;

use beacon_model::VisitorProfile;
use beacon_store::testing::{parse_events, TestDatabase};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    stream_opens_with_contract_headers_and_frames_then_reflects_posted_events,
    many_open_streams_all_receive_ticks_and_are_released_on_disconnect,
    live_figures_survive_a_restart,
    stream_counts_visitors_countries_and_devices_and_never_a_kept_bot,
    tracked_people_show_by_visitor_country_and_device_and_dropped_bots_by_number,
    bots_kept_with_keep_bots_count_in_no_live_figure,
);

async fn open_stream(app: &TestApp) -> reqwest::Response {
    app.client
        .get(format!("{}/stream", app.address))
        .header("Origin", "https://dashboard.example")
        .send()
        .await
        .unwrap()
}

/// Reads ticks until `done` holds for one, or fails after `limit`.
async fn until(reader: &mut SseReader, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(limit, async {
        loop {
            let tick = reader.next_data().await.expect("stream still open");
            if done(&tick) {
                return tick;
            }
        }
    })
    .await
    .expect("the stream reflected the events in time")
}

async fn stream_opens_with_contract_headers_and_frames_then_reflects_posted_events(
    db: &TestDatabase,
) {
    let app = spawn_app(db);
    let response = open_stream(&app).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert_eq!(headers["access-control-allow-origin"], "*");

    let mut reader = SseReader::new(response);
    let first = reader.next_frame().await.unwrap();
    assert!(
        first.starts_with("retry: "),
        "reconnection delay first: {first}"
    );
    let open: Value = serde_json::from_str(
        first
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(open["message"], "stream-open");
    assert!(open["timestamp"].as_str().unwrap().ends_with('Z'));

    // Ticks: an id that increases, the snapshot, then a heartbeat comment.
    let tick = reader.next_frame().await.unwrap();
    let id1: u64 = tick
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .parse()
        .unwrap();
    let snapshot: Value =
        serde_json::from_str(tick.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    for field in [
        "timestamp",
        "active_users",
        "visits_last_min",
        "top_clicks",
        "recent_events",
        "events_last_min",
        "top_pages",
        "top_referrers",
        "top_countries",
        "top_devices",
        "bots_last_min",
        "dropped_last_min",
        "stale",
    ] {
        assert!(snapshot.get(field).is_some(), "{field} in {snapshot}");
    }
    assert_eq!(reader.next_frame().await.unwrap(), ": heartbeat");
    let tick = reader.next_frame().await.unwrap();
    let id2: u64 = tick
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(id2 > id1, "ids increase");

    assert_eq!(
        app.post_track(redate_to(PIXEL, chrono::Duration::seconds(5)))
            .await
            .status(),
        200
    );
    let tick = until(&mut reader, Duration::from_secs(10), |t| {
        t["recent_events"].as_array().unwrap().len() == 4
    })
    .await;
    assert_eq!(tick["active_users"], 1);
    assert_eq!(tick["visits_last_min"], 1);
    assert_eq!(tick["events_last_min"], 4);
    assert_eq!(tick["stale"], false);
    let clicks = tick["top_clicks"].as_array().unwrap();
    assert_eq!(clicks.len(), 2);
    assert!(clicks.iter().all(|c| c["count"] == 1));
    let labels: Vec<&str> = clicks
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["Hero Section - Projects", "Projects"],
        "ties by label"
    );
    let newest = &tick["recent_events"][0];
    assert_eq!(newest["type"], "click");
    assert_eq!(newest["metadata"]["label"], "Hero Section - Projects");
    assert_eq!(newest["session_token"], "1764496800000-k3j9x2");
    assert_eq!(newest["url"], "https://portfolio.example/");
    assert_eq!(newest["referrer"], "https://www.google.com/");
    assert!(newest["id"].as_i64().is_some());
    assert_eq!(tick["top_pages"][0]["url"], "https://portfolio.example/");
    assert_eq!(
        tick["top_referrers"][0]["referrer"],
        "https://www.google.com/"
    );

    // The session ends: it leaves the active count at once.
    assert_eq!(
        app.post_track(redate_to(SESSION_END, chrono::Duration::seconds(1)))
            .await
            .status(),
        200
    );
    let tick = until(&mut reader, Duration::from_secs(10), |t| {
        t["recent_events"].as_array().unwrap().len() == 5
    })
    .await;
    assert_eq!(tick["active_users"], 0);
    app.stop().await;
}

async fn many_open_streams_all_receive_ticks_and_are_released_on_disconnect(db: &TestDatabase) {
    let app = spawn_app(db);
    const CLIENTS: usize = 200;
    let mut readers = Vec::new();
    for _ in 0..CLIENTS {
        // One connection per stream, as browsers do.
        let client = crate::helpers::client_builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let response = client
            .get(format!("{}/stream", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        readers.push((client, SseReader::new(response)));
    }
    assert_eq!(app.gauge("beacon_open_streams").await, CLIENTS as f64);

    // Ingestion is served while the streams are open.
    let started = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(
            app.post_track(redate_to(PIXEL, chrono::Duration::seconds(5)))
                .await
                .status(),
            200
        );
    }
    let _ = started.elapsed();
    for (i, (_, reader)) in readers.iter_mut().enumerate() {
        let tick = until(reader, Duration::from_secs(20), |t| {
            t["events_last_min"] == 80
        })
        .await;
        assert_eq!(tick["active_users"], 1, "client {i}");
    }

    drop(readers);
    let mut released = false;
    for _ in 0..100 {
        if app.gauge("beacon_open_streams").await == 0.0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(released, "disconnected clients are removed");
    app.stop().await;
}

async fn live_figures_survive_a_restart(db: &TestDatabase) {
    let app = spawn_app(db);
    assert_eq!(
        app.post_track(redate_to(PIXEL, chrono::Duration::seconds(5)))
            .await
            .status(),
        200
    );
    app.stop().await;
    let app = spawn_app(db);
    let mut reader = SseReader::new(open_stream(&app).await);
    let open = reader.next_data().await.unwrap();
    assert_eq!(open["message"], "stream-open");
    let first = reader.next_data().await.unwrap();
    assert_eq!(first["active_users"], 1, "warmed up: {first}");
    assert_eq!(first["events_last_min"], 4);
    assert_eq!(first["recent_events"].as_array().unwrap().len(), 4);
    assert_eq!(first["top_clicks"].as_array().unwrap().len(), 2);
    app.stop().await;
}

/// Sessions stored with their profiles (as enrichment gives them) before
/// the server starts: one visitor in two tabs, one on a phone, one stored
/// before visitor ids existed, and a crawler kept with `--keep-bots`. The
/// server's warm-up reads them back; every figure counts people only.
async fn stream_counts_visitors_countries_and_devices_and_never_a_kept_bot(db: &TestDatabase) {
    let now: chrono::DateTime<chrono::Utc> = "2026-11-30T10:00:10Z".parse().unwrap();
    let profile = |visitor: Option<i64>, country: &str, device: &str, bot: bool| {
        Some(Arc::new(VisitorProfile {
            visitor_id: visitor,
            country: Some(country.to_owned()),
            device: Some(device.to_owned()),
            bot,
            ..VisitorProfile::default()
        }))
    };
    let tabs = profile(Some(-11), "FR", "desktop", false);
    let mut events = Vec::new();
    for (session, profile) in [
        ("tab-1", tabs.clone()),
        ("tab-2", tabs),
        ("phone", profile(Some(-22), "DE", "mobile", false)),
        ("old", None),
        ("crawler", profile(None, "US", "other", true)),
    ] {
        let body = json!({"type": "visit", "sessionId": session,
                          "url": "https://site.example/", "timestamp": "2026-11-30T10:00:05Z"});
        for event in parse_events(&body.to_string(), now, Some("Mozilla/5.0")) {
            events.push(match &profile {
                Some(p) => event.with_profile(Arc::clone(p)),
                None => event,
            });
        }
    }
    let store = db.store();
    tokio::task::spawn_blocking(move || store.insert_batch(&events).unwrap())
        .await
        .unwrap();

    let clock = Arc::new(beacon_server::clock::FixedClock::new(now));
    let app = spawn_config_with_clock(test_config(db), clock);
    let mut reader = SseReader::new(open_stream(&app).await);
    assert_eq!(reader.next_data().await.unwrap()["message"], "stream-open");
    let tick = reader.next_data().await.unwrap();
    assert_eq!(tick["active_users"], 4, "sessions of people: {tick}");
    assert_eq!(tick["events_last_min"], 4);
    assert_eq!(
        tick["top_pages"],
        json!([{"url": "https://site.example/", "visitors": 3}]),
        "two tabs are one visitor, the old session one of its own"
    );
    assert_eq!(
        tick["top_countries"],
        json!([{"country": "DE", "visitors": 1}, {"country": "FR", "visitors": 1}])
    );
    assert_eq!(
        tick["top_devices"],
        json!([{"device": "desktop", "visitors": 1}, {"device": "mobile", "visitors": 1}])
    );
    assert!(
        tick["recent_events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["session_token"] != "crawler"),
        "{tick}"
    );
    assert_eq!(tick["bots_last_min"], 0);
    assert_eq!(tick["dropped_last_min"], json!({}));
    assert_eq!(
        app.gauge("beacon_events_dropped_total{reason=\"bot\"}")
            .await,
        0.0
    );
    app.stop().await;
}

const PHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const CURL_UA: &str = "curl/8.5.0";

/// A page view of `session` on `path` five seconds ago, as the pixel sends
/// it: the browser's user agent in the body and the country the page's
/// script guessed, by name.
fn visit(session: &str, path: &str, user_agent: &str, country: &str) -> String {
    let now = chrono::Utc::now() - chrono::Duration::seconds(5);
    json!({"type": "visit", "sessionId": session, "url": format!("https://site.example{path}"),
           "userAgent": user_agent, "data": {"country": country},
           "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)})
    .to_string()
}

/// Through the ingest path, enrichment and all: two tabs of one desktop
/// browser (one visitor: same address and user agent) from France, a phone
/// from Germany, and `curl`, which is answered as anyone but dropped.
async fn tracked_people_show_by_visitor_country_and_device_and_dropped_bots_by_number(
    db: &TestDatabase,
) {
    let app = spawn_app(db);
    let mut reader = SseReader::new(open_stream(&app).await);
    for body in [
        visit("tab-1", "/", BROWSER_UA, "France"),
        visit("tab-2", "/", BROWSER_UA, "France"),
        visit("phone", "/", PHONE_UA, "Germany"),
        visit("crawler", "/", CURL_UA, "United States"),
    ] {
        let response = app.post_track(body).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer["accepted"], 1,
            "a bot is answered as anyone: {answer}"
        );
    }
    let tick = until(&mut reader, Duration::from_secs(10), |t| {
        t["recent_events"].as_array().is_some_and(|r| r.len() == 3) && t["bots_last_min"] == 1
    })
    .await;
    assert_eq!(tick["active_users"], 3, "{tick}");
    assert_eq!(
        tick["top_pages"],
        json!([{"url": "https://site.example/", "visitors": 2}]),
        "two tabs of one browser are one visitor"
    );
    assert_eq!(
        tick["top_countries"],
        json!([{"country": "DE", "visitors": 1}, {"country": "FR", "visitors": 1}])
    );
    assert_eq!(
        tick["top_devices"],
        json!([{"device": "desktop", "visitors": 1}, {"device": "mobile", "visitors": 1}])
    );
    assert_eq!(tick["dropped_last_min"], json!({"bot": 1}));
    assert_eq!(tick["events_last_min"], 3, "the bot's event is no event");
    assert_eq!(
        app.gauge("beacon_events_dropped_total{reason=\"bot\"}")
            .await,
        1.0
    );
    app.stop().await;
}

/// With `--keep-bots` the crawler's event is stored, flagged, and still in
/// no live figure; nothing was dropped.
async fn bots_kept_with_keep_bots_count_in_no_live_figure(db: &TestDatabase) {
    let app = spawn_app_with(db, |c| c.keep_bots = true);
    let mut reader = SseReader::new(open_stream(&app).await);
    for body in [
        visit("crawler", "/", CURL_UA, "United States"),
        visit("person", "/", BROWSER_UA, "France"),
    ] {
        assert_eq!(app.post_track(body).await.status(), 200);
    }
    let tick = until(&mut reader, Duration::from_secs(10), |t| {
        t["recent_events"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;
    assert_eq!(app.count().await, 2, "the bot is stored");
    assert_eq!(tick["active_users"], 1, "{tick}");
    assert_eq!(tick["events_last_min"], 1);
    assert_eq!(tick["recent_events"][0]["session_token"], "person");
    assert_eq!(tick["recent_events"].as_array().unwrap().len(), 1);
    assert_eq!(
        tick["top_countries"],
        json!([{"country": "FR", "visitors": 1}])
    );
    assert_eq!(
        (
            tick["bots_last_min"].clone(),
            tick["dropped_last_min"].clone()
        ),
        (json!(0), json!({}))
    );
    app.stop().await;
}
