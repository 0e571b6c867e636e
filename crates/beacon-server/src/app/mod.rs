//! Building and running the application: the object that owns the HTTP
//! server and the background work, and stops them in order.

mod http;

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use beacon_model::Limits;
use beacon_store::{Backend, PoolOptions, Store, StoreError};

use crate::alerts::Alerter;
use crate::anomaly_worker::AnomalyWorker;
use crate::buffer::{Buffer, BufferOptions, BufferStartError, BufferTasks, Keys, RedisProbe};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::enrich::{self, Enrichment};
use crate::health::DatabaseHealth;
use crate::ingest::{self, IngestOptions, Writers};
use crate::intake::Intake;
use crate::live::{self, Live};
use crate::retention::RetentionWorker;
use crate::rollups::{Roller, RollupStats};
use crate::state::AppState;
use crate::tasks::Task;

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
    /// A writer, feeder or rollup thread could not be started.
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// The thread's name.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A blocking start-up task failed to run.
    #[error("start-up task failed: {0}")]
    Task(String),
    /// The user-agent patterns or the GeoIP database could not be loaded.
    #[error("{0}")]
    Enrich(#[from] beacon_enrich::EnrichError),
    /// The Redis buffer could not be set up (a malformed URL, say; Redis
    /// being down is not an error).
    #[error("{0}")]
    Redis(#[from] BufferStartError),
}

/// How long a stopping server waits for queued alerts to be sent.
const ALERT_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// A built, bound, not yet running application.
pub struct Application {
    port: u16,
    server: Server,
    ingestor: Intake,
    /// Direct mode's writers.
    writers: Option<Writers>,
    /// Buffered mode's tasks.
    buffer: Option<BufferTasks>,
    roller: Roller,
    anomalies: AnomalyWorker,
    retention: Option<RetentionWorker>,
    /// The alert webhook's sender, finished after the anomaly worker.
    alerter: Option<Alerter>,
    /// The async tasks, stopped last, in this order.
    tasks: Vec<Task>,
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
    /// Binds the listener, opens the database (migrating unless configured
    /// not to), and starts the live metrics, the writers, the rollup worker,
    /// the anomaly worker, the retention task (with `--retention`) and the
    /// HTTP server. Port 0 picks a free port.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with the clock handlers and workers take the
    /// time from.
    pub async fn build_with_clock(config: Config, clock: SharedClock) -> Result<Self, StartError> {
        let (listener, port) = http::bind(config.bind)?;
        let store = {
            let config = config.clone();
            web::block(move || open_store(&config, !config.no_migrate))
                .await
                .map_err(|e| StartError::Task(e.to_string()))??
        };
        // Buffered mode: the live reader is registered before the warm-up
        // (see buffer/feed.rs).
        let prepared = match &config.redis_url {
            Some(url) => Some(Buffer::prepare(url.expose(), buffer_options(&config)).await?),
            None => None,
        };
        let (live, broadcaster) =
            live::start(&store, config.stream_interval, &clock, prepared.is_some()).await?;
        let health = Arc::new(DatabaseHealth::default());
        let (ingestor, writers, redis, buffer) = match prepared {
            Some(prepared) => {
                let buffer = prepared
                    .start(store.clone(), Arc::clone(&live), Arc::clone(&health))
                    .await?;
                let (appender, stats, probe, tasks) = buffer.into_parts();
                (
                    Intake::Buffered(appender, stats),
                    None,
                    Some(probe),
                    Some(tasks),
                )
            }
            None => {
                let options = ingest_options(&config, store.backend());
                let (ingestor, writers) = ingest::start(
                    store.clone(),
                    &options,
                    live::commit_sink(Arc::clone(&live), Arc::clone(&health)),
                )?;
                (
                    Intake::Direct(ingestor),
                    Some(writers),
                    None::<RedisProbe>,
                    None,
                )
            }
        };
        let rollups = Arc::new(RollupStats::default());
        let roller = Roller::start(
            store.clone(),
            config.rollup_interval,
            Arc::clone(&rollups),
            Arc::clone(&clock),
        )?;
        let alerter = match &config.alert_webhook {
            Some(url) => Some(Alerter::start(url.clone(), config.alert_backoff)?),
            None => None,
        };
        let anomalies = AnomalyWorker::start(
            store.clone(),
            config.anomaly_interval,
            Arc::clone(&live),
            Arc::clone(&clock),
            alerter.as_ref().map(Alerter::sender),
        )?;
        let retention = match config.retention {
            Some(keep) => Some(RetentionWorker::start(
                store.clone(),
                keep,
                config.retention_interval,
                Arc::clone(&clock),
            )?),
            None => None,
        };
        let salts = Arc::new(enrich::Salts::default());
        let enrichment = Arc::new(Enrichment::new(
            config.trusted_proxies.clone(),
            config.geoip_db.as_deref(),
            config.keep_bots,
            config.no_enrichment,
            Arc::clone(&salts),
        )?);
        let mut tasks = vec![broadcaster];
        tasks.push(enrich::start_salts(salts, store.clone(), Arc::clone(&clock)).await?);
        if enrichment.geoip().is_some() {
            tasks.push(enrich::watch_geoip(Arc::clone(&enrichment)));
        }
        let rate_limiter = config.rate_limit.map(|rate| {
            let (limiter, cleaner) = crate::rate_limit::start(rate);
            tasks.push(cleaner);
            limiter
        });
        let state = AppState {
            store: store.clone(),
            ingestor: ingestor.clone(),
            clock,
            limits: Limits::default(),
            live: Arc::clone(&live),
            stream_max: config.stream_max,
            read_token: config.read_token.clone(),
            rate_limiter,
            request_timeout: config.request_timeout,
            rollups,
            health,
            enrichment,
            redis,
        };
        let server = http::serve(listener, state, &config)?;
        log_started(&config, port, &store);
        Ok(Self {
            port,
            server,
            ingestor,
            writers,
            buffer,
            roller,
            anomalies,
            retention,
            alerter,
            tasks,
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
    /// commit everything queued and stop the writers, then the rollup
    /// worker, the anomaly worker and the alerts it queued (at most
    /// [`ALERT_SHUTDOWN_WAIT`]), then the async tasks (broadcaster, rate
    /// limiter cleaner).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stop = self.handle();
        let Self {
            server,
            ingestor,
            writers,
            buffer,
            roller,
            anomalies,
            retention,
            alerter,
            tasks,
            ..
        } = self;
        let signals = Task::spawn("signal listener", move |stopped| async move {
            tokio::select! {
                Some(signal) = shutdown_signal() => {
                    log::info!("{signal} received: stopping");
                    stop.stop().await;
                }
                _ = stopped => {}
            }
        });
        let served = server.await;
        // The workers (and their state) are gone; dropping the last queue
        // handle lets the writers drain the queue and stop.
        drop(ingestor);
        // Buffered mode: what Redis was handed is appended, and the batches
        // in hand are stored and acknowledged.
        if let Some(buffer) = buffer {
            buffer.stop().await;
        }
        if web::block(move || {
            if let Some(retention) = retention {
                retention.stop();
            }
            if let Some(writers) = writers {
                writers.join();
            }
            // After the writers: their last commits are rolled up too.
            roller.stop();
            anomalies.stop();
            // After the worker, the last to queue alerts: what it queued
            // is sent, within a bound.
            if let Some(alerter) = alerter {
                alerter.finish(ALERT_SHUTDOWN_WAIT);
            }
        })
        .await
        .is_err()
        {
            log::error!("could not wait for the ingest writers");
        }
        for task in tasks.into_iter().chain([signals]) {
            task.stop().await;
        }
        log::info!("stopped: every acknowledged event is committed");
        served
    }
}

/// The pipeline's settings from the configuration.
fn ingest_options(config: &Config, backend: Backend) -> IngestOptions {
    IngestOptions {
        batch_max: config.batch_max as usize,
        queue_max: config.queue_max as usize,
        writers: match backend {
            // SQLite has one writer at a time; more threads would only queue
            // on its lock.
            Backend::Sqlite => 1,
            Backend::Postgres => config.writers as usize,
        },
        ack_timeout: config.ack_timeout,
    }
}

/// The buffer's settings from the configuration.
fn buffer_options(config: &Config) -> BufferOptions {
    BufferOptions {
        keys: Keys::new(&config.redis_prefix),
        max_backlog: config.redis_max_backlog,
        batch_max: config.batch_max as usize,
        consumers: config.writers as usize,
        claim_idle: config.redis_claim_idle,
        append_timeout: config.ack_timeout,
    }
}

/// The start-up line, and the warning when reads are open to anyone.
fn log_started(config: &Config, port: u16, store: &Store) {
    log::info!(
        "beacon {} listening on http://{}:{port} with {} ({})",
        env!("CARGO_PKG_VERSION"),
        config.bind.ip(),
        store.backend().name(),
        config.database_url.masked(),
    );
    if let Some(keep) = config.retention {
        log::info!(
            "retention: events older than {} whole days are deleted (the rollups keep their figures)",
            keep.days()
        );
    }
    if let Some(url) = &config.redis_url {
        log::info!(
            "buffered mode: events go through Redis at {} (keys {}:*)",
            url.masked(),
            config.redis_prefix
        );
    }
    if config.read_token.is_none() {
        log::warn!(
            "BEACON_READ_TOKEN is not set: the read endpoints (/stream, /sessions, /events, \
             /stats/*, /top-*, /anomalies, /metrics) are open to anyone who can reach this server"
        );
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
