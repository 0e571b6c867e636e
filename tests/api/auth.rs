//! Read access control: with a read token set, every read endpoint answers
//! 401 without it and 200 with it (header or `?token=`); ingestion and the
//! health check stay public.

use beacon_store::testing::TestDatabase;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    every_read_endpoint_requires_the_token_when_one_is_set,
    stream_accepts_the_token_as_a_query_parameter_for_event_source,
    track_and_up_stay_public_and_preflights_pass_without_a_token,
    without_a_token_reads_are_open,
);

const TOKEN: &str = "s3cret-read-token";

const READ_PATHS: [&str; 16] = [
    "/stream",
    "/sessions",
    "/sessions/some-session",
    "/events",
    "/stats/hourly",
    "/stats/daily",
    "/top-pages",
    "/top-referrers",
    "/top-clicks",
    "/top-countries",
    "/top-regions",
    "/top-cities",
    "/top-browsers",
    "/top-os",
    "/top-devices",
    "/metrics",
];

async fn every_read_endpoint_requires_the_token_when_one_is_set(db: &TestDatabase) {
    let app = spawn_app_with_token(db, TOKEN);
    for path in READ_PATHS {
        let url = format!("{}{path}", app.address);
        let none = app.client.get(&url).send().await.unwrap();
        assert_eq!(
            none.headers()["www-authenticate"],
            r#"Bearer realm="beacon""#,
            "{path}"
        );
        assert_eq!(error_code(none, 401).await, "unauthorized", "{path}");

        for wrong in [
            "Bearer nope",
            "Bearer s3cret-read-toke",
            "Basic czNjcmV0",
            TOKEN,
        ] {
            let response = app
                .client
                .get(&url)
                .header("Authorization", wrong)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{path} with {wrong:?}");
            let body = response.text().await.unwrap();
            assert!(
                !body.contains(TOKEN) && !body.contains("nope"),
                "the token is never echoed: {body}"
            );
        }
        let response = app
            .client
            .get(format!("{url}?token=wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer realm="beacon", error="invalid_token""#
        );
        assert_eq!(
            error_code(response, 401).await,
            "unauthorized",
            "{path}?token=wrong"
        );

        let ok = app
            .client
            .get(&url)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap();
        let expected = if path == "/sessions/some-session" {
            404
        } else {
            200
        };
        assert_eq!(ok.status(), expected, "{path} with the header");
        let ok = app
            .client
            .get(format!("{url}?token={TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), expected, "{path} with ?token=");
    }
    // The token works beside other parameters.
    let ok = app
        .get(&format!("/stats/hourly?tz=Europe/Berlin&token={TOKEN}"))
        .await;
    assert_eq!(ok.status(), 200);
    app.stop().await;
}

async fn stream_accepts_the_token_as_a_query_parameter_for_event_source(db: &TestDatabase) {
    let app = spawn_app_with_token(db, TOKEN);
    let response = app.get(&format!("/stream?token={TOKEN}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut reader = SseReader::new(response);
    let open = reader.next_data().await.unwrap();
    assert_eq!(open["message"], "stream-open");
    drop(reader);
    assert_eq!(app.get("/stream").await.status(), 401);
    app.stop().await;
}

async fn track_and_up_stay_public_and_preflights_pass_without_a_token(db: &TestDatabase) {
    let app = spawn_app_with_token(db, TOKEN);
    assert_eq!(
        app.post_track(redate_to(PIXEL, chrono::Duration::seconds(5)))
            .await
            .status(),
        200
    );
    assert_eq!(app.get("/up").await.status(), 200);
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/sessions", app.address),
        )
        .header("Origin", "https://dashboard.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let denied = app
        .client
        .get(format!("{}/events", app.address))
        .header("Origin", "https://dashboard.example")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(
        denied.headers()["access-control-allow-origin"],
        "*",
        "a 401 is readable by the dashboard"
    );
    app.stop().await;
}

async fn without_a_token_reads_are_open(db: &TestDatabase) {
    let app = spawn_app(db);
    for path in READ_PATHS
        .iter()
        .filter(|p| !p.starts_with("/stream") && !p.starts_with("/sessions/"))
    {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    assert_eq!(app.get("/stream").await.status(), 200);
    app.stop().await;
}
