//! Appending: `/track` hands its events to one batcher task, which sends
//! what is waiting as pipelines of `XADD`s and answers each request when
//! Redis has accepted its events. Requests share round trips the way the
//! direct path's requests share commits: while pipelines are on the wire,
//! the next requests pile up and go together in the next.
//!
//! Each pipeline on the wire has a connection of its own. Redis reads at
//! most 16 KiB from a connection per turn of its event loop, and with
//! `appendfsync always` every turn waits for an fsync: one connection
//! carries about 35 events per fsync however long its pipeline, so the
//! throughput grows with the connections, not with the pipeline's length
//! (redis-benchmark, the same entries, `appendfsync always`: 16,600 XADDs/s
//! with 1 client, 60,300 with 16; bench/redis.sh, 2026-12-07).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use beacon_model::NewEvent;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use super::entry::{self, VERSION};
use super::{BufferOptions, BufferStats, Keys, PIPELINE_MAX_EVENTS};
use crate::tasks::Task;

/// Pipelines on the wire at once, each on its own connection.
pub(super) const IN_FLIGHT: usize = 16;
/// A pipeline takes requests until it holds this many bytes of entries
/// (always at least one request): two of Redis's reads, so that the
/// requests waiting spread over the connections instead of queueing on one.
const PIPELINE_MAX_BYTES: usize = 32 * 1024;
/// Requests waiting for the batcher; beyond it /track answers 503.
const QUEUE: usize = 16_384;

/// Why events were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The backlog (events accepted, not yet stored) is at its limit.
    #[error("the backlog of unstored events is full, retry later")]
    Backlog,
    /// Redis did not accept the events (down, or no answer in time).
    #[error("the ingest buffer is unavailable, retry later")]
    Unavailable,
    /// The server is stopping.
    #[error("server is shutting down, retry later")]
    ShuttingDown,
}

/// A request's events, encoded, and where its answer goes.
struct Job {
    entries: Vec<String>,
    bytes: usize,
    reply: oneshot::Sender<Result<(), AppendError>>,
}

/// Hands events to Redis; cheap to clone.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Job>,
    stats: Arc<BufferStats>,
    max_backlog: u64,
    timeout: Duration,
}

impl Appender {
    /// Appends the events to the stream and waits until Redis accepted
    /// them. Refused at once when Redis was found down, or when the backlog
    /// would pass its limit.
    pub async fn submit(&self, events: Vec<NewEvent>) -> Result<(), AppendError> {
        if !self.stats.redis_up() {
            return Err(AppendError::Unavailable);
        }
        if self.stats.backlog() + events.len() as u64 > self.max_backlog {
            return Err(AppendError::Backlog);
        }
        // Encoded here, on the request's worker, not on the batcher.
        let entries: Vec<String> = events.iter().map(entry::encode).collect();
        let bytes = entries.iter().map(String::len).sum();
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Job {
                entries,
                bytes,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => AppendError::Backlog,
                mpsc::error::TrySendError::Closed(_) => AppendError::ShuttingDown,
            })?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(AppendError::ShuttingDown),
            Err(_) => Err(AppendError::Unavailable),
        }
    }

    /// The configured backlog limit.
    pub fn max_backlog(&self) -> u64 {
        self.max_backlog
    }
}

/// Starts the batcher on its [`IN_FLIGHT`] connections; returns the handle
/// for /track and the task.
pub(super) fn start(
    conns: Vec<ConnectionManager>,
    options: &BufferOptions,
    stats: Arc<BufferStats>,
) -> (Appender, Task) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let appender = Appender {
        tx,
        stats: Arc::clone(&stats),
        max_backlog: options.max_backlog,
        timeout: options.append_timeout,
    };
    let keys = options.keys.clone();
    let task = Task::spawn("buffer batcher", move |stop| {
        run(rx, conns, keys, stats, stop)
    });
    (appender, task)
}

/// Takes what is waiting, sends it on a free connection, repeats; at
/// `stop`, sends what is left and waits for the pipelines on the wire.
async fn run(
    mut rx: mpsc::Receiver<Job>,
    conns: Vec<ConnectionManager>,
    keys: Keys,
    stats: Arc<BufferStats>,
    mut stop: oneshot::Receiver<()>,
) {
    let total = conns.len();
    let (free_tx, mut free) = mpsc::channel(total.max(1));
    for conn in conns {
        let _ = free_tx.try_send(conn);
    }
    let mut stopping = false;
    loop {
        let Some(conn) = free.recv().await else { break };
        let first = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                job = rx.recv() => job,
                _ = &mut stop => {
                    stopping = true;
                    rx.close();
                    let _ = free_tx.try_send(conn);
                    continue;
                }
            }
        };
        let Some(first) = first else {
            let _ = free_tx.try_send(conn);
            break;
        };
        let mut count = first.entries.len();
        let mut bytes = first.bytes;
        let mut jobs = vec![first];
        while count < PIPELINE_MAX_EVENTS && bytes < PIPELINE_MAX_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.entries.len();
                    bytes += job.bytes;
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (keys, stats, free_tx) = (keys.clone(), Arc::clone(&stats), free_tx.clone());
        tokio::spawn(async move {
            let conn = send(conn, &keys, &stats, jobs, count).await;
            let _ = free_tx.send(conn).await;
        });
    }
    // Every pipeline on the wire has answered once every connection is back.
    let mut back = free.len();
    while back < total {
        if free.recv().await.is_none() {
            break;
        }
        back += 1;
    }
}

/// One pipeline for the jobs' events; answers each job and gives the
/// connection back.
async fn send(
    mut conn: ConnectionManager,
    keys: &Keys,
    stats: &BufferStats,
    jobs: Vec<Job>,
    count: usize,
) -> ConnectionManager {
    let mut pipe = redis::pipe();
    for job in &jobs {
        for e in &job.entries {
            pipe.cmd("XADD")
                .arg(&keys.stream)
                .arg("*")
                .arg("v")
                .arg(VERSION)
                .arg("e")
                .arg(e)
                .ignore();
        }
    }
    let outcome: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
    stats.observe_redis(&outcome);
    let answer = match outcome {
        Ok(()) => {
            stats
                .appended_since
                .fetch_add(count as u64, Ordering::Relaxed);
            stats.appended.fetch_add(count as u64, Ordering::Relaxed);
            Ok(())
        }
        Err(_) => Err(AppendError::Unavailable),
    };
    for job in jobs {
        let answer = match &answer {
            Ok(()) => Ok(()),
            Err(_) => Err(AppendError::Unavailable),
        };
        // A request that timed out has gone: its outcome stands anyway.
        let _ = job.reply.send(answer);
    }
    conn
}
