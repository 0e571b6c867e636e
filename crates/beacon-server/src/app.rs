//! Building and running the application: the object that owns the HTTP
//! server and the background tasks, and stops them in order.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use beacon_model::Limits;
use beacon_store::{Backend, PoolOptions, Store, StoreError};

use beacon_metrics::LiveConfig;

use crate::config::Config;
use crate::ingest::{self, IngestOptions, Ingestor, Writers};
use crate::live::{self, Live};
use crate::rollups::{Roller, RollupStats};
use crate::routes::{self, Extras, Origins};
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
    roller: Roller,
    store: Store,
    live: Arc<Live>,
}

/// Stops a running [`Application`] gracefully, as SIGTERM does.
#[derive(Clone)]
pub struct StopHandle {
    server: actix_web::dev::ServerHandle,
    live: Arc<Live>,
}

impl StopHandle {
    /// Closes the streams (so they do not hold up shutdown), stops accepting,
    /// finishes in-flight requests; [`Application::run_until_stopped`] then
    /// commits the queue and returns.
    pub async fn stop(&self) {
        self.live.close_streams();
        self.server.stop(true).await;
    }
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
        let live = Arc::new(Live::new(LiveConfig::default(), config.stream_interval));
        {
            let (store, live) = (store.clone(), Arc::clone(&live));
            web::block(move || live::warm_up(&store, &live))
                .await
                .map_err(|e| StartError::Task(e.to_string()))??;
        }
        let sink: ingest::CommitSink = {
            let live = Arc::clone(&live);
            Arc::new(move |outcome| match outcome {
                Ok(events) => {
                    live.set_stale(false);
                    live.record(events);
                }
                Err(_) => live.set_stale(true),
            })
        };
        let (ingestor, writers) = ingest::start(store.clone(), &options, sink);
        let rollup_stats = Arc::new(RollupStats::default());
        let roller = Roller::start(
            store.clone(),
            config.rollup_interval,
            Arc::clone(&rollup_stats),
        )
        .map_err(|e| StartError::Task(format!("cannot start the rollup worker: {e}")))?;
        actix_web::rt::spawn(live::run_broadcaster(
            Arc::clone(&live),
            store.clone(),
            config.stream_interval,
        ));
        let rate_limiter = config.rate_limit.map(|rate| {
            let limiter = Arc::new(crate::state::new_rate_limiter(rate));
            let cleaner = Arc::clone(&limiter);
            actix_web::rt::spawn(async move {
                // Forget addresses whose bucket is full again, so memory
                // follows the active clients, not every client ever seen.
                let mut every = tokio::time::interval(Duration::from_secs(60));
                loop {
                    every.tick().await;
                    cleaner.retain_recent();
                    cleaner.shrink_to_fit();
                }
            });
            limiter
        });

        let state = web::Data::new(AppState {
            store: store.clone(),
            ingestor: ingestor.clone(),
            limits: Limits::default(),
            live: Arc::clone(&live),
            stream_max: config.stream_max,
            read_token: config.read_token.clone(),
            rate_limiter,
            request_timeout: config.request_timeout,
            rollups: rollup_stats,
        });
        let origins = Origins {
            ingest: config.allowed_origins.clone(),
            dashboard: config.dashboard_origins.clone(),
        };
        let extras = Extras {
            bench_routes: config.bench_routes,
        };
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(Limits::default().max_body_bytes))
                .configure(|cfg| routes::configure(cfg, &origins, &extras))
        })
        // Signals are handled in `run_until_stopped`, which closes the
        // streams first: open streams would otherwise hold up the graceful
        // stop for its whole timeout.
        .disable_signals()
        .shutdown_timeout(10)
        .client_request_timeout(config.request_timeout)
        .client_disconnect_timeout(Duration::from_secs(2));
        let workers = if config.http_workers > 0 {
            config.http_workers
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        };
        server = server
            .workers(workers)
            .max_connections((config.max_connections as usize).div_ceil(workers));
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
        if config.read_token.is_none() {
            log::warn!(
                "BEACON_READ_TOKEN is not set: the read endpoints (/stream, /sessions, /events, \
                 /stats/*, /top-*, /metrics) are open to anyone who can reach this server"
            );
        }
        Ok(Self {
            port,
            server,
            ingestor,
            writers,
            roller,
            store,
            live,
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

    /// A handle that stops the application gracefully, as SIGTERM does.
    pub fn handle(&self) -> StopHandle {
        StopHandle {
            server: self.server.handle(),
            live: Arc::clone(&self.live),
        }
    }

    /// Serves until SIGINT/SIGTERM (or [`Application::handle`]`.stop`),
    /// then stops in order: stop accepting and finish in-flight requests,
    /// commit everything queued, stop the writers.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stop = self.handle();
        let Self {
            server,
            ingestor,
            writers,
            roller,
            ..
        } = self;
        actix_web::rt::spawn(async move {
            if let Some(signal) = shutdown_signal().await {
                log::info!("{signal} received: stopping");
                stop.stop().await;
            }
        });
        let served = server.await;
        // The workers (and their state) are gone; dropping the last queue
        // handle lets the writers drain the queue and stop.
        drop(ingestor);
        if web::block(move || {
            writers.join();
            // After the writers: their last commits are rolled up too.
            roller.stop();
        })
        .await
        .is_err()
        {
            log::error!("could not wait for the ingest writers");
        }
        log::info!("stopped: every acknowledged event is committed");
        served
    }
}

/// Resolves with the signal's name on SIGINT or SIGTERM; `None` if signals
/// cannot be listened to.
async fn shutdown_signal() -> Option<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot listen for SIGTERM/SIGINT");
            return None;
        };
        tokio::select! {
            _ = term.recv() => Some("SIGTERM"),
            _ = int.recv() => Some("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
    }
}
