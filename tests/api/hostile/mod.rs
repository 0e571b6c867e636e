//! Hostile input, end to end: every case of the hardening list is sent to a
//! running server, and its status, its JSON error and what it stored are
//! checked. Each request that can carry a valid event carries one; at the
//! end the server is still up and exactly the valid events are stored, once.
//!
//! The cases are grouped by category, one file and one test per category
//! (on each backend, on a fresh database), so that a failure names its
//! category and the others still run. A new case goes into its category's
//! `cases()`, built with the helpers of [`case`]; a new category is a new
//! file like the others, declared below.
//!
//! Bodies that reqwest refuses to send (header values with CR/LF, partial
//! bodies, chunked bodies written by hand) go over a raw TCP connection
//! ([`crate::helpers::raw_http`]).

mod case;

mod bodies;
mod body_limits;
mod duplicate_keys;
mod encodings;
mod field_limits;
mod headers;
mod methods;
mod nesting;
mod text;
mod times;
mod types;

use std::collections::{HashMap, HashSet};

use beacon_store::testing::TestDatabase;
use beacon_store::StoredEvent;
use serde_json::Value;

use crate::helpers::raw_http::{RawConnection, EXCHANGE_LIMIT};
use crate::helpers::*;
use case::{id, ok, valid, Case, Check, Expect, Request, Then, SESSION};

/// Sends every case of a category to a server of its own on `db`, checks
/// each answer, then that the server is still up and that exactly the
/// valid events are stored, once each. Panics naming the first case that
/// fails.
pub async fn every_case_is_answered_and_only_the_valid_events_are_stored(
    db: &TestDatabase,
    cases: Vec<Case>,
) {
    // Hostile requests come without a browser's user agent; kept (flagged
    // as bots), so that what reaches the database can be checked.
    let app = spawn_app_with(db, |c| c.keep_bots = true);
    // Every request is bounded: a case that hangs fails instead of
    // blocking the suite.
    let client = crate::helpers::client_builder()
        .timeout(EXCHANGE_LIMIT)
        .build()
        .unwrap();
    let mut names = HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name.as_str()),
            "case names are unique: {}",
            case.name
        );
    }

    let mut expected: HashMap<String, (&str, &Check)> = HashMap::new();
    let follow_up_check: Check = Box::new(ok);
    let mut refused: Vec<(&str, &String)> = vec![];
    for case in &cases {
        let outcome = tokio::time::timeout(EXCHANGE_LIMIT * 2, run(&app, &client, case))
            .await
            .unwrap_or_else(|_| Err("the exchange hung".into()));
        match outcome {
            Ok(follow_up) => {
                if let Some(id) = follow_up {
                    expected.insert(id, (case.name.as_str(), &follow_up_check));
                }
            }
            Err(e) => panic!("case {:?}: {e}", case.name),
        }
        for (id, check) in &case.stored {
            expected.insert(id.clone(), (case.name.as_str(), check));
        }
        refused.extend(case.refused.iter().map(|id| (case.name.as_str(), id)));
    }

    // The server is still up and answers normally.
    assert_eq!(app.get("/up").await.status(), 200, "the server is still up");
    let last = "after the table/ok";
    assert_eq!(
        app.post_track(valid(last)).await.status(),
        200,
        "a last valid event is accepted"
    );
    expected.insert(last.into(), ("after the table", &follow_up_check));

    // Exactly the valid events are stored, each once, each as expected.
    let stored = {
        let store = app.store.clone();
        tokio::task::spawn_blocking(move || store.recent_events(1_000_000).unwrap())
            .await
            .unwrap()
    };
    let mut by_id: HashMap<&str, Vec<&StoredEvent>> = HashMap::new();
    for row in &stored {
        by_id.entry(row.public_id.as_str()).or_default().push(row);
    }
    for (id, (case, check)) in &expected {
        match by_id.get(id.as_str()).map(Vec::as_slice) {
            Some([row]) => {
                assert_eq!(
                    row.session_token, SESSION,
                    "case {case:?}: event {id} session"
                );
                if let Err(e) = check(row) {
                    panic!("case {case:?}: event {id} stored wrongly: {e}");
                }
            }
            Some(rows) => panic!("case {case:?}: event {id} stored {} times", rows.len()),
            None => panic!("case {case:?}: valid event {id} is not stored"),
        }
    }
    for (case, id) in &refused {
        assert!(
            !by_id.contains_key(id.as_str()),
            "case {case:?}: refused event {id} is stored"
        );
    }
    let unexpected: Vec<&str> = by_id
        .keys()
        .filter(|id| !expected.contains_key(**id))
        .copied()
        .collect();
    assert!(
        unexpected.is_empty(),
        "stored but not expected: {unexpected:?}"
    );
    assert_eq!(
        app.count().await,
        expected.len() as i64,
        "events in the database"
    );
    app.stop().await;
}

/// Sends one case and checks its response; `Err` says what went wrong.
async fn run(
    app: &TestApp,
    client: &reqwest::Client,
    case: &Case,
) -> Result<Option<String>, String> {
    let url = format!("{}/track", app.address);
    let (status, content_type, body, mut connection) = match &case.send {
        Request::Post { headers, body } => {
            let mut request = client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let (status, content_type, body) = exchange(request).await?;
            (status, content_type, body, None)
        }
        Request::Method(method) => {
            let (status, content_type, body) =
                exchange(client.request(method.clone(), &url)).await?;
            (status, content_type, body, None)
        }
        Request::Raw { bytes, .. } => {
            let mut conn = RawConnection::open(&app.address).await;
            conn.send(bytes).await?;
            let response = conn.response().await?;
            let content_type = response.headers.get("content-type").cloned();
            (
                response.status,
                content_type,
                response.body,
                Some((conn, response.headers)),
            )
        }
    };

    let text = String::from_utf8_lossy(&body).into_owned();
    let expected_status = match case.expect {
        Expect::Accepted(_) => 200,
        Expect::Error(status, _) | Expect::Status(status) => status,
    };
    if status != expected_status {
        return Err(format!(
            "status {status} instead of {expected_status}: {text:.300}"
        ));
    }
    match &case.expect {
        Expect::Status(_) => {}
        Expect::Accepted(_) | Expect::Error(..) => {
            if content_type.as_deref() != Some("application/json") {
                return Err(format!("content type {content_type:?}, not JSON"));
            }
        }
    }
    match &case.expect {
        Expect::Accepted(rejected) => {
            let answer: Value =
                serde_json::from_slice(&body).map_err(|e| format!("{e}: {text:.300}"))?;
            if answer["ok"] != true || answer["accepted"] != case.stored.len() {
                return Err(format!("expected {} accepted: {answer}", case.stored.len()));
            }
            let got: Vec<(u64, &str)> = answer["rejected"]
                .as_array()
                .ok_or("no rejected array")?
                .iter()
                .map(|r| {
                    (
                        r["index"].as_u64().unwrap_or(u64::MAX),
                        r["error"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            let want: Vec<(u64, &str)> = rejected.iter().map(|(i, c)| (*i as u64, *c)).collect();
            if got != want {
                return Err(format!("rejected {got:?} instead of {want:?}: {answer}"));
            }
        }
        Expect::Error(_, code) => {
            let answer: Value =
                serde_json::from_slice(&body).map_err(|e| format!("{e}: {text:.300}"))?;
            if answer["error"] != *code {
                return Err(format!(
                    "error {} instead of {code}: {answer}",
                    answer["error"]
                ));
            }
            if answer["message"].as_str().is_none_or(str::is_empty) {
                return Err(format!("no message: {answer}"));
            }
        }
        Expect::Status(_) => {}
    }

    // What becomes of a raw connection; a follow-up event proves the
    // client's next request works.
    let follow_up = id(&case.name, "next");
    let next = format!(
        "POST /track HTTP/1.1\r\nHost: beacon.test\r\nContent-Length: {}\r\n\r\n{}",
        valid(&follow_up).len(),
        valid(&follow_up)
    );
    let Request::Raw { then, .. } = &case.send else {
        return Ok(None);
    };
    let (mut conn, headers) = connection.take().ok_or("no connection")?;
    match then {
        Then::Closed => {
            if headers.get("connection").map(|v| v.to_ascii_lowercase()) != Some("close".into()) {
                return Err(format!(
                    "the response does not say Connection: close: {headers:?}"
                ));
            }
            conn.closed_by_server().await?;
            let mut again = RawConnection::open(&app.address).await;
            again.send(next.as_bytes()).await?;
            let response = again.response().await?;
            if response.status != 200 {
                return Err(format!(
                    "the next request, on a new connection: {}",
                    response.status
                ));
            }
            Ok(Some(follow_up))
        }
        Then::Reused { rest } => {
            if headers
                .get("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            {
                return Err(format!("the connection is closed: {headers:?}"));
            }
            conn.send(rest).await?;
            conn.send(next.as_bytes()).await?;
            let response = conn.response().await?;
            if response.status != 200 {
                return Err(format!(
                    "the next request on the same connection: {} {:?}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ));
            }
            Ok(Some(follow_up))
        }
    }
}

/// Sends a request through reqwest: its status, content type and body.
async fn exchange(
    request: reqwest::RequestBuilder,
) -> Result<(u16, Option<String>, Vec<u8>), String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = response.bytes().await.map_err(|e| e.to_string())?.to_vec();
    Ok((status, content_type, body))
}
