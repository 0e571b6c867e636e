//! The Redis Streams buffer between ingestion and storage (buffered mode,
//! `--redis-url`).
//!
//! ```text
//! /track --> append.rs: pipelined XADDs for the waiting requests, on 16 connections --> 200
//! stream --XREADGROUP (group `<prefix>:drain`)--> drain.rs --> Store::insert --> XACK
//! stream --XREAD (every instance, no group)--> feed.rs --> live metrics (one global view)
//! monitor.rs: backlog, oldest unstored entry, Redis health; XTRIM below what is unstored
//! ```
//!
//! One entry per event (`entry.rs`), so that the stream's own counters
//! are the backlog in events, and a rejected event is dead-lettered alone.
//! An entry is removed only by the monitor's `XTRIM MINID`, below the
//! oldest entry that is pending, undelivered, or not yet read by a live
//! reader: never before it was stored. The keys are named by
//! `--redis-prefix` ([`Keys`]).

mod append;
mod drain;
pub mod entry;
mod feed;
mod monitor;
mod pos;
mod reply;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;
use redis::Client;

pub use append::{AppendError, Appender};
pub use pos::StreamPos;

use crate::health::DatabaseHealth;
use crate::live::Live;
use crate::tasks::Task;
use beacon_store::Store;

/// Most events in one XADD pipeline, and in one drained batch by default.
const PIPELINE_MAX_EVENTS: usize = 4096;

/// The Redis keys of one deployment, all named from `--redis-prefix`.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The stream of accepted, not yet trimmed events.
    pub stream: String,
    /// The consumer group that stores them.
    pub group: String,
    /// The stream of entries the database refused for good.
    pub dead: String,
    /// A hash: live reader (instance) -> its position and when it said so.
    pub readers: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            stream: format!("{prefix}:events"),
            group: format!("{prefix}:drain"),
            dead: format!("{prefix}:dead"),
            readers: format!("{prefix}:live-readers"),
        }
    }
}

/// The buffer's settings.
#[derive(Debug, Clone)]
pub struct BufferOptions {
    /// Keys of this deployment.
    pub keys: Keys,
    /// Most events accepted and not yet stored; beyond it /track answers 503.
    pub max_backlog: u64,
    /// Most events in one drained batch (one transaction).
    pub batch_max: usize,
    /// Drain consumers of this instance (each commits its own batches).
    pub consumers: usize,
    /// How long an entry stays with a consumer that does not acknowledge it
    /// before another claims it.
    pub claim_idle: Duration,
    /// How long a request waits for Redis to accept its events.
    pub append_timeout: Duration,
}

/// What the buffer has done, for `/metrics` and `/up`.
#[derive(Debug, Default)]
pub struct BufferStats {
    redis_up: AtomicBool,
    /// Events accepted, not yet stored, at the last measurement.
    backlog: AtomicU64,
    /// Events this instance appended since the last measurement.
    appended_since: AtomicU64,
    /// Milliseconds since the epoch of the oldest unstored entry; 0: none.
    oldest_unstored_ms: AtomicU64,
    drained: AtomicU64,
    redelivered: AtomicU64,
    dead_letters: AtomicU64,
    appended: AtomicU64,
    transactions: AtomicU64,
}

impl BufferStats {
    /// True while the last Redis call succeeded.
    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    /// Notes a Redis call's outcome; logs the transitions once.
    pub(crate) fn observe_redis<T, E: std::fmt::Display>(&self, outcome: &Result<T, E>) {
        match outcome {
            Ok(_) => {
                if !self.redis_up.swap(true, Ordering::AcqRel) {
                    log::info!("Redis is reachable");
                }
            }
            Err(e) => {
                if self.redis_up.swap(false, Ordering::AcqRel) {
                    log::warn!("Redis is unavailable; /track answers 503 until it is back: {e}");
                }
            }
        }
    }

    /// Events accepted (by any instance) and not yet stored: the last
    /// measurement plus what this instance appended since.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed) + self.appended_since.load(Ordering::Relaxed)
    }

    /// Age of the oldest unstored event at `now_ms`, in seconds (0: none).
    pub fn oldest_unstored_age(&self, now_ms: u64) -> f64 {
        match self.oldest_unstored_ms.load(Ordering::Relaxed) {
            0 => 0.0,
            at => now_ms.saturating_sub(at) as f64 / 1000.0,
        }
    }

    /// Events this instance's consumers stored (new or already there).
    pub fn drained(&self) -> u64 {
        self.drained.load(Ordering::Relaxed)
    }

    /// Entries this instance took over from a consumer that did not
    /// acknowledge them in time, or delivered again after a failed commit.
    pub fn redelivered(&self) -> u64 {
        self.redelivered.load(Ordering::Relaxed)
    }

    /// Entries this instance moved to the dead-letter stream.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }

    /// Batches this instance's consumers committed.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Events this instance appended to the stream.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }
}

/// Why the buffer could not start.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct BufferStartError(#[from] redis::RedisError);

/// A connection that reconnects by itself. `blocking`: for a reader that
/// blocks in Redis (its own socket, with a response timeout longer than
/// the block).
pub(crate) async fn connect(
    client: &Client,
    blocking: Option<Duration>,
) -> redis::RedisResult<ConnectionManager> {
    let response = blocking.map_or(Duration::from_secs(2), |block| {
        block + Duration::from_secs(5)
    });
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    // Lazy: a Redis that is down at start is retried by every call, and the
    // application starts (and says 503) rather than refusing to.
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

/// The running buffer: the appender handle for /track and the tasks to stop
/// at shutdown.
pub struct Buffer {
    /// Hands events to Redis.
    pub appender: Appender,
    /// What it has done.
    pub stats: Arc<BufferStats>,
    control: ConnectionManager,
    tasks: BufferTasks,
}

/// The buffer's tasks, stopped in order at shutdown.
pub struct BufferTasks {
    batcher: Task,
    consumers: Vec<Task>,
    feed: Task,
    monitor: Task,
}

impl BufferTasks {
    /// Stops in order: the appender's batcher sends what it holds (the HTTP
    /// server is stopped first, so nothing new arrives), the consumers
    /// finish, store and acknowledge their batches in hand, then the live
    /// feed and the monitor stop.
    pub async fn stop(self) {
        self.batcher.stop().await;
        for consumer in self.consumers {
            consumer.stop().await;
        }
        self.feed.stop().await;
        self.monitor.stop().await;
    }
}

/// A connected buffer whose tasks are not started yet: see
/// [`Prepared::start`].
pub struct Prepared {
    client: Client,
    control: ConnectionManager,
    instance: String,
    options: BufferOptions,
    stats: Arc<BufferStats>,
}

impl Buffer {
    /// Connects, creates the group if needed, and registers this
    /// instance's live reader at the start of the stream, so that nothing
    /// it has not read is trimmed. The live state's warm-up from the
    /// database must come after this, and [`Prepared::start`] after the
    /// warm-up (see `feed.rs`). A Redis that does not answer is not an
    /// error: the application starts, answers 503 on /track, and the
    /// monitor notices when Redis is back.
    pub async fn prepare(url: &str, options: BufferOptions) -> Result<Prepared, BufferStartError> {
        let client = Client::open(url)?;
        let instance = uuid::Uuid::now_v7().simple().to_string();
        let stats = Arc::new(BufferStats::default());
        let control = connect(&client, None).await?;
        let ready = monitor::prepare(&control, &options.keys, &instance).await;
        stats.observe_redis(&ready);
        if let Err(e) = &ready {
            log::warn!("Redis is not reachable at start; retrying in the background: {e}");
        }
        Ok(Prepared {
            client,
            control,
            instance,
            options,
            stats,
        })
    }
}

impl Prepared {
    /// Starts the batcher, the consumers, the live feed and the monitor.
    pub async fn start(
        self,
        store: Store,
        live: Arc<Live>,
        health: Arc<DatabaseHealth>,
    ) -> Result<Buffer, BufferStartError> {
        let Self {
            client,
            control,
            instance,
            options,
            stats,
        } = self;
        let mut appending = Vec::with_capacity(append::IN_FLIGHT);
        for _ in 0..append::IN_FLIGHT {
            appending.push(connect(&client, None).await?);
        }
        let (appender, batcher) = append::start(appending, &options, Arc::clone(&stats));
        let mut consumers = Vec::new();
        for i in 0..options.consumers.max(1) {
            let consumer = drain::Consumer {
                conn: connect(&client, Some(drain::BLOCK)).await?,
                control: control.clone(),
                name: format!("{instance}-{i}"),
                options: options.clone(),
                store: store.clone(),
                live: Arc::clone(&live),
                health: Arc::clone(&health),
                stats: Arc::clone(&stats),
            };
            consumers.push(Task::spawn("buffer consumer", move |stop| {
                consumer.run(stop)
            }));
        }
        let feed = {
            let reader = feed::Reader {
                conn: connect(&client, Some(feed::BLOCK)).await?,
                control: control.clone(),
                keys: options.keys.clone(),
                instance: instance.clone(),
                live: Arc::clone(&live),
            };
            Task::spawn("buffer live feed", move |stop| reader.run(stop))
        };
        let monitor = {
            let monitor = monitor::Monitor {
                conn: control.clone(),
                keys: options.keys.clone(),
                instance,
                stats: Arc::clone(&stats),
                claim_idle: options.claim_idle,
            };
            Task::spawn("buffer monitor", move |stop| monitor.run(stop))
        };
        Ok(Buffer {
            appender,
            stats,
            control,
            tasks: BufferTasks {
                batcher,
                consumers,
                feed,
                monitor,
            },
        })
    }
}

impl Buffer {
    /// Splits into the parts the application keeps apart.
    pub fn into_parts(self) -> (Appender, Arc<BufferStats>, RedisProbe, BufferTasks) {
        (
            self.appender,
            Arc::clone(&self.stats),
            RedisProbe {
                conn: self.control,
                stats: self.stats,
            },
            self.tasks,
        )
    }
}

/// Asks Redis whether it answers, for `/up`.
#[derive(Clone)]
pub struct RedisProbe {
    conn: ConnectionManager,
    stats: Arc<BufferStats>,
}

impl RedisProbe {
    /// True when Redis answers a PING within a second.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        let pong = tokio::time::timeout(
            Duration::from_secs(1),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .unwrap_or_else(|_| Err((redis::ErrorKind::Io, "no answer in time").into()));
        self.stats.observe_redis(&pong);
        pong.is_ok()
    }

    /// What the buffer has done.
    pub fn stats(&self) -> &BufferStats {
        &self.stats
    }
}
