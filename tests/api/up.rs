//! GET /up, and 503s while the database is away.

use beacon_store::testing::TestDatabase;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(up_reports_the_database_up);

async fn up_reports_the_database_up(db: &TestDatabase) {
    let app = spawn_app(db);
    let response = app.get("/up").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    app.stop().await;
}

/// PostgreSQL only: the database disappears under a running server, then
/// comes back; /track and /up answer 503 meanwhile, and recover by
/// themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_answers_503_while_postgres_is_away_and_recovers() {
    let Some(db) = Db::Postgres.fresh() else {
        return;
    };
    let app = spawn_app(&db);
    assert_eq!(app.post_track(SINGLE).await.status(), 200);
    let mut stream = SseReader::new(app.get("/stream").await);

    let admin = std::env::var("TEST_DATABASE_URL").unwrap();
    let name = db.raw_url.rsplit('/').next().unwrap().to_owned();
    let psql = |sql: String| {
        let admin = admin.clone();
        move || {
            use diesel_free::run;
            run(&admin, &sql)
        }
    };
    tokio::task::spawn_blocking(psql(format!("DROP DATABASE {name} WITH (FORCE)")))
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let response = app.post_track(PIXEL).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "answers within the timeout"
    );
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response, 503).await, "database_unavailable");
    assert_eq!(app.get("/up").await.status(), 503);
    // The stream goes on with the last figures, marked stale.
    let stale = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let tick = stream.next_data().await.expect("stream still open");
            if tick["stale"] == true {
                return tick;
            }
        }
    })
    .await
    .expect("a stale tick arrives");
    assert_eq!(
        stale["recent_events"].as_array().unwrap().len(),
        1,
        "last figures kept"
    );

    // The database comes back (re-created and migrated): no restart needed.
    tokio::task::spawn_blocking(psql(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let store = beacon_store::Store::connect(&db.url, &Default::default()).unwrap();
    store.run_migrations().unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        if app.post_track(PIXEL).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(recovered, "/track recovers by itself");
    assert_eq!(app.get("/up").await.status(), 200);
    assert_eq!(
        app.count().await,
        4,
        "exactly the acknowledged events are stored"
    );
    let _ = json!(null);
    app.stop().await;
}

mod diesel_free {
    /// Runs one statement on the admin database.
    pub fn run(admin: &str, sql: &str) {
        let status = std::process::Command::new("psql")
            .args([admin, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .status()
            .expect("psql runs");
        assert!(status.success(), "psql {sql}");
    }
}
