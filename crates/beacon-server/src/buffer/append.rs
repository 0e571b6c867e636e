//! Appending: `/track` hands its events to one batcher task, which sends
//! everything waiting as one pipeline of `XADD`s and answers each request
//! when Redis has accepted its events. Requests share round trips the way
//! the direct path's requests share commits: while one pipeline is on the
//! wire, the next requests pile up and go together in the next.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use beacon_model::NewEvent;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::entry::{self, VERSION};
use super::{BufferOptions, BufferStats, Keys, PIPELINE_MAX_EVENTS};
use crate::tasks::Task;

/// Pipelines on the wire at once (one connection, multiplexed). With
/// `appendfsync always` every round trip waits for an fsync of Redis's,
/// so requests must not also wait for a free pipeline: 16 did better than
/// 4 and no worse than 64 (bench/redis.sh's buffered peak, 2026-12-07).
const IN_FLIGHT: usize = 16;
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
        let entries = events.iter().map(entry::encode).collect();
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Job { entries, reply })
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

/// Starts the batcher; returns the handle for /track and the task.
pub(super) fn start(
    conn: ConnectionManager,
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
        run(rx, conn, keys, stats, stop)
    });
    (appender, task)
}

/// Takes what is waiting, sends it, repeats; at `stop`, sends what is left
/// and waits for the pipelines on the wire.
async fn run(
    mut rx: mpsc::Receiver<Job>,
    conn: ConnectionManager,
    keys: Keys,
    stats: Arc<BufferStats>,
    mut stop: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut stopping = false;
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let first = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                job = rx.recv() => job,
                _ = &mut stop => {
                    stopping = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        let mut count = first.entries.len();
        let mut jobs = vec![first];
        while count < PIPELINE_MAX_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.entries.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (conn, keys, stats) = (conn.clone(), keys.clone(), Arc::clone(&stats));
        tokio::spawn(async move {
            send(conn, &keys, &stats, jobs, count).await;
            drop(permit);
        });
    }
    // Every pipeline on the wire has answered once every permit is back.
    let _ = permits.acquire_many(IN_FLIGHT as u32).await;
}

/// One pipeline for the jobs' events; answers each job.
async fn send(
    mut conn: ConnectionManager,
    keys: &Keys,
    stats: &BufferStats,
    jobs: Vec<Job>,
    count: usize,
) {
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
}
