//! Fresh databases for tests: never a shared one, never leftover state.
//!
//! PostgreSQL tests need `TEST_DATABASE_URL` (a server URL whose user may
//! create databases, e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
//! Without it they do not run; when `BEACON_REQUIRE_POSTGRES=1` (set by
//! `.ci/run`) a missing or unreachable server fails the test instead.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::Connection;

use crate::DatabaseUrl;

/// A database that exists for one test and is removed when dropped.
pub struct TestDatabase {
    /// Where the database is.
    pub url: DatabaseUrl,
    /// The URL as a string, as a user would pass it.
    pub raw_url: String,
    pg_admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("beacon-test.db");
        let raw_url = format!("sqlite://{}", path.display());
        Self {
            url: DatabaseUrl::SqliteFile(path),
            raw_url,
            pg_admin: None,
            _dir: Some(dir),
        }
    }

    /// A new, empty PostgreSQL database, or `None` when `TEST_DATABASE_URL`
    /// is unset (a loud notice is printed; with `BEACON_REQUIRE_POSTGRES=1`
    /// it panics instead).
    pub fn postgres() -> Option<Self> {
        Self::postgres_created_with("")
    }

    /// [`TestDatabase::postgres`] whose text columns sort by an ICU locale
    /// (`"en-US"`) instead of the server's default, as a database created
    /// on a host with that locale would.
    pub fn postgres_icu(locale: &str) -> Option<Self> {
        Self::postgres_created_with(&format!(
            " LOCALE_PROVIDER icu ICU_LOCALE '{locale}' TEMPLATE template0"
        ))
    }

    fn postgres_created_with(options: &str) -> Option<Self> {
        let admin = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var("BEACON_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "BEACON_REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set"
                );
                eprintln!("NOTICE: TEST_DATABASE_URL is not set; PostgreSQL test NOT run");
                return None;
            }
        };
        let name = format!("beacon_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::establish(&admin)
            .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
        conn.batch_execute(&format!("CREATE DATABASE {name}{options}"))
            .expect("create test database");
        let raw_url = replace_database(&admin, &name);
        Some(Self {
            url: DatabaseUrl::Postgres(raw_url.clone()),
            raw_url,
            pg_admin: Some((admin, name)),
            _dir: None,
        })
    }
}

/// The events of a `/track` body as the server parses them, received at
/// `received_at` with `user_agent` as the request's `User-Agent`. Panics
/// if the body is refused or any event of it rejected.
pub fn parse_events(
    body: &str,
    received_at: chrono::DateTime<chrono::Utc>,
    user_agent: Option<&str>,
) -> Vec<beacon_model::NewEvent> {
    let ctx = beacon_model::RequestContext {
        received_at,
        user_agent,
    };
    let parsed =
        beacon_model::parse_track_body(body.as_bytes(), &ctx, &beacon_model::Limits::default())
            .unwrap();
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    parsed.events
}

impl crate::Store {
    /// Forgets which sessions this store wrote, so that its next batches
    /// upsert every session they name (as another instance would).
    pub fn forget_known_sessions(&self) {
        self.known.clear();
    }

    /// Runs `sql` (any statements, no results) on this store's database:
    /// for tests that put rows in states the write path never makes, or
    /// run a migration's text again.
    pub fn execute_script(&self, sql: &str) -> Result<(), crate::StoreError> {
        match &*self.pools {
            crate::store::Pools::Pg(pool) => pool.get()?.batch_execute(sql)?,
            crate::store::Pools::Sqlite(pool) => pool.get()?.batch_execute(sql)?,
        }
        Ok(())
    }
}

impl TestDatabase {
    /// A store on this database, migrated.
    pub fn store(&self) -> crate::Store {
        let store = crate::Store::connect(&self.url, &crate::PoolOptions::default())
            .expect("the test database connects");
        store.run_migrations().expect("the migrations run");
        store
    }
}

/// Declares each named function `fn(&Store)` as two tests, in modules
/// `sqlite` and `postgres`, each on a fresh migrated database (the
/// PostgreSQL one is skipped, loudly, without `TEST_DATABASE_URL`).
#[macro_export]
macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() {
                let db = $crate::testing::TestDatabase::sqlite();
                super::$name(&db.store());
            })*
        }
        mod postgres {
            $(#[test] fn $name() {
                if let Some(db) = $crate::testing::TestDatabase::postgres() {
                    super::$name(&db.store());
                }
            })*
        }
    };
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg_admin {
            if let Ok(mut conn) = PgConnection::establish(admin) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// Replaces the database name in a PostgreSQL URL.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
