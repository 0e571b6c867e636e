//! Who the historical figures count, over HTTP: the top lists by place,
//! browser, system and device, visitors as distinct visitor ids (a session
//! stored without one counts as its own visitor), and bots in no figure.
//! Sessions are seeded through the store with the profiles enrichment
//! would give them.

use std::sync::Arc;

use beacon_model::{parse_track_body, Limits, NewEvent, RequestContext, VisitorProfile};
use beacon_store::testing::TestDatabase;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    top_lists_by_place_browser_system_and_device_count_page_views_and_visitors,
    stats_count_visitor_ids_and_leave_bots_out,
    the_new_top_lists_take_the_same_parameters_and_survive_a_rebuild,
);

const SITE: &str = "https://site.example";

/// Who is behind a session: `(visitor id, country, region, city, browser,
/// os, device, bot)`.
type Who = (
    i64,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
    &'static str,
    &'static str,
    bool,
);

fn profile(who: Who) -> Arc<VisitorProfile> {
    let (visitor_id, country, region, city, browser, os, device, bot) = who;
    Arc::new(VisitorProfile {
        visitor_id: Some(visitor_id),
        browser: Some(browser.into()),
        browser_version: Some("131".into()),
        os: Some(os.into()),
        os_version: Some("10".into()),
        device: Some(device.into()),
        country: country.map(Into::into),
        region: region.map(Into::into),
        city: city.map(Into::into),
        bot,
    })
}

const BERLIN: Who = (
    -1,
    Some("DE"),
    Some("Berlin"),
    Some("Berlin"),
    "Chrome",
    "Windows",
    "desktop",
    false,
);
const ILLINOIS: Who = (
    -2,
    Some("US"),
    Some("Illinois"),
    Some("Springfield"),
    "Firefox",
    "Mac OS X",
    "desktop",
    false,
);
const MANITOBA: Who = (
    -3,
    Some("CA"),
    Some("Manitoba"),
    Some("Springfield"),
    "Samsung Internet",
    "Android",
    "mobile",
    false,
);
const NOWHERE: Who = (
    -4,
    None,
    None,
    Some("Atlantis"),
    "Chrome",
    "Chrome OS",
    "tablet",
    false,
);
const CRAWLER: Who = (
    -9,
    Some("US"),
    Some("Illinois"),
    Some("Springfield"),
    "HeadlessChrome",
    "Linux",
    "other",
    true,
);

/// The events of one session on 2026-10-26 (`HH:MM` times, UTC), each
/// `(kind, time, page)`, with the session's profile (none: stored before
/// enrichment, placed by the pixel's own `data.country`).
fn session(token: &str, who: Option<Who>, events: &[(&str, &str, &str)]) -> Vec<NewEvent> {
    let batch: Vec<Value> = events
        .iter()
        .map(|(kind, time, page)| {
            json!({"type": kind, "sessionId": token, "url": format!("{SITE}{page}"),
                   "timestamp": format!("2026-10-26T{time}:00Z"),
                   "data": {"country": "FR", "city": "Paris", "label": "Buy"}})
        })
        .collect();
    let ctx = RequestContext {
        received_at: Utc.with_ymd_and_hms(2026, 10, 27, 0, 0, 0).unwrap(),
        user_agent: None,
    };
    let body = json!({ "batch": batch }).to_string();
    let parsed = parse_track_body(body.as_bytes(), &ctx, &Limits::default()).unwrap();
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    let profile = who.map(profile);
    parsed
        .events
        .into_iter()
        .map(|e| match &profile {
            Some(p) => e.with_profile(Arc::clone(p)),
            None => e,
        })
        .collect()
}

/// Seven sessions of six visitors and a bot:
///
/// | session | visitor | place | page views | other events |
/// |---|---|---|---|---|
/// | tab-1 | -1 | DE Berlin | 2 | a click |
/// | tab-2 | -1 (a second tab) | DE Berlin | 1 | |
/// | us | -2 | US Illinois Springfield | 1 | a heartbeat |
/// | ca | -3 | CA Manitoba Springfield | 1 | |
/// | atlantis | -4 | no country, Atlantis | 1 | |
/// | old | itself (no visitor id) | FR Paris, from the pixel | 1 | |
/// | crawler | -9, a bot | US Illinois Springfield | 3 | a click |
fn dataset() -> Vec<Vec<NewEvent>> {
    vec![
        session(
            "tab-1",
            Some(BERLIN),
            &[
                ("visit", "10:00", "/"),
                ("click", "10:01", "/"),
                ("visit", "10:02", "/a"),
            ],
        ),
        session("tab-2", Some(BERLIN), &[("visit", "10:05", "/")]),
        session(
            "us",
            Some(ILLINOIS),
            &[("visit", "10:10", "/"), ("heartbeat", "10:20", "/")],
        ),
        session("ca", Some(MANITOBA), &[("visit", "11:00", "/")]),
        session("atlantis", Some(NOWHERE), &[("visit", "11:30", "/a")]),
        session("old", None, &[("visit", "12:00", "/")]),
        session(
            "crawler",
            Some(CRAWLER),
            &[
                ("visit", "10:00", "/"),
                ("visit", "10:01", "/a"),
                ("click", "10:02", "/"),
                ("visit", "12:00", "/"),
            ],
        ),
    ]
}

async fn seeded(db: &TestDatabase) -> TestApp {
    let app = spawn_app(db);
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || {
        for batch in dataset() {
            store.insert_batch(&batch).unwrap();
        }
    })
    .await
    .unwrap();
    app
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Each item of a top list as `(field, count, visitors)`.
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

fn line(item: &str, count: i64, visitors: i64) -> (String, i64, i64) {
    (item.to_owned(), count, visitors)
}

const DAY: &str = "from=2026-10-26T00:00:00Z&to=2026-10-27T00:00:00Z";

async fn top_lists_by_place_browser_system_and_device_count_page_views_and_visitors(
    db: &TestDatabase,
) {
    let app = seeded(db).await;
    let countries = get_json(&app, &format!("/top-countries?{DAY}")).await;
    assert_eq!(
        items(&countries, "country"),
        [
            line("DE", 3, 1),
            line("CA", 1, 1),
            line("FR", 1, 1),
            line("US", 1, 1)
        ],
        "two tabs are one visitor; the bot is not in the US"
    );
    assert_eq!(countries["from"], "2026-10-26T00:00:00Z");
    assert_eq!(countries["to"], "2026-10-27T00:00:00Z");

    // Regions and cities carry their country: two Springfields.
    let cities = get_json(&app, &format!("/top-cities?{DAY}")).await;
    assert_eq!(
        cities["items"],
        json!([
            {"city": "Berlin", "country": "DE", "count": 3, "visitors": 1},
            {"city": "Atlantis", "country": null, "count": 1, "visitors": 1},
            {"city": "Springfield", "country": "CA", "count": 1, "visitors": 1},
            {"city": "Paris", "country": "FR", "count": 1, "visitors": 1},
            {"city": "Springfield", "country": "US", "count": 1, "visitors": 1},
        ])
    );
    let regions = get_json(&app, &format!("/top-regions?{DAY}")).await;
    assert_eq!(
        regions["items"],
        json!([
            {"region": "Berlin", "country": "DE", "count": 3, "visitors": 1},
            {"region": "Manitoba", "country": "CA", "count": 1, "visitors": 1},
            {"region": "Illinois", "country": "US", "count": 1, "visitors": 1},
        ])
    );

    // Families only; the session stored without a profile has none.
    let browsers = get_json(&app, &format!("/top-browsers?{DAY}")).await;
    assert_eq!(
        items(&browsers, "browser"),
        [
            line("Chrome", 4, 2),
            line("Firefox", 1, 1),
            line("Samsung Internet", 1, 1)
        ]
    );
    assert_eq!(browsers["items"][0].get("country"), None);
    let systems = get_json(&app, &format!("/top-os?{DAY}")).await;
    assert_eq!(
        items(&systems, "os"),
        [
            line("Windows", 3, 1),
            line("Android", 1, 1),
            line("Chrome OS", 1, 1),
            line("Mac OS X", 1, 1)
        ]
    );
    let devices = get_json(&app, &format!("/top-devices?{DAY}")).await;
    assert_eq!(
        items(&devices, "device"),
        [
            line("desktop", 4, 2),
            line("mobile", 1, 1),
            line("tablet", 1, 1)
        ],
        "the bot's `other` is not listed"
    );
    app.stop().await;
}

async fn stats_count_visitor_ids_and_leave_bots_out(db: &TestDatabase) {
    let app = seeded(db).await;
    let stats = get_json(
        &app,
        "/stats/hourly?from=2026-10-26T10:00:00Z&to=2026-10-26T13:00:00Z",
    )
    .await;
    let figures: Vec<(i64, i64, i64, i64, i64)> = stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let f = |k: &str| b[k].as_i64().unwrap();
            (
                f("page_views"),
                f("visitors"),
                f("sessions"),
                f("events"),
                f("clicks"),
            )
        })
        .collect();
    assert_eq!(
        figures,
        [(4, 2, 3, 6, 1), (2, 2, 2, 2, 0), (1, 1, 1, 1, 0)],
        "(page views, visitors, sessions, events, clicks) per hour"
    );
    let totals = &stats["totals"];
    assert_eq!(totals["visitors"], 5, "six sessions, five visitors");
    assert_eq!(totals["sessions"], 6);
    assert_eq!(totals["page_views"], 7);
    let pages = get_json(&app, &format!("/top-pages?{DAY}")).await;
    assert_eq!(
        items(&pages, "url"),
        [
            line(&format!("{SITE}/"), 5, 4),
            line(&format!("{SITE}/a"), 2, 2)
        ]
    );
    let clicks = get_json(&app, &format!("/top-clicks?{DAY}")).await;
    assert_eq!(items(&clicks, "label"), [line("Buy", 1, 1)]);
    app.stop().await;
}

async fn the_new_top_lists_take_the_same_parameters_and_survive_a_rebuild(db: &TestDatabase) {
    let app = seeded(db).await;
    // `limit`, and dates read in `tz`: the Honolulu day of the 26th starts
    // at 10:00 UTC.
    let one = get_json(&app, &format!("/top-cities?{DAY}&limit=1")).await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    let honolulu = get_json(
        &app,
        "/top-devices?tz=Pacific/Honolulu&from=2026-10-26&to=2026-10-27",
    )
    .await;
    assert_eq!(honolulu["from"], "2026-10-26T10:00:00Z");
    assert_eq!(
        items(&honolulu, "device"),
        [
            line("desktop", 4, 2),
            line("mobile", 1, 1),
            line("tablet", 1, 1)
        ]
    );
    let late = get_json(
        &app,
        "/top-devices?from=2026-10-26T11:00:00Z&to=2026-10-26T12:00:00Z",
    )
    .await;
    assert_eq!(
        items(&late, "device"),
        [line("mobile", 1, 1), line("tablet", 1, 1)]
    );
    for path in [
        "/top-countries?limit=0",
        "/top-regions?limit=101",
        "/top-cities?tz=Mars/Olympus",
        "/top-browsers?from=2026-10-27&to=2026-10-26",
        "/top-devices?from=yesterday",
    ] {
        assert_eq!(
            error_code(app.get(path).await, 400).await,
            "invalid_parameter",
            "{path}"
        );
    }
    let response = app.get("/top-os?from=2020-01-01&to=2026-10-10").await;
    assert_eq!(error_code(response, 400).await, "range_too_large");

    let lists = [
        "/top-countries",
        "/top-regions",
        "/top-cities",
        "/top-browsers",
        "/top-os",
        "/top-devices",
    ];
    let mut before = vec![];
    for list in lists {
        before.push(get_json(&app, &format!("{list}?{DAY}")).await);
    }
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
    for (list, before) in lists.iter().zip(before) {
        assert_eq!(
            get_json(&app, &format!("{list}?{DAY}")).await,
            before,
            "{list} after a rebuild"
        );
    }
    app.stop().await;
}
