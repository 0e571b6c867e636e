//! POST /track: the pixel's contract, errors, idempotency, durability.

use beacon_store::testing::TestDatabase;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    every_contract_fixture_comes_back_from_the_database_intact,
    send_beacon_text_plain_body_is_accepted_with_the_header_user_agent,
    events_survive_a_restart,
    a_batch_with_one_bad_event_stores_the_others,
    the_same_event_id_sent_twice_is_stored_once,
    bad_bodies_get_400_with_a_json_error_and_store_nothing,
    bodies_and_batches_over_the_limits_get_413,
    compressed_bodies_get_415,
    other_methods_and_paths_get_json_errors,
    a_full_queue_answers_503_with_retry_after,
    concurrent_requests_share_a_commit_unless_batch_max_is_1,
    several_writers_store_every_event_once,
    preflight_allows_any_origin_by_default,
    preflight_allows_only_the_configured_origins,
);

/// Checks stored rows against the fixture's own JSON, field by field.
fn assert_matches_fixture(
    stored: &[beacon_store::StoredEvent],
    fixture: &str,
    header_ua: Option<&str>,
) {
    let doc: Value = serde_json::from_str(fixture).unwrap();
    let events: Vec<Value> = match doc.get("batch") {
        Some(batch) => batch.as_array().unwrap().clone(),
        None => vec![doc.clone()],
    };
    assert_eq!(stored.len(), events.len(), "event count");
    for (row, event) in stored.iter().zip(&events) {
        let field = |a: &str, b: &str| {
            event
                .get(a)
                .or_else(|| event.get(b))
                .and_then(Value::as_str)
        };
        assert_eq!(row.kind, field("type", "event_type").unwrap(), "type");
        assert_eq!(
            row.session_token,
            field("sessionId", "session_token").unwrap(),
            "session"
        );
        assert_eq!(row.url.as_deref(), field("url", "url"), "url");
        assert_eq!(
            row.referrer.as_deref(),
            field("referrer", "referrer"),
            "referrer"
        );
        assert_eq!(
            row.user_agent.as_deref(),
            field("userAgent", "user_agent").or(header_ua),
            "user agent"
        );
        let metadata: Value = serde_json::from_str(&row.metadata).unwrap();
        let mut data = event.get("data").unwrap().clone();
        // The pixel's address is never stored.
        data.as_object_mut().unwrap().remove("ip");
        assert_eq!(metadata, data, "data");
        let ts =
            chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(row.occurred_at(), ts, "event time");
        assert!(
            row.received_at() >= row.occurred_at(),
            "receive time is stored"
        );
        if row.kind == "click" {
            assert_eq!(
                row.label.as_deref(),
                event["data"]["label"].as_str(),
                "label"
            );
        }
        assert!(!row.public_id.is_empty(), "an id is assigned");
    }
}

const FIXTURES: &[(&str, &str, &str)] = &[
    ("batch-pixel", PIXEL, "1764496800000-k3j9x2"),
    ("batch-heartbeat", HEARTBEAT, "1764496800000-k3j9x2"),
    ("single-event", SINGLE, "1764500100000-p0q8zz"),
    ("snake-case", SNAKE, "api-client-7"),
];

/// The fixtures carry 2026-11-30 timestamps; the server keeps a client
/// time only within [received - 7 days, received + 10 minutes], so on other
/// days the fixtures are re-dated to "now" keeping their offsets.
fn redate(fixture: &str) -> String {
    static SHIFT: std::sync::OnceLock<chrono::Duration> = std::sync::OnceLock::new();
    let shift = *SHIFT.get_or_init(|| {
        let base = chrono::DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z").unwrap();
        chrono::Utc::now().signed_duration_since(base) - chrono::Duration::hours(2)
    });
    let mut doc: Value = serde_json::from_str(fixture).unwrap();
    let mut fix = |e: &mut Value| {
        let ts = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap();
        let shifted = (ts + shift).with_timezone(&chrono::Utc);
        e["timestamp"] = json!(shifted.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    };
    match doc.get_mut("batch") {
        Some(batch) => batch.as_array_mut().unwrap().iter_mut().for_each(&mut fix),
        None => fix(&mut doc),
    }
    doc.to_string()
}

async fn every_contract_fixture_comes_back_from_the_database_intact(db: &TestDatabase) {
    // The snake-case fixture is an API client's (`curl/8.5.0`): a bot,
    // stored only with --keep-bots, flagged.
    let app = spawn_app_with(db, |c| c.keep_bots = true);
    for (name, fixture, token) in FIXTURES {
        let body = redate(fixture);
        let response = app.post_track(body.clone()).await;
        assert_eq!(response.status(), 200, "{name}");
        let answer: Value = response.json().await.unwrap();
        let count = serde_json::from_str::<Value>(&body)
            .unwrap()
            .get("batch")
            .map_or(1, |b| b.as_array().unwrap().len());
        assert_eq!(
            answer,
            json!({"ok": true, "accepted": count, "rejected": []}),
            "{name}"
        );
        assert!(!app.stored(token).await.is_empty(), "{name}");
    }
    // Compare per fixture: pixel and heartbeat share a session, so read it
    // once and split by position.
    let pixel_session = app.stored("1764496800000-k3j9x2").await;
    assert_eq!(pixel_session.len(), 5);
    assert_matches_fixture(&pixel_session[..4], &redate(PIXEL), None);
    assert_matches_fixture(&pixel_session[4..], &redate(HEARTBEAT), None);
    assert_matches_fixture(
        &app.stored("1764500100000-p0q8zz").await,
        &redate(SINGLE),
        None,
    );
    assert_matches_fixture(&app.stored("api-client-7").await, &redate(SNAKE), None);
    let session = |token: &'static str| {
        let store = app.store.clone();
        async move {
            tokio::task::spawn_blocking(move || store.session(token).unwrap().unwrap())
                .await
                .unwrap()
        }
    };
    let pixel = session("1764496800000-k3j9x2").await;
    assert_eq!(
        (
            pixel.browser.as_deref(),
            pixel.os.as_deref(),
            pixel.device.as_deref()
        ),
        (Some("Chrome"), Some("Mac OS X"), Some("desktop")),
        "the pixel's user agent, parsed"
    );
    assert_eq!(
        pixel.country.as_deref(),
        Some("DE"),
        "the pixel's \"Germany\" as a code"
    );
    assert!(!pixel.bot);
    assert!(
        pixel.visitor_id.is_some_and(|id| id < 0),
        "{:?}",
        pixel.visitor_id
    );
    let snake = session("api-client-7").await;
    assert!(snake.bot, "curl is a bot, kept and flagged");
    app.stop().await;
}

async fn send_beacon_text_plain_body_is_accepted_with_the_header_user_agent(db: &TestDatabase) {
    let app = spawn_app(db);
    let body = redate(SESSION_END);
    let response = app
        .client
        .post(format!("{}/track", app.address))
        .header("Content-Type", "text/plain;charset=UTF-8")
        .header("User-Agent", "Mozilla/5.0 (sendBeacon test)")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stored = app.stored("1764496800000-k3j9x2").await;
    assert_matches_fixture(&stored, &body, Some("Mozilla/5.0 (sendBeacon test)"));
    assert_eq!(stored[0].referrer, None);
    app.stop().await;
}

async fn events_survive_a_restart(db: &TestDatabase) {
    let app = spawn_app(db);
    assert_eq!(app.post_track(redate(PIXEL)).await.status(), 200);
    app.stop().await;
    let app = spawn_app(db);
    assert_matches_fixture(
        &app.stored("1764496800000-k3j9x2").await,
        &redate(PIXEL),
        None,
    );
    app.stop().await;
}

async fn a_batch_with_one_bad_event_stores_the_others(db: &TestDatabase) {
    let app = spawn_app(db);
    let body = json!({"batch": [
        {"type": "visit", "sessionId": "mixed", "url": "https://site/"},
        {"type": "click", "sessionId": 42},
        {"type": "click", "sessionId": "mixed", "data": {"label": "Ok"}},
        "not an event",
    ]});
    let response = app.post_track(body.to_string()).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["accepted"], 2);
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["error"], "invalid_event");
    assert_eq!(rejected[1]["index"], 3);
    assert!(rejected[1]["message"].as_str().is_some());
    let stored = app.stored("mixed").await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].label.as_deref(), Some("Ok"));
    assert_eq!(app.count().await, 2);
    app.stop().await;
}

async fn the_same_event_id_sent_twice_is_stored_once(db: &TestDatabase) {
    let app = spawn_app(db);
    let body = json!({"batch": [
        {"id": "0192f3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b", "type": "visit", "sessionId": "retry"},
        {"id": "evt-2", "type": "click", "sessionId": "retry", "data": {"label": "A"}},
    ]})
    .to_string();
    for attempt in 0..2 {
        let response = app.post_track(body.clone()).await;
        assert_eq!(response.status(), 200, "attempt {attempt}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer["accepted"], 2,
            "a retry is acknowledged like the first send"
        );
    }
    let stored = app.stored("retry").await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].public_id, "0192f3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b");
    assert_eq!(app.count().await, 2);
    app.stop().await;
}

async fn bad_bodies_get_400_with_a_json_error_and_store_nothing(db: &TestDatabase) {
    let app = spawn_app(db);
    let cases: &[(&str, &str)] = &[
        ("", "invalid_json"),
        ("{\"batch\": [", "invalid_json"),
        ("not json at all", "invalid_json"),
        (
            "[{\"type\":\"visit\",\"sessionId\":\"s\"}]",
            "not_an_object",
        ),
        ("\"a string\"", "not_an_object"),
        ("{\"batch\": []}", "empty_batch"),
        ("{\"batch\": {}}", "invalid_batch"),
        ("{\"batch\": [{\"type\": \"visit\"}]}", "no_valid_events"),
        ("{\"type\": \"visit\"}", "no_valid_events"),
    ];
    for (body, code) in cases {
        let response = app.post_track(*body).await;
        assert_eq!(&error_code(response, 400).await, code, "body {body:?}");
    }
    // no_valid_events lists why each event was refused.
    let response = app.post_track("{\"batch\": [{\"type\": \"visit\"}]}").await;
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["rejected"][0]["error"], "missing_session_id");
    assert_eq!(app.count().await, 0);
    app.stop().await;
}

async fn bodies_and_batches_over_the_limits_get_413(db: &TestDatabase) {
    let app = spawn_app(db);
    let event = r#"{"type":"heartbeat","sessionId":"limits"}"#;
    let batch = |n: usize| format!("{{\"batch\":[{}]}}", vec![event; n].join(","));
    assert_eq!(
        app.post_track(batch(500)).await.status(),
        200,
        "500 events is the limit"
    );
    assert_eq!(
        error_code(app.post_track(batch(501)).await, 413).await,
        "too_many_events"
    );

    // Exactly 512 KiB is accepted; one byte more is refused.
    let padded = |size: usize| {
        let head = r#"{"type":"visit","sessionId":"limits","pad":""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "p".repeat(size - head.len() - tail.len()))
    };
    assert_eq!(app.post_track(padded(512 * 1024)).await.status(), 200);
    assert_eq!(
        error_code(app.post_track(padded(512 * 1024 + 1)).await, 413).await,
        "body_too_large"
    );
    let far_over = "x".repeat(8 * 1024 * 1024);
    assert_eq!(
        error_code(app.post_track(far_over).await, 413).await,
        "body_too_large"
    );
    assert_eq!(
        app.count().await,
        501,
        "the 500-event batch and the 512 KiB body"
    );
    app.stop().await;
}

async fn compressed_bodies_get_415(db: &TestDatabase) {
    let app = spawn_app(db);
    let response = app
        .client
        .post(format!("{}/track", app.address))
        .header("Content-Encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response, 415).await, "unsupported_encoding");
    app.stop().await;
}

async fn other_methods_and_paths_get_json_errors(db: &TestDatabase) {
    let app = spawn_app(db);
    let response = app.get("/track").await;
    assert_eq!(response.headers()["allow"], "POST, OPTIONS");
    assert_eq!(error_code(response, 405).await, "method_not_allowed");
    assert_eq!(error_code(app.get("/nope").await, 404).await, "not_found");
    app.stop().await;
}

async fn a_full_queue_answers_503_with_retry_after(db: &TestDatabase) {
    let app = spawn_app_with(db, |c| c.queue_max = 1);
    let response = app.post_track(PIXEL).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(error_code(response, 503).await, "overloaded");
    assert_eq!(app.count().await, 0);
    // One event fits, so the server is not stuck.
    assert_eq!(app.post_track(SINGLE).await.status(), 200);
    app.stop().await;
}

/// Sends `n` one-event requests at once, each in a session of its own, and
/// returns how many ingest transactions committed them.
async fn transactions_for_concurrent_requests(app: &TestApp, n: usize) -> f64 {
    let before = app.gauge("beacon_ingest_transactions_total").await;
    let requests = (0..n).map(|i| {
        app.post_track(json!({"type": "visit", "sessionId": format!("burst-{i}")}).to_string())
    });
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.status(), 200);
    }
    app.gauge("beacon_ingest_transactions_total").await - before
}

async fn concurrent_requests_share_a_commit_unless_batch_max_is_1(db: &TestDatabase) {
    const REQUESTS: usize = 64;
    let app = spawn_app_with(db, |c| c.writers = 1);
    // Requests sent one after another are committed one by one: each waits
    // for its commit.
    for _ in 0..3 {
        assert_eq!(app.post_track(SINGLE).await.status(), 200);
    }
    assert_eq!(app.gauge("beacon_ingest_transactions_total").await, 3.0);
    // Sent at once, they pile up while the writer commits and share
    // commits.
    let grouped = transactions_for_concurrent_requests(&app, REQUESTS).await;
    assert!(
        grouped < REQUESTS as f64,
        "{REQUESTS} concurrent requests took {grouped} transactions"
    );
    app.stop().await;

    let app = spawn_app_with(db, |c| {
        c.writers = 1;
        c.batch_max = 1;
    });
    let alone = transactions_for_concurrent_requests(&app, REQUESTS).await;
    assert_eq!(
        alone, REQUESTS as f64,
        "--batch-max 1: a commit per request"
    );
    assert_eq!(app.count().await, 3 + 2 * REQUESTS as i64);
    app.stop().await;
}

/// The default is one writer; several commit side by side, upserting the
/// same new sessions at once (SQLite ignores the setting: one writer).
async fn several_writers_store_every_event_once(db: &TestDatabase) {
    const REQUESTS: usize = 96;
    const SESSIONS: usize = 8;
    let app = spawn_app_with(db, |c| {
        c.writers = 4;
        c.pool_size = 6;
    });
    let requests = (0..REQUESTS).map(|i| {
        let session = format!("shared-{}", i % SESSIONS);
        let batch = json!({"batch": [
            {"type": "visit", "sessionId": session, "url": format!("https://example.com/{i}")},
            {"type": "heartbeat", "sessionId": session},
            {"type": "heartbeat", "sessionId": session},
        ]});
        app.post_track(batch.to_string())
    });
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(app.count().await, 3 * REQUESTS as i64);
    for s in 0..SESSIONS {
        let stored = app.stored(&format!("shared-{s}")).await;
        assert_eq!(stored.len(), 3 * REQUESTS / SESSIONS, "session {s}");
    }
    app.stop().await;
}

async fn preflight_allows_any_origin_by_default(db: &TestDatabase) {
    let app = spawn_app(db);
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/track", app.address))
        .header("Origin", "https://any-site.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(response
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    let post = app
        .client
        .post(format!("{}/track", app.address))
        .header("Origin", "https://any-site.example")
        .body(SINGLE)
        .send()
        .await
        .unwrap();
    assert_eq!(post.headers()["access-control-allow-origin"], "*");
    app.stop().await;
}

async fn preflight_allows_only_the_configured_origins(db: &TestDatabase) {
    let app = spawn_app_with(db, |c| {
        c.allowed_origins = vec!["https://mine.example".into()]
    });
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/track", app.address))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
    };
    let ok = preflight("https://mine.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://mine.example"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    app.stop().await;
}
