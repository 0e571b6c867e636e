//! The dashboard's sign-in: the read token exchanged for a session cookie
//! that every read endpoint accepts, that survives a move to another
//! instance with the same token, and that a new token ends; and the
//! embedded dashboard and tracker files, served gzipped with ETags.

use beacon_store::testing::TestDatabase;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    the_signin_cookie_opens_every_read_endpoint_and_signout_removes_it,
    the_cookie_works_on_every_instance_until_the_read_token_changes,
    the_dashboard_and_the_tracker_are_served_compressed_with_etags,
);

const TOKEN: &str = "s3cret-read-token";

/// Every read endpoint but `/stream`, which never ends (checked apart).
const READ_PATHS: [&str; 8] = [
    "/sessions",
    "/events",
    "/stats/hourly",
    "/stats/daily",
    "/top-pages",
    "/top-referrers",
    "/top-clicks",
    "/metrics",
];

async fn sign_in(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/auth/signin", app.address))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap()
}

/// The `name=value` part of the response's `Set-Cookie`, and the whole header.
fn cookie_of(response: &reqwest::Response) -> (String, String) {
    let header = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let pair = header.split(';').next().unwrap().trim().to_owned();
    (pair, header)
}

async fn status_with(app: &TestApp, path: &str, cookie: &str) -> u16 {
    app.client
        .get(format!("{}{path}", app.address))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn the_signin_cookie_opens_every_read_endpoint_and_signout_removes_it(db: &TestDatabase) {
    let app = spawn_app_with_token(db, TOKEN);
    let wrong = sign_in(&app, "nope").await;
    assert!(wrong.headers().get("set-cookie").is_none());
    assert_eq!(error_code(wrong, 401).await, "unauthorized");

    let garbled = app
        .client
        .post(format!("{}/auth/signin", app.address))
        .body(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(garbled.headers().get("set-cookie").is_none());
    assert_eq!(error_code(garbled, 400).await, "invalid_parameter");

    let right = sign_in(&app, TOKEN).await;
    assert_eq!(right.status(), 200);
    let (cookie, header) = cookie_of(&right);
    assert!(cookie.starts_with("beacon_session="), "{header}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attribute), "{attribute} in {header}");
    }
    assert!(!header.contains("Secure"), "plain HTTP: {header}");
    assert!(!header.contains(TOKEN), "the token is not in the cookie");

    for path in READ_PATHS {
        assert_eq!(status_with(&app, path, &cookie).await, 200, "{path}");
        assert_eq!(
            status_with(&app, path, "beacon_session=1.00").await,
            401,
            "{path}"
        );
    }
    let status: serde_json::Value = app
        .client
        .get(format!("{}/auth/status", app.address))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status,
        serde_json::json!({"token_required": true, "authorized": true})
    );
    let stream = app
        .client
        .get(format!("{}/stream", app.address))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    drop(stream);

    // A request that carries a token is judged by the token alone.
    let both = app
        .client
        .get(format!("{}/events", app.address))
        .header("Cookie", &cookie)
        .header("Authorization", "Bearer nope")
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 401);

    let out = app
        .client
        .post(format!("{}/auth/signout", app.address))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    let (cleared, header) = cookie_of(&out);
    assert_eq!(cleared, "beacon_session=");
    assert!(header.contains("Max-Age=0"), "{header}");
    app.stop().await;
}

async fn the_cookie_works_on_every_instance_until_the_read_token_changes(db: &TestDatabase) {
    let first = spawn_app_with_token(db, TOKEN);
    let (cookie, _) = cookie_of(&sign_in(&first, TOKEN).await);
    let second = spawn_app_with_token(db, TOKEN);
    assert_eq!(
        status_with(&second, "/events", &cookie).await,
        200,
        "another instance"
    );
    let rotated = spawn_app_with_token(db, "a-new-read-token");
    assert_eq!(
        status_with(&rotated, "/events", &cookie).await,
        401,
        "a new token"
    );
    first.stop().await;
    second.stop().await;
    rotated.stop().await;
}

async fn the_dashboard_and_the_tracker_are_served_compressed_with_etags(db: &TestDatabase) {
    let app = spawn_app_with_token(db, TOKEN);
    for (path, kind) in [
        ("/", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
        (
            "/dashboard/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
        ("/beacon.js", "text/javascript; charset=utf-8"),
    ] {
        let url = format!("{}{path}", app.address);
        // Public: the page holds no data, the read endpoints do.
        let plain = app.client.get(&url).send().await.unwrap();
        assert_eq!(plain.status(), 200, "{path}");
        assert_eq!(plain.headers()["content-type"], kind, "{path}");
        assert!(plain.headers().get("content-encoding").is_none(), "{path}");
        let etag = plain.headers()["etag"].clone();
        let size = plain.bytes().await.unwrap().len();

        let gzip = app
            .client
            .get(&url)
            .header("Accept-Encoding", "gzip, br")
            .send()
            .await
            .unwrap();
        assert_eq!(gzip.headers()["content-encoding"], "gzip", "{path}");
        assert_eq!(gzip.headers()["vary"], "Accept-Encoding", "{path}");
        assert!(gzip.bytes().await.unwrap().len() < size, "{path}");

        let again = app
            .client
            .get(&url)
            .header("If-None-Match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let tracker = app
        .client
        .get(format!("{}/beacon.js", app.address))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(tracker.headers()["cache-control"], "public, max-age=3600");
    assert!(
        tracker.bytes().await.unwrap().len() < 2048,
        "the tracker is under 2 KB gzipped"
    );
    let page = app.get("/").await;
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("connect-src 'self'"));
    for missing in [
        "/dashboard/index.html",
        "/dashboard/nope.js",
        "/dashboard/..%2fbeacon.js",
    ] {
        assert_eq!(app.get(missing).await.status(), 404, "{missing}");
    }
    app.stop().await;
}
