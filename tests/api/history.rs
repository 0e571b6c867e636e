//! The historical API on a known data set spanning the Berlin fall-back
//! night (2026-10-25, 03:00 CEST → 02:00 CET): sessions, events and their
//! exports, hourly and daily stats in several zones, top lists, pagination
//! while inserts continue, and bad parameters.

use beacon_model::{parse_track_body, Limits, NewEvent, RequestContext};
use beacon_store::testing::TestDatabase;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    hourly_stats_follow_berlin_across_the_dst_change_with_exact_visitors,
    daily_stats_count_each_session_once_per_local_day,
    half_hour_zones_get_exact_hourly_buckets,
    stats_default_to_the_last_24_hours_and_30_days_with_empty_buckets,
    top_lists_count_events_and_distinct_visitors_over_any_range,
    sessions_are_listed_newest_first_with_counters_and_filters,
    one_session_comes_with_its_events_in_order_or_404,
    events_are_filtered_and_paged_oldest_first,
    ndjson_and_csv_exports_stream_every_event_with_correct_escaping,
    pagination_has_no_gaps_or_duplicates_while_inserts_continue,
    bad_parameters_get_400_with_the_error_shape,
    rollup_rebuild_command_recomputes_the_same_figures,
    the_rollup_worker_folds_acknowledged_events_in_by_itself,
);

const SITE: &str = "https://site.example";
const GOOGLE: &str = "https://www.google.com/";
const NEWS: &str = "https://news.example/";

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 26, 0, 0, 0).unwrap()
}

/// Parses events as the server would have on `received`, so client times
/// days in the past are kept.
fn parse(events: &[Value], received_at: DateTime<Utc>) -> Vec<NewEvent> {
    let ctx = RequestContext {
        received_at,
        user_agent: None,
    };
    let mut out = Vec::new();
    // A request holds at most 500 events.
    for chunk in events.chunks(500) {
        let body = json!({ "batch": chunk }).to_string();
        let parsed = parse_track_body(body.as_bytes(), &ctx, &Limits::default()).unwrap();
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        out.extend(parsed.events);
    }
    out
}

fn ev(
    session: &str,
    kind: &str,
    at: &str,
    page: &str,
    referrer: Option<&str>,
    data: Value,
) -> Value {
    let mut e = json!({"type": kind, "sessionId": session, "timestamp": at,
                       "url": format!("{SITE}{page}"), "data": data,
                       "userAgent": format!("UA-{session}")});
    if let Some(r) = referrer {
        e["referrer"] = json!(r);
    }
    e
}

/// The known data set (13 events, 5 sessions); times UTC.
fn dataset() -> Vec<Value> {
    vec![
        ev(
            "sess-a",
            "visit",
            "2026-10-25T00:10:00Z",
            "/",
            Some(GOOGLE),
            json!({"country": "DE", "city": "Berlin", "page_title": "Hi, \"there\"\nnew line"}),
        ),
        ev(
            "sess-a",
            "click",
            "2026-10-25T00:20:00Z",
            "/",
            Some(GOOGLE),
            json!({"label": "Buy"}),
        ),
        ev(
            "sess-a",
            "visit",
            "2026-10-25T01:10:00Z",
            "/pricing",
            Some(GOOGLE),
            json!({}),
        ),
        ev(
            "sess-b",
            "visit",
            "2026-10-25T00:40:00Z",
            "/",
            Some(NEWS),
            json!({"country": "FR", "city": "Paris"}),
        ),
        ev(
            "sess-b",
            "visit",
            "2026-10-25T00:50:00Z",
            "/",
            Some(NEWS),
            json!({}),
        ),
        ev(
            "sess-c",
            "visit",
            "2026-10-25T01:30:00Z",
            "/pricing",
            None,
            json!({"country": "DE", "city": "Hamburg"}),
        ),
        ev(
            "sess-c",
            "click",
            "2026-10-25T01:31:00Z",
            "/pricing",
            None,
            json!({"label": "Buy"}),
        ),
        ev(
            "sess-c",
            "click",
            "2026-10-25T01:32:00Z",
            "/pricing",
            None,
            json!({}),
        ),
        ev(
            "sess-c",
            "heartbeat",
            "2026-10-25T02:10:00Z",
            "/pricing",
            None,
            json!({"uptime": 40}),
        ),
        ev(
            "sess-d",
            "visit",
            "2026-10-24T10:00:00Z",
            "/",
            Some(GOOGLE),
            json!({"country": "ES"}),
        ),
        ev(
            "sess-d",
            "scroll",
            "2026-10-24T10:05:00Z",
            "/",
            Some(GOOGLE),
            json!({"depth": 50}),
        ),
        ev(
            "sess-e",
            "visit",
            "2026-10-23T23:30:00Z",
            "/",
            None,
            json!({}),
        ),
        ev(
            "sess-e",
            "visit",
            "2026-10-24T00:30:00Z",
            "/",
            None,
            json!({}),
        ),
    ]
}

async fn insert(app: &TestApp, events: Vec<NewEvent>) {
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || store.insert_batch(&events).unwrap())
        .await
        .unwrap();
}

/// The app with the data set stored (in two batches, the second one
/// holding events older than some of the first, as late batches do).
async fn seeded(db: &TestDatabase) -> TestApp {
    let app = spawn_app(db);
    let all = dataset();
    insert(&app, parse(&all[..7], received())).await;
    insert(&app, parse(&all[7..], received())).await;
    app
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// (start, page_views, visitors, events, clicks, sessions, avg duration s)
type Row = (&'static str, i64, i64, i64, i64, i64, f64);

fn assert_buckets(body: &Value, expected: &[Row]) {
    let buckets = body["buckets"].as_array().unwrap();
    let got: Vec<(String, i64, i64, i64, i64, i64, f64)> = buckets
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_owned(),
                b["page_views"].as_i64().unwrap(),
                b["visitors"].as_i64().unwrap(),
                b["events"].as_i64().unwrap(),
                b["clicks"].as_i64().unwrap(),
                b["sessions"].as_i64().unwrap(),
                b["avg_session_duration_seconds"].as_f64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<_> = expected
        .iter()
        .map(|r| (r.0.to_owned(), r.1, r.2, r.3, r.4, r.5, r.6))
        .collect();
    assert_eq!(got, expected);
}

async fn hourly_stats_follow_berlin_across_the_dst_change_with_exact_visitors(db: &TestDatabase) {
    let app = seeded(db).await;
    let body = get_json(
        &app,
        "/stats/hourly?tz=Europe/Berlin&from=2026-10-25T00:00:00%2B02:00&to=2026-10-25T04:00:00%2B01:00",
    )
    .await;
    assert_eq!(body["interval"], "hour");
    assert_eq!(body["tz"], "Europe/Berlin");
    assert_eq!(body["from"], "2026-10-24T22:00:00Z");
    assert_eq!(body["to"], "2026-10-25T03:00:00Z");
    assert_buckets(
        &body,
        &[
            ("2026-10-25T00:00:00+02:00", 0, 0, 0, 0, 0, 0.0),
            ("2026-10-25T01:00:00+02:00", 0, 0, 0, 0, 0, 0.0),
            // The repeated hour, twice: A and B in the first, A and C in
            // the second.
            ("2026-10-25T02:00:00+02:00", 3, 2, 4, 1, 2, 2100.0),
            ("2026-10-25T02:00:00+01:00", 2, 2, 4, 2, 1, 2400.0),
            ("2026-10-25T03:00:00+01:00", 0, 1, 1, 0, 0, 0.0),
        ],
    );
    let t = &body["totals"];
    assert_eq!(
        (
            t["page_views"].as_i64(),
            t["visitors"].as_i64(),
            t["events"].as_i64(),
            t["clicks"].as_i64()
        ),
        (Some(5), Some(3), Some(9), Some(3)),
        "A is in two hours but one visitor of the range"
    );
    assert_eq!(t["avg_session_duration_seconds"], 2200.0);
    app.stop().await;
}

async fn daily_stats_count_each_session_once_per_local_day(db: &TestDatabase) {
    let app = seeded(db).await;
    let body = get_json(
        &app,
        "/stats/daily?tz=Europe/Berlin&from=2026-10-24&to=2026-10-26",
    )
    .await;
    assert_eq!(body["interval"], "day");
    assert_buckets(
        &body,
        &[
            // E spans UTC midnight but is one Berlin day; D is the other.
            ("2026-10-24T00:00:00+02:00", 3, 2, 4, 0, 2, 1950.0),
            // The 25-hour day.
            ("2026-10-25T00:00:00+02:00", 5, 3, 9, 3, 3, 2200.0),
        ],
    );
    assert_eq!(
        body["to"], "2026-10-25T23:00:00Z",
        "the day ends at midnight CET"
    );
    assert_eq!(body["totals"]["visitors"], 5);

    // In UTC, E is on two days.
    let body = get_json(&app, "/stats/daily?from=2026-10-23&to=2026-10-26").await;
    assert_buckets(
        &body,
        &[
            ("2026-10-23T00:00:00Z", 1, 1, 1, 0, 1, 3600.0),
            ("2026-10-24T00:00:00Z", 2, 2, 3, 0, 1, 300.0),
            ("2026-10-25T00:00:00Z", 5, 3, 9, 3, 3, 2200.0),
        ],
    );
    app.stop().await;
}

async fn half_hour_zones_get_exact_hourly_buckets(db: &TestDatabase) {
    let app = seeded(db).await;
    let body = get_json(
        &app,
        "/stats/hourly?tz=Asia/Kolkata&from=2026-10-25T05:00:00%2B05:30&to=2026-10-25T08:00:00%2B05:30",
    )
    .await;
    assert_buckets(
        &body,
        &[
            ("2026-10-25T05:00:00+05:30", 1, 1, 2, 1, 1, 3600.0),
            ("2026-10-25T06:00:00+05:30", 3, 2, 3, 0, 1, 600.0),
            ("2026-10-25T07:00:00+05:30", 1, 1, 4, 2, 1, 2400.0),
        ],
    );
    app.stop().await;
}

async fn stats_default_to_the_last_24_hours_and_30_days_with_empty_buckets(db: &TestDatabase) {
    let app = spawn_app(db);
    assert_eq!(
        app.post_track(redate_to(PIXEL, chrono::Duration::seconds(5)))
            .await
            .status(),
        200
    );
    let hourly = get_json(&app, "/stats/hourly").await;
    let buckets = hourly["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 24, "{hourly}");
    assert_eq!(hourly["totals"]["events"], 4, "{hourly}");
    assert_eq!(hourly["totals"]["visitors"], 1, "{hourly}");
    let empty = buckets
        .iter()
        .filter(|b| b["events"] == 0 && b["visitors"] == 0)
        .count();
    assert!(empty >= 22, "empty hours are zeros: {hourly}");
    let daily = get_json(&app, "/stats/daily?tz=America/New_York").await;
    assert_eq!(daily["buckets"].as_array().unwrap().len(), 30);
    assert_eq!(daily["totals"]["events"], 4);
    app.stop().await;
}

fn items(body: &Value, field: &str) -> Vec<(String, i64, i64)> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i[field].as_str().unwrap().to_owned(),
                i["count"].as_i64().unwrap(),
                i["visitors"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn top_lists_count_events_and_distinct_visitors_over_any_range(db: &TestDatabase) {
    let app = seeded(db).await;
    // Quarter edges on the 23rd, whole days inside: E is counted once.
    let range = "from=2026-10-23T23:00:00Z&to=2026-10-26T00:00:00Z";
    let pages = get_json(&app, &format!("/top-pages?{range}")).await;
    assert_eq!(
        items(&pages, "url"),
        [
            (format!("{SITE}/"), 6, 4),
            (format!("{SITE}/pricing"), 2, 2)
        ]
    );
    assert_eq!(pages["from"], "2026-10-23T23:00:00Z");
    let referrers = get_json(&app, &format!("/top-referrers?{range}")).await;
    assert_eq!(
        items(&referrers, "referrer"),
        [(GOOGLE.to_owned(), 3, 2), (NEWS.to_owned(), 2, 1)]
    );
    let clicks = get_json(&app, &format!("/top-clicks?{range}")).await;
    assert_eq!(
        items(&clicks, "label"),
        [("Buy".to_owned(), 2, 2), ("unknown".to_owned(), 1, 1)]
    );
    let one = get_json(&app, &format!("/top-pages?{range}&limit=1")).await;
    assert_eq!(items(&one, "url").len(), 1);

    // Within one hour; ties are ordered by item.
    let pages = get_json(
        &app,
        "/top-pages?from=2026-10-25T00:45:00Z&to=2026-10-25T01:15:00Z",
    )
    .await;
    assert_eq!(
        items(&pages, "url"),
        [
            (format!("{SITE}/"), 1, 1),
            (format!("{SITE}/pricing"), 1, 1)
        ]
    );
    // Dates are read in `tz`: the Berlin 24th holds D and E only.
    let pages = get_json(
        &app,
        "/top-pages?tz=Europe/Berlin&from=2026-10-24&to=2026-10-25",
    )
    .await;
    assert_eq!(items(&pages, "url"), [(format!("{SITE}/"), 3, 2)]);
    // Nothing in range: an empty list.
    let empty = get_json(&app, "/top-clicks?from=2026-01-01&to=2026-01-02").await;
    assert_eq!(empty["items"], json!([]));
    app.stop().await;
}

fn tokens(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["token"].as_str().unwrap().to_owned())
        .collect()
}

async fn sessions_are_listed_newest_first_with_counters_and_filters(db: &TestDatabase) {
    let app = seeded(db).await;
    let all = get_json(&app, "/sessions").await;
    assert_eq!(
        tokens(&all, "sessions"),
        ["sess-c", "sess-b", "sess-a", "sess-d", "sess-e"]
    );
    assert_eq!(all["next_cursor"], Value::Null);
    let a = &all["sessions"][2];
    assert_eq!(
        *a,
        json!({"token": "sess-a", "first_seen": "2026-10-25T00:10:00Z",
               "last_seen": "2026-10-25T01:10:00Z", "duration_seconds": 3600.0,
               "events": 3, "page_views": 2, "entry_url": format!("{SITE}/"),
               "referrer": GOOGLE, "country": "DE", "city": "Berlin",
               "region": null, "browser": null, "browser_version": null, "os": null,
               "os_version": null, "device": null, "visitor_id": null, "bot": false,
               "user_agent": "UA-sess-a"})
    );
    let cases = [
        ("country=de", vec!["sess-c", "sess-a"]),
        ("referrer=https://www.google", vec!["sess-a", "sess-d"]),
        (
            "from=2026-10-25T00:00:00Z",
            vec!["sess-c", "sess-b", "sess-a"],
        ),
        ("from=2026-10-24&to=2026-10-25", vec!["sess-d"]),
        ("country=DE&from=2026-10-25T00:30:00Z", vec!["sess-c"]),
        ("country=ZZ", vec![]),
    ];
    for (query, expected) in cases {
        let body = get_json(&app, &format!("/sessions?{query}")).await;
        assert_eq!(tokens(&body, "sessions"), expected, "{query}");
    }
    // Pages of two.
    let mut seen = Vec::new();
    let mut path = "/sessions?limit=2".to_owned();
    loop {
        let page = get_json(&app, &path).await;
        seen.extend(tokens(&page, "sessions"));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/sessions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["sess-c", "sess-b", "sess-a", "sess-d", "sess-e"]);
    app.stop().await;
}

async fn one_session_comes_with_its_events_in_order_or_404(db: &TestDatabase) {
    let app = seeded(db).await;
    let body = get_json(&app, "/sessions/sess-c").await;
    assert_eq!(body["session"]["token"], "sess-c");
    assert_eq!(body["session"]["duration_seconds"], 2400.0);
    assert_eq!(body["session"]["events"], 4);
    let events = body["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["visit", "click", "click", "heartbeat"]);
    assert_eq!(events[1]["label"], "Buy");
    assert_eq!(events[1]["metadata"], json!({"label": "Buy"}));
    assert_eq!(events[3]["timestamp"], "2026-10-25T02:10:00Z");
    assert_eq!(events[0]["received_at"], "2026-10-26T00:00:00Z");
    let response = app.get("/sessions/no-such-session").await;
    assert_eq!(error_code(response, 404).await, "session_not_found");
    app.stop().await;
}

fn event_list(body: &Value) -> Vec<(String, String)> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["session_token"].as_str().unwrap().to_owned(),
                e["timestamp"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn events_are_filtered_and_paged_oldest_first(db: &TestDatabase) {
    let app = seeded(db).await;
    let all = get_json(&app, "/events").await;
    let list = event_list(&all);
    assert_eq!(list.len(), 13);
    assert_eq!(
        list[0],
        ("sess-e".to_owned(), "2026-10-23T23:30:00Z".to_owned())
    );
    assert_eq!(
        list[12],
        ("sess-c".to_owned(), "2026-10-25T02:10:00Z".to_owned())
    );
    let cases = [
        ("type=click", 3),
        ("session=sess-c", 4),
        ("url=https://site.example/pricing", 5),
        ("label=Buy", 2),
        ("from=2026-10-25T00:00:00Z&to=2026-10-25T01:00:00Z", 4),
        ("type=visit&url=https://site.example/&session=sess-b", 2),
        ("type=nothing", 0),
    ];
    for (query, expected) in cases {
        let body = get_json(&app, &format!("/events?{query}")).await;
        assert_eq!(event_list(&body).len(), expected, "{query}");
    }
    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/events?limit=5".to_owned();
    loop {
        let page = get_json(&app, &path).await;
        sizes.push(event_list(&page).len());
        paged.extend(event_list(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/events?limit=5&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(sizes, [5, 5, 3]);
    assert_eq!(paged, list);
    app.stop().await;
}

/// A minimal RFC 4180 reader, to check the export from the other side.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

async fn ndjson_and_csv_exports_stream_every_event_with_correct_escaping(db: &TestDatabase) {
    let app = seeded(db).await;
    // Enough events for several export chunks.
    let many: Vec<Value> = (0..4500)
        .map(|i| {
            ev(
                &format!("bulk-{}", i % 97),
                "click",
                "2026-10-20T12:00:00Z",
                "/bulk",
                None,
                json!({"label": format!("L, \"{i}\"")}),
            )
        })
        .collect();
    insert(&app, parse(&many[..2250], received())).await;
    insert(&app, parse(&many[2250..], received())).await;

    let response = app.get("/events?format=ndjson").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4513);
    let ids: std::collections::HashSet<i64> =
        lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 4513, "no duplicates across chunks");
    assert_eq!(
        lines[4512]["timestamp"], "2026-10-25T02:10:00Z",
        "oldest first, to the end"
    );

    let response = app.get("/events?format=csv&type=visit").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let records = parse_csv(&text);
    assert_eq!(records[0][..4], ["id", "event_id", "type", "timestamp"]);
    assert_eq!(records.len(), 1 + 8);
    assert!(
        records.iter().all(|r| r.len() == 11),
        "every record has 11 fields"
    );
    let a = records
        .iter()
        .find(|r| r[5] == "sess-a" && r[3] == "2026-10-25T00:10:00Z")
        .unwrap();
    let metadata: Value = serde_json::from_str(&a[10]).unwrap();
    assert_eq!(
        metadata["page_title"], "Hi, \"there\"\nnew line",
        "quotes, comma and newline survive"
    );
    assert_eq!(a[7], GOOGLE);

    let csv = app
        .get("/events?format=csv&type=click&url=https://site.example/bulk")
        .await
        .text()
        .await
        .unwrap();
    let records = parse_csv(&csv);
    assert_eq!(records.len(), 1 + 4500);
    assert!(records[1..].iter().all(|r| r[8].starts_with("L, \"")));
    app.stop().await;
}

async fn pagination_has_no_gaps_or_duplicates_while_inserts_continue(db: &TestDatabase) {
    let app = spawn_app(db);
    let start = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
    let initial: Vec<Value> = (0..300)
        .map(|i| {
            let at = start + chrono::Duration::seconds(i * 7 % 1800);
            ev(
                &format!("p-{i}"),
                "visit",
                &at.to_rfc3339(),
                "/",
                None,
                json!({}),
            )
        })
        .collect();
    insert(
        &app,
        parse(
            &initial,
            Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(),
        ),
    )
    .await;

    // A writer adds sessions and events, old and new, the whole time.
    let writer = {
        let store = app.store.clone();
        tokio::task::spawn_blocking(move || {
            for round in 0..40 {
                let batch: Vec<Value> = (0..10)
                    .map(|k| {
                        let at = start + chrono::Duration::seconds((round * 37 + k * 101) % 1800);
                        ev(
                            &format!("late-{round}-{k}"),
                            "visit",
                            &at.to_rfc3339(),
                            "/",
                            None,
                            json!({}),
                        )
                    })
                    .collect();
                store
                    .insert_batch(&parse(
                        &batch,
                        Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(),
                    ))
                    .unwrap();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let mut sessions = Vec::new();
    let mut path = "/sessions?limit=25".to_owned();
    loop {
        let page = get_json(&app, &path).await;
        sessions.extend(tokens(&page, "sessions"));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/sessions?limit=25&cursor={cursor}"),
            None => break,
        }
    }
    let mut events = Vec::new();
    let mut path = "/events?limit=40".to_owned();
    loop {
        let page = get_json(&app, &path).await;
        events.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/events?limit=40&cursor={cursor}"),
            None => break,
        }
    }
    writer.await.unwrap();

    let unique: std::collections::HashSet<&String> = sessions.iter().collect();
    assert_eq!(unique.len(), sessions.len(), "no session twice");
    for i in 0..300 {
        assert!(
            unique.contains(&format!("p-{i}")),
            "session p-{i} was not skipped"
        );
    }
    let unique: std::collections::HashSet<i64> = events.iter().copied().collect();
    assert_eq!(unique.len(), events.len(), "no event twice");
    assert!(events.len() >= 300, "every initial event is listed");
    app.stop().await;
}

async fn bad_parameters_get_400_with_the_error_shape(db: &TestDatabase) {
    let app = spawn_app(db);
    let cases = [
        ("/stats/hourly?tz=Mars/Olympus", "invalid_parameter"),
        ("/stats/hourly?from=yesterday", "invalid_parameter"),
        (
            "/stats/daily?from=2026-10-10&to=2026-10-01",
            "invalid_parameter",
        ),
        (
            "/stats/hourly?from=2026-09-01&to=2026-10-10",
            "range_too_large",
        ),
        (
            "/stats/daily?from=2020-01-01&to=2026-10-10",
            "range_too_large",
        ),
        (
            "/top-pages?from=2020-01-01&to=2026-10-10",
            "range_too_large",
        ),
        ("/top-pages?limit=0", "invalid_parameter"),
        ("/top-clicks?limit=101", "invalid_parameter"),
        ("/sessions?limit=abc", "invalid_parameter"),
        ("/sessions?cursor=zz", "invalid_parameter"),
        ("/events?format=xml", "invalid_parameter"),
        ("/events?to=2026-13-01", "invalid_parameter"),
    ];
    for (path, code) in cases {
        assert_eq!(error_code(app.get(path).await, 400).await, code, "{path}");
    }
    // A cursor of one endpoint is refused by the other.
    insert(&app, parse(&dataset(), received())).await;
    let page = get_json(&app, "/sessions?limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let response = app.get(&format!("/events?cursor={cursor}")).await;
    assert_eq!(error_code(response, 400).await, "invalid_parameter");
    app.stop().await;
}

async fn rollup_rebuild_command_recomputes_the_same_figures(db: &TestDatabase) {
    let app = seeded(db).await;
    let path = "/stats/hourly?tz=Europe/Berlin&from=2026-10-24T22:00:00Z&to=2026-10-25T03:00:00Z";
    let before = get_json(&app, path).await;
    let pages_before = get_json(&app, "/top-pages?from=2026-10-23&to=2026-10-26").await;
    let raw_url = db.raw_url.clone();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_beacon"))
            .args(["rollup", "--rebuild", "--database-url", &raw_url])
            .env_remove("BEACON_READ_TOKEN")
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());
    assert_eq!(get_json(&app, path).await, before);
    assert_eq!(
        get_json(&app, "/top-pages?from=2026-10-23&to=2026-10-26").await,
        pages_before
    );
    app.stop().await;
}

/// Without `TestApp::get`'s settling: the worker's own passes bring the
/// figures up to date within a few intervals, and a graceful stop leaves
/// nothing acknowledged out of the rollups.
async fn the_rollup_worker_folds_acknowledged_events_in_by_itself(db: &TestDatabase) {
    let app = spawn_app_with(db, |c| {
        c.rollup_interval = std::time::Duration::from_millis(100)
    });
    let visits: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"type":"visit","sessionId":"worker-{i}","url":"{SITE}/w"}}"#))
        .collect();
    let response = app
        .post_track(format!(r#"{{"batch":[{}]}}"#, visits.join(",")))
        .await;
    assert_eq!(response.status(), 200);
    let url = format!("{}/stats/daily", app.address);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body: Value = app
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Three sessions from one address and browser: one visitor.
        if body["totals"]["page_views"] == 3
            && body["totals"]["sessions"] == 3
            && body["totals"]["visitors"] == 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not roll the visits up: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // /metrics shows the worker's progress.
    assert!(app.gauge("beacon_rollup_events_total").await >= 3.0);
    let caught_up = app.gauge("beacon_rollup_caught_up_timestamp_seconds").await;
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now - 60.0..=now + 1.0).contains(&caught_up),
        "caught up at {caught_up}, now {now}"
    );
    // Acknowledged just before a graceful stop: rolled up by the last pass.
    let response = app
        .post_track(r#"{"type":"visit","sessionId":"worker-last","url":"https://site.example/w"}"#)
        .await;
    assert_eq!(response.status(), 200);
    let store = app.store.clone();
    app.stop().await;
    let pending = tokio::task::spawn_blocking(move || store.roll_up(1).unwrap())
        .await
        .unwrap();
    assert_eq!(
        pending.applied, 0,
        "a graceful stop rolls up every acknowledged event"
    );
}
