//! Retention and erasure while servers run, with the real binary for the
//! commands: `beacon prune` deletes only old data that is in the rollups
//! and the figures of older ranges stay; the retention task deletes old
//! data while ingestion goes on and no request fails; `beacon forget`
//! erases a session, the rollups then equal a rebuild, and an instance
//! that had the session cached files its next events under a new one.

use std::process::Output;

use beacon_store::testing::TestDatabase;
use beacon_store::{EventQuery, SessionQuery, Store};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    prune_deletes_only_old_rolled_up_data_and_older_ranges_keep_their_figures,
    the_retention_task_deletes_old_data_while_ingestion_goes_on_and_no_request_fails,
    forget_erases_a_session_and_the_rollups_equal_a_rebuild_of_the_rest,
    forget_of_an_unknown_token_fails_with_a_clear_error,
    a_session_forgotten_while_another_instance_had_it_cached_is_written_anew,
    bad_retention_settings_are_refused_with_a_clear_error,
);

const SITE: &str = "https://site.example";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

/// One event as the pixel sends it (a browser's user agent in the body).
fn ev(session: &str, id: &str, kind: &str, at: DateTime<Utc>, page: &str) -> Value {
    json!({"type": kind, "sessionId": session, "id": id,
           "timestamp": at.to_rfc3339(), "url": format!("{SITE}{page}"),
           "referrer": "https://www.google.com/", "data": {"label": page},
           "userAgent": BROWSER})
}

fn body(events: &[Value]) -> String {
    json!({ "batch": events }).to_string()
}

/// Stores events as if they had been received `ago` before now (the
/// server believes client times up to 7 days before the receive time).
async fn store_received(store: &Store, events: Vec<Value>, received: DateTime<Utc>) {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        for chunk in events.chunks(500) {
            let batch = beacon_store::testing::parse_events(&body(chunk), received, None);
            store.insert_batch(&batch).unwrap();
        }
    })
    .await
    .unwrap();
}

/// Runs the `beacon` binary on the test database.
async fn beacon(db: &TestDatabase, args: &[&str]) -> Output {
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.extend(["--database-url".to_owned(), db.raw_url.clone()]);
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_beacon"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .env_remove("BEACON_READ_TOKEN")
            .env_remove("BEACON_RETENTION")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Every figure of the historical API over the last two weeks, by day and
/// by hour on the oldest day, and the top lists, as the server answers.
async fn figures(app: &TestApp, old_day: NaiveDate) -> Vec<Value> {
    let today = Utc::now().date_naive();
    let (from, to) = (today - Duration::days(14), today + Duration::days(1));
    let mut out = vec![
        get_json(app, &format!("/stats/daily?from={from}&to={to}")).await,
        get_json(
            app,
            &format!(
                "/stats/hourly?from={old_day}&to={}",
                old_day + Duration::days(1)
            ),
        )
        .await,
    ];
    for list in ["pages", "referrers", "clicks"] {
        for (a, b) in [
            (from, to),
            (from, today - Duration::days(5)),
            (old_day, old_day + Duration::days(1)),
        ] {
            out.push(get_json(app, &format!("/top-{list}?from={a}&to={b}")).await);
        }
    }
    out
}

fn midday(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(12, 0, 0).unwrap().and_utc()
}

/// Three events each of `sessions` sessions `{prefix}{i}`, the first
/// starting at `start`, the next ones 7 minutes apart.
fn traffic(prefix: &str, sessions: usize, start: DateTime<Utc>) -> Vec<Value> {
    let mut out = vec![];
    for s in 0..sessions {
        let token = format!("{prefix}{s}");
        let start = start + Duration::minutes(7 * s as i64);
        out.push(ev(&token, &format!("{token}-v1"), "visit", start, "/"));
        out.push(ev(
            &token,
            &format!("{token}-c1"),
            "click",
            start + Duration::minutes(1),
            "/docs",
        ));
        out.push(ev(
            &token,
            &format!("{token}-v2"),
            "visit",
            start + Duration::minutes(20),
            &format!("/page/{}", s % 3),
        ));
    }
    out
}

async fn prune_deletes_only_old_rolled_up_data_and_older_ranges_keep_their_figures(
    db: &TestDatabase,
) {
    let app = spawn_app(db);
    let today = Utc::now().date_naive();
    let old_day = today - Duration::days(10);
    let mut old = traffic("old-", 10, midday(old_day));
    old.push(ev("span", "span-1", "visit", midday(old_day), "/span"));
    store_received(&app.store, old, midday(old_day) + Duration::hours(2)).await;
    let mut recent = traffic("new-", 4, Utc::now() - Duration::hours(1));
    recent.push(ev("span", "span-2", "visit", Utc::now(), "/span"));
    assert_eq!(app.post_track(body(&recent)).await.status(), 200);
    app.settle().await;
    let before = figures(&app, old_day).await;
    assert_eq!(app.count().await, 31 + 13);

    let cutoff = today - Duration::days(5);
    let out = beacon(db, &["prune", "--before", &cutoff.to_string()]).await;
    assert!(out.status.success(), "prune failed: {}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!(
            "pruned 31 events and 10 sessions from before {cutoff}"
        )),
        "{}",
        stdout(&out)
    );

    assert_eq!(app.count().await, 13, "the recent events stay");
    assert_eq!(app.get("/sessions/old-0").await.status(), 404);
    let span = get_json(&app, "/sessions/span").await;
    assert_eq!(span["events"].as_array().unwrap().len(), 1, "{span}");
    assert_eq!(figures(&app, old_day).await, before, "every figure stays");
    app.stop().await;
}

async fn the_retention_task_deletes_old_data_while_ingestion_goes_on_and_no_request_fails(
    db: &TestDatabase,
) {
    // Three days ago, 2,000 sessions: pruned in several steps.
    let old_day = Utc::now().date_naive() - Duration::days(3);
    let setup = db.store();
    let old: Vec<Value> = (0..20)
        .flat_map(|h| {
            traffic(
                &format!("old-{h}-"),
                100,
                midday(old_day) - Duration::hours(6),
            )
        })
        .collect();
    let old_count = old.len();
    store_received(&setup, old, midday(old_day) + Duration::hours(12)).await;
    let daily = format!(
        "/stats/daily?from={old_day}&to={}",
        old_day + Duration::days(1)
    );

    let cli = <beacon_server::Cli as clap::Parser>::try_parse_from([
        "beacon",
        "--retention",
        "1",
        "--retention-interval",
        "200ms",
        "--rollup-interval",
        "100ms",
    ])
    .unwrap();
    let app = spawn_app_with(db, |c| {
        c.retention = cli.config.retention;
        c.retention_interval = cli.config.retention_interval;
        c.rollup_interval = cli.config.rollup_interval;
    });
    let cutoff_us = (Utc::now().date_naive() - Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    // Events, then sessions, from before the cutoff.
    let old_left = |store: Store| async move {
        tokio::task::spawn_blocking(move || {
            let events = EventQuery {
                to_us: Some(cutoff_us),
                limit: 1,
                ..EventQuery::default()
            };
            let sessions = SessionQuery {
                to_us: Some(cutoff_us),
                limit: 1,
                ..SessionQuery::default()
            };
            store.list_events(&events).unwrap().len()
                + store.list_sessions(&sessions).unwrap().len()
        })
        .await
        .unwrap()
    };

    // Ingest goes on, new sessions and returning ones, until the old data
    // is gone, and a little after.
    let mut posted = 0;
    let mut rounds_after = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for round in 0.. {
        let events: Vec<Value> = (0..20)
            .map(|i| {
                let token = format!("live-{}", (round * 7 + i) % 50);
                ev(
                    &token,
                    &format!("r{round}-{i}"),
                    "visit",
                    Utc::now(),
                    "/live",
                )
            })
            .collect();
        let response = app.post_track(body(&events)).await;
        assert_eq!(
            response.status(),
            200,
            "round {round}: {}",
            response.text().await.unwrap()
        );
        posted += events.len();
        if old_left(app.store.clone()).await == 0 {
            rounds_after += 1;
            if rounds_after == 10 {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old events were not pruned in time"
        );
    }
    assert_eq!(
        app.count().await as usize,
        posted,
        "every posted event stored, no old one left"
    );
    assert_eq!(app.get("/sessions/old-0-0").await.status(), 404);
    let live = get_json(&app, "/sessions/live-0").await;
    assert!(!live["events"].as_array().unwrap().is_empty());
    let old_figures = get_json(&app, &daily).await;
    assert_eq!(
        old_figures["totals"]["events"].as_u64().unwrap() as usize,
        old_count,
        "the rollups keep the pruned day: {old_figures}"
    );
    app.stop().await;
}

async fn forget_erases_a_session_and_the_rollups_equal_a_rebuild_of_the_rest(db: &TestDatabase) {
    let app = spawn_app(db);
    let now = Utc::now() - Duration::minutes(30);
    let mut events = traffic("keep-", 3, now - Duration::minutes(30));
    events.push(ev("subject", "p1", "visit", now, "/private/subject"));
    events.push(ev(
        "subject",
        "p2",
        "click",
        now + Duration::minutes(1),
        "/subject-label",
    ));
    events.push(ev(
        "subject",
        "p3",
        "visit",
        now + Duration::minutes(2),
        "/",
    ));
    assert_eq!(app.post_track(body(&events)).await.status(), 200);
    app.settle().await;

    let out = beacon(db, &["forget", "--session", "subject"]).await;
    assert!(out.status.success(), "forget failed: {}", stderr(&out));
    assert!(stdout(&out).contains("its 3 events"), "{}", stdout(&out));
    assert!(
        !stdout(&out).contains("subject") && !stderr(&out).contains("subject"),
        "the token is not echoed"
    );

    assert_eq!(app.get("/sessions/subject").await.status(), 404);
    let listed = get_json(&app, "/events?session=subject").await;
    assert_eq!(listed["events"], json!([]));
    let today = now.date_naive();
    let pages = get_json(
        &app,
        &format!(
            "/top-pages?from={today}&to={}&limit=100",
            today + Duration::days(1)
        ),
    )
    .await;
    assert!(!pages.to_string().contains("private"), "{pages}");
    let after = figures(&app, today).await;
    let out = beacon(db, &["rollup", "--rebuild"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        figures(&app, today).await,
        after,
        "the rollups equal a rebuild"
    );

    // The pixel goes on with the token: a new session, with only the new
    // event (this app had the session's id cached).
    let later = [ev("subject", "p4", "visit", Utc::now(), "/again")];
    assert_eq!(app.post_track(body(&later)).await.status(), 200);
    let again = get_json(&app, "/sessions/subject").await;
    let ids: Vec<&Value> = again["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event_id"])
        .collect();
    assert_eq!(ids, [&json!("p4")], "{again}");
    app.stop().await;
}

async fn forget_of_an_unknown_token_fails_with_a_clear_error(db: &TestDatabase) {
    let app = spawn_app(db);
    let events = traffic("s-", 2, Utc::now() - Duration::hours(1));
    assert_eq!(app.post_track(body(&events)).await.status(), 200);
    let out = beacon(db, &["forget", "--session", "no-such-token"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no stored session has this token"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("no-such-token"),
        "the token is not echoed"
    );
    assert_eq!(app.count().await, 6);
    app.stop().await;
}

async fn a_session_forgotten_while_another_instance_had_it_cached_is_written_anew(
    db: &TestDatabase,
) {
    let (one, two) = (spawn_app(db), spawn_app(db));
    let at = Utc::now() - Duration::minutes(5);
    for batch in [["a1", "a2"], ["a3", "a4"]] {
        let events: Vec<Value> = batch
            .iter()
            .map(|id| ev("shared", id, "visit", at, "/"))
            .collect();
        assert_eq!(two.post_track(body(&events)).await.status(), 200);
    }
    let out = beacon(db, &["forget", "--session", "shared"]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    let later = [ev("shared", "b1", "visit", Utc::now(), "/later")];
    assert_eq!(two.post_track(body(&later)).await.status(), 200);
    let seen = get_json(&one, "/sessions/shared").await;
    let ids: Vec<&Value> = seen["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event_id"])
        .collect();
    assert_eq!(ids, [&json!("b1")], "{seen}");
    assert_eq!(one.count().await, 1, "no event under the deleted session");
    one.settle().await;
    let today = Utc::now().date_naive();
    let stats = get_json(
        &one,
        &format!("/stats/daily?from={today}&to={}", today + Duration::days(1)),
    )
    .await;
    assert_eq!(stats["totals"]["events"], 1, "{stats}");
    assert_eq!(stats["totals"]["sessions"], 1, "{stats}");
    one.stop().await;
    two.stop().await;
}

async fn bad_retention_settings_are_refused_with_a_clear_error(db: &TestDatabase) {
    let cases: [(&[&str], i32, &str); 5] = [
        (&["--retention", "0", "migrate"], 2, "whole number of days"),
        (
            &["--retention", "thirty", "migrate"],
            2,
            "whole number of days",
        ),
        (&["prune", "--before", "2026-02-30"], 2, "YYYY-MM-DD"),
        (&["prune"], 2, "--before"),
        (&["forget"], 2, "--session"),
    ];
    for (args, code, message) in cases {
        let out = beacon(db, args).await;
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    let tomorrow = (Utc::now().date_naive() + Duration::days(2)).to_string();
    let out = beacon(db, &["prune", "--before", &tomorrow]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("prune deletes only the past"),
        "{}",
        stderr(&out)
    );
}
