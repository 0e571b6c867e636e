use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use parking_lot::FairMutexGuard;

use crate::{DatabaseUrl, StoreError};

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL, through bundled libpq.
    Postgres,
    /// SQLite, bundled.
    Sqlite,
}

impl Backend {
    /// Lowercase name, for logs and `/up`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Most open connections (SQLite in-memory databases always use 1).
    pub max_size: u32,
    /// How long a caller waits for a connection before the database counts
    /// as unavailable.
    pub connection_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 8,
            connection_timeout: Duration::from_secs(3),
        }
    }
}

pub(crate) enum Pools {
    Pg(Pool<ConnectionManager<PgConnection>>),
    Sqlite(SqlitePool),
}

/// A pooled connection to the configured database. Cheap to clone; every
/// method blocks.
#[derive(Clone)]
pub struct Store {
    pub(crate) pools: std::sync::Arc<Pools>,
    /// Sessions written through this store (and its clones).
    pub(crate) known: std::sync::Arc<crate::known::KnownSessions>,
    /// Taken by every SQLite write transaction of this store, before its
    /// connection ([`Store::sqlite_write_conn`]). SQLite lets one writer in
    /// at a time, and its own wait for the write lock (`busy_timeout`)
    /// polls with sleeps, in no order: a commit behind a rollup pass could
    /// sleep through several of them, and a pass starting again at once
    /// could keep it waiting longer. This lock
    /// hands the turn over in arrival order, at once; `busy_timeout` is
    /// left for other processes (a `beacon rollup --rebuild` beside a
    /// server).
    pub(crate) sqlite_writes: std::sync::Arc<parking_lot::FairMutex<()>>,
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // WAL lets readers run beside the writer; FULL makes a commit durable
        // against power loss (the ack promise); busy_timeout turns lock
        // contention into waiting rather than errors.
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Store {
    /// Opens a pool. Fails when the database cannot be reached within the
    /// connection timeout.
    pub fn connect(url: &DatabaseUrl, options: &PoolOptions) -> Result<Self, StoreError> {
        let pools = match url {
            DatabaseUrl::Postgres(raw) => {
                // libpq initializes OpenSSL on its first TLS handshake, and
                // OpenSSL then frees its state in an exit handler. The pool
                // opens connections on threads of its own, so a command
                // that ends while one is being opened (`beacon migrate`
                // right after its migrations, as the pool refills) had
                // that handler free the state under the handshake: a
                // segfault at exit. Initialized here first, without the
                // exit handler, OpenSSL's state lives as long as the
                // process does.
                openssl_sys::init();
                let raw = with_connect_timeout(raw, options.connection_timeout);
                let pool = Pool::builder()
                    .max_size(options.max_size.max(1))
                    .min_idle(Some(1))
                    .connection_timeout(options.connection_timeout)
                    .build(ConnectionManager::<PgConnection>::new(raw))
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Pools::Pg(pool)
            }
            DatabaseUrl::SqliteFile(_) | DatabaseUrl::SqliteMemory => {
                let (target, size) = match url {
                    DatabaseUrl::SqliteFile(path) => {
                        (path.to_string_lossy().into_owned(), options.max_size.max(1))
                    }
                    // Every connection to ":memory:" is a database of its own,
                    // so the pool holds exactly one.
                    _ => (":memory:".to_owned(), 1),
                };
                let pool = Pool::builder()
                    .max_size(size)
                    .min_idle(Some(1))
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connection_timeout(options.connection_timeout)
                    .connection_customizer(Box::new(SqlitePragmas))
                    .build(ConnectionManager::<SqliteConnection>::new(target))
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Pools::Sqlite(pool)
            }
        };
        Ok(Self {
            pools: std::sync::Arc::new(pools),
            known: std::sync::Arc::new(crate::known::KnownSessions::new(
                crate::known::DEFAULT_CAPACITY,
            )),
            sqlite_writes: std::sync::Arc::default(),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match *self.pools {
            Pools::Pg(_) => Backend::Postgres,
            Pools::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies pending embedded migrations; returns the versions applied.
    pub fn run_migrations(&self) -> Result<Vec<String>, StoreError> {
        let applied = match &*self.pools {
            Pools::Pg(pool) => {
                let mut conn = pool.get()?;
                conn.run_pending_migrations(PG_MIGRATIONS)
                    .map_err(|e| StoreError::Migration(e.to_string()))?
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            }
            Pools::Sqlite(pool) => {
                let (_turn, mut conn) = self.sqlite_write_conn(pool)?;
                conn.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map_err(|e| StoreError::Migration(e.to_string()))?
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            }
        };
        Ok(applied)
    }

    /// Checks that the database answers a trivial query.
    pub fn ping(&self) -> Result<(), StoreError> {
        match &*self.pools {
            Pools::Pg(pool) => pool.get()?.batch_execute("SELECT 1")?,
            Pools::Sqlite(pool) => pool.get()?.batch_execute("SELECT 1")?,
        }
        Ok(())
    }
}

type SqlitePool = Pool<ConnectionManager<SqliteConnection>>;

impl Store {
    /// A connection for a SQLite write, with this store's write turn held
    /// (see [`Store::sqlite_writes`]): the turn first, then the connection,
    /// so that nothing waits for the turn while it holds a pooled
    /// connection, which would starve a one-connection pool
    /// (`sqlite::memory:`). Keep the guard until the write has committed.
    pub(crate) fn sqlite_write_conn<'s>(
        &'s self,
        pool: &SqlitePool,
    ) -> Result<
        (
            FairMutexGuard<'s, ()>,
            PooledConnection<ConnectionManager<SqliteConnection>>,
        ),
        StoreError,
    > {
        let turn = self.sqlite_writes.lock();
        Ok((turn, pool.get()?))
    }
}

/// libpq waits for a TCP connect as long as the OS does unless told
/// otherwise; bound it so an unreachable database fails fast.
fn with_connect_timeout(url: &str, timeout: Duration) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let secs = timeout.as_secs().max(1);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}connect_timeout={secs}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::mpsc;
    use std::time::Duration;

    use crate::testing::TestDatabase;
    use crate::Store;

    /// Runs `write` on another thread while this store's SQLite write turn
    /// is held: it must wait for the turn, then finish.
    fn waits_for_the_turn(store: &Store, write: impl FnOnce(&Store) + Send + 'static) {
        let turn = store.sqlite_writes.lock();
        let (done, finished) = mpsc::channel();
        let other = store.clone();
        let thread = std::thread::spawn(move || {
            write(&other);
            done.send(()).unwrap();
        });
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "a SQLite write went ahead without its turn"
        );
        drop(turn);
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("the write finishes once it has the turn");
        thread.join().unwrap();
    }

    /// A write takes its turn before its connection; nothing may wait for
    /// the turn while holding a connection, or a one-connection pool
    /// (`sqlite::memory:`) would starve: here a pass waits for the turn,
    /// and the only connection must still be free.
    #[test]
    fn a_pass_waiting_for_its_turn_holds_no_connection() {
        let db = TestDatabase::sqlite();
        db.store(); // migrated through a store of its own
        let options = crate::PoolOptions {
            max_size: 1,
            connection_timeout: Duration::from_secs(2),
        };
        let store = Store::connect(&db.url, &options).unwrap();
        store.insert_batch(&visit()).unwrap();
        let turn = store.sqlite_writes.lock();
        let other = store.clone();
        let pass = std::thread::spawn(move || other.roll_up(10).unwrap().applied);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            store.count_events().unwrap(),
            1,
            "the connection is free while the pass waits"
        );
        drop(turn);
        assert_eq!(pass.join().unwrap(), 1);
    }

    fn visit() -> Vec<beacon_model::NewEvent> {
        crate::testing::parse_events(
            r#"{"type":"visit","sessionId":"s","url":"https://site/"}"#,
            chrono::Utc::now(),
            None,
        )
    }

    #[test]
    fn every_sqlite_write_takes_the_turn() {
        let db = TestDatabase::sqlite();
        let store = db.store();
        let events = visit();
        waits_for_the_turn(&store, move |s| {
            s.insert_batch(&events).unwrap();
        });
        waits_for_the_turn(&store, |s| {
            assert_eq!(s.roll_up(10).unwrap().applied, 1);
        });
        waits_for_the_turn(&store, |s| s.rebuild_rollups().unwrap());
        waits_for_the_turn(&store, |s| {
            s.run_migrations().unwrap();
        });
    }
}
