//! Building and running the application: the object that owns the HTTP
//! server and the background tasks, and stops them in order.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use beacon_model::Limits;
use beacon_store::{Backend, PoolOptions, Store, StoreError};

use crate::config::Config;
use crate::ingest::{self, IngestOptions, Ingestor, Writers};
use crate::routes;
use crate::state::AppState;

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A blocking start-up task failed to run.
    #[error("start-up task failed: {0}")]
    Task(String),
}

/// A built, bound, not yet running application.
pub struct Application {
    port: u16,
    server: Server,
    ingestor: Ingestor,
    writers: Writers,
    store: Store,
}

/// Opens the database and applies pending migrations.
pub fn open_store(config: &Config, migrate: bool) -> Result<Store, StoreError> {
    let options = PoolOptions {
        max_size: config.pool_size,
        connection_timeout: config.db_timeout,
    };
    let store = Store::connect(&config.database_url, &options)?;
    if migrate {
        let applied = store.run_migrations()?;
        if !applied.is_empty() {
            log::info!(
                "applied {} migration(s): {}",
                applied.len(),
                applied.join(", ")
            );
        }
    }
    Ok(store)
}

impl Application {
    /// Opens the database (migrating unless configured not to), starts the
    /// writers and binds the listener. Port 0 picks a free port.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let listener = TcpListener::bind(config.bind).map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?
            .port();

        let store = {
            let config = config.clone();
            web::block(move || open_store(&config, !config.no_migrate))
                .await
                .map_err(|e| StartError::Task(e.to_string()))??
        };

        let writers = match store.backend() {
            // SQLite has one writer at a time; more threads would only queue
            // on its lock.
            Backend::Sqlite => 1,
            Backend::Postgres => config.writers as usize,
        };
        let options = IngestOptions {
            batch_max: config.batch_max as usize,
            queue_max: config.queue_max as usize,
            writers,
            ack_timeout: config.ack_timeout,
        };
        let sink: ingest::CommitSink = Arc::new(|_events| {});
        let (ingestor, writers) = ingest::start(store.clone(), &options, sink);

        let state = web::Data::new(AppState {
            store: store.clone(),
            ingestor: ingestor.clone(),
            limits: Limits::default(),
        });
        let ingest_origins = config.allowed_origins.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(|cfg| routes::configure(cfg, &ingest_origins))
        })
        .shutdown_timeout(10)
        .client_request_timeout(Duration::from_secs(10))
        .client_disconnect_timeout(Duration::from_secs(2));
        if config.http_workers > 0 {
            server = server.workers(config.http_workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?
            .run();

        log::info!(
            "beacon {} listening on http://{}:{port} with {} ({})",
            env!("CARGO_PKG_VERSION"),
            config.bind.ip(),
            store.backend().name(),
            config.database_url.masked(),
        );
        Ok(Self {
            port,
            server,
            ingestor,
            writers,
            store,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store the application writes to (for tests and tools).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A handle that stops the server gracefully, as SIGTERM does.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM (or [`Application::handle`]`.stop`),
    /// then stops in order: stop accepting and finish in-flight requests,
    /// commit everything queued, stop the writers.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            ingestor,
            writers,
            ..
        } = self;
        let served = server.await;
        // The workers (and their state) are gone; dropping the last queue
        // handle lets the writers drain the queue and stop.
        drop(ingestor);
        if web::block(move || writers.join()).await.is_err() {
            log::error!("could not wait for the ingest writers");
        }
        log::info!("stopped: every acknowledged event is committed");
        served
    }
}
