//! The ingest pipeline: a bounded queue in front of writer threads that
//! commit whatever is waiting in one transaction (group commit), then
//! acknowledge every request of that transaction.
//!
//! A request is answered 200 only after the transaction holding its events
//! committed. Many requests share one commit, so durability does not cost
//! throughput: while one writer commits, requests pile up, and the next
//! writer takes them all.
//!
//! A writer does only what the acknowledgement waits for: build the
//! statements, commit, answer. Joining the returned ids with the events,
//! feeding the live metrics ([`CommitSink`]) and freeing the batch happen on
//! a feeder thread, as the commits finish, while the writer commits the next
//! group.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use beacon_metrics::LiveEvent;
use beacon_model::NewEvent;
use beacon_store::{Inserted, Store, StoreError};
use tokio::sync::oneshot;

use crate::error::ApiError;

/// Called after each transaction, as the commits finish (with several
/// writers, two close commits may come in either order): with the events
/// that were new (not duplicates), as views of the batch (nothing copied),
/// or with the error when the database was unavailable. It runs on the
/// feeder thread, after the requests were answered; a slow sink holds up
/// the writers only once the feeder's small queue is full.
pub type CommitSink = Arc<SinkFn>;

type SinkFn = dyn Fn(Result<&[LiveEvent<'_>], &StoreError>) + Send + Sync;

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Most events in one transaction (a request is never split).
    pub batch_max: usize,
    /// Most events waiting for a commit.
    pub queue_max: usize,
    /// Writer threads.
    pub writers: usize,
    /// How long a request waits for its commit.
    pub ack_timeout: Duration,
}

struct Job {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// Handle to submit events; cheap to clone. When every handle is dropped the
/// writers commit what is queued and stop.
#[derive(Clone)]
pub struct Ingestor {
    tx: Sender<Job>,
    queued: Arc<AtomicUsize>,
    transactions: Arc<AtomicU64>,
    queue_max: usize,
    ack_timeout: Duration,
}

/// What a writer hands to the feeder after a transaction.
enum Outcome {
    Committed(Vec<NewEvent>, Inserted),
    Unavailable(StoreError),
}

/// Groups the feeder may hold before the writers wait for it.
const FEEDER_QUEUE: usize = 16;

/// The writer threads and the feeder, to be joined at shutdown.
pub struct Writers {
    handles: Vec<JoinHandle<()>>,
    feeder: Option<JoinHandle<()>>,
}

impl Writers {
    /// Waits until every writer has committed the queue and stopped (which
    /// happens once every [`Ingestor`] handle is dropped), and the feeder
    /// has passed on every commit.
    pub fn join(self) {
        for handle in self.handles {
            if handle.join().is_err() {
                log::error!("an ingest writer thread panicked");
            }
        }
        // The writers' senders are gone: the feeder ends after the last
        // outcome.
        if self.feeder.is_some_and(|f| f.join().is_err()) {
            log::error!("the ingest feeder thread panicked");
        }
    }
}

fn feeder_loop(outcomes: &Receiver<Outcome>, sink: &SinkFn) {
    for outcome in outcomes {
        match outcome {
            Outcome::Committed(events, inserted) => {
                let new: Vec<LiveEvent<'_>> = inserted
                    .new_events(&events)
                    .map(|(id, e)| crate::live::live_view(id, e))
                    .collect();
                sink(Ok(&new));
            }
            Outcome::Unavailable(e) => sink(Err(&e)),
        }
    }
}

/// Starts the writers.
pub fn start(store: Store, options: &IngestOptions, sink: CommitSink) -> (Ingestor, Writers) {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let queued = Arc::new(AtomicUsize::new(0));
    let transactions = Arc::new(AtomicU64::new(0));
    let (outcomes, feed) = mpsc::sync_channel::<Outcome>(FEEDER_QUEUE);
    let feeder = std::thread::Builder::new()
        .name("beacon-feeder".into())
        .spawn(move || feeder_loop(&feed, &*sink))
        .map_err(|e| log::error!("cannot start the ingest feeder thread: {e}"))
        .ok();
    let handles = (0..options.writers.max(1))
        .map(|i| {
            let rx = Arc::clone(&rx);
            let store = store.clone();
            let outcomes = outcomes.clone();
            let queued = Arc::clone(&queued);
            let transactions = Arc::clone(&transactions);
            let batch_max = options.batch_max.max(1);
            std::thread::Builder::new()
                .name(format!("beacon-writer-{i}"))
                .spawn(move || {
                    let writer = Writer {
                        store: &store,
                        sink: &outcomes,
                        transactions: &transactions,
                    };
                    writer_loop(&rx, &writer, &queued, batch_max);
                })
        })
        .filter_map(|spawned| match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                log::error!("cannot start an ingest writer thread: {e}");
                None
            }
        })
        .collect();
    (
        Ingestor {
            tx,
            queued,
            transactions,
            queue_max: options.queue_max,
            ack_timeout: options.ack_timeout,
        },
        Writers { handles, feeder },
    )
}

impl Ingestor {
    /// Queues the events and waits until they are committed.
    ///
    /// Errors: [`ApiError::Overloaded`] at once when the queue is full;
    /// [`ApiError::Store`] when the commit failed; [`ApiError::AckTimeout`]
    /// when no answer came in time (the events may still commit later).
    pub async fn submit(&self, events: Vec<NewEvent>) -> Result<(), ApiError> {
        let n = events.len();
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > self.queue_max {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(ApiError::Overloaded);
        }
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Job { events, reply }).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(ApiError::ShuttingDown);
        }
        match tokio::time::timeout(self.ack_timeout, answer).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(ApiError::Store(e)),
            Ok(Err(_)) => Err(ApiError::ShuttingDown),
            Err(_) => Err(ApiError::AckTimeout),
        }
    }

    /// Events waiting for a commit right now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Ingest transactions committed since start: committed events divided
    /// by this is how many events a commit carries on average.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }
}

/// What a writer thread commits with.
struct Writer<'a> {
    store: &'a Store,
    sink: &'a SyncSender<Outcome>,
    transactions: &'a AtomicU64,
}

fn writer_loop(
    rx: &Mutex<Receiver<Job>>,
    writer: &Writer<'_>,
    queued: &AtomicUsize,
    batch_max: usize,
) {
    loop {
        let jobs = {
            let Ok(rx) = rx.lock() else { return };
            // Blocks until work arrives; fails only once every sender is gone
            // and the queue is empty: then the writer's work is done.
            let Ok(first) = rx.recv() else { return };
            let mut count = first.events.len();
            let mut jobs = vec![first];
            while count < batch_max {
                match rx.try_recv() {
                    Ok(job) => {
                        count += job.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        let count: usize = jobs.iter().map(|j| j.events.len()).sum();
        commit(writer, jobs);
        queued.fetch_sub(count, Ordering::AcqRel);
    }
}

/// Commits a group; on a failure that is not the database being away,
/// retries each request alone so one request's problem cannot fail the
/// others of its group.
fn commit(writer: &Writer<'_>, jobs: Vec<Job>) {
    let Writer { store, sink, .. } = *writer;
    // The group's events are moved (not cloned) into one batch; each reply
    // keeps its request's event count, so a failed group can be split back
    // into its requests.
    let mut all: Vec<NewEvent> = Vec::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.reply, job.events.len()));
        all.extend(job.events);
    }
    match store.insert(&all) {
        Ok(inserted) => {
            writer.transactions.fetch_add(1, Ordering::Relaxed);
            for (reply, _) in replies {
                // The client may have gone away; its events are committed
                // all the same.
                let _ = reply.send(Ok(()));
            }
            // The feeder is gone only if its thread could not start.
            let _ = sink.send(Outcome::Committed(all, inserted));
        }
        Err(e) if e.is_unavailable() || replies.len() == 1 => {
            let message = e.to_string();
            if e.is_unavailable() {
                let _ = sink.send(Outcome::Unavailable(StoreError::Unavailable(
                    message.clone(),
                )));
            }
            let mut replies = replies.into_iter();
            if let Some((first, _)) = replies.next() {
                let _ = first.send(Err(e));
            }
            for (reply, _) in replies {
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            }
        }
        Err(e) => {
            log::warn!(
                "a group of {} requests failed to commit ({e}); retrying them one by one",
                replies.len()
            );
            let mut events = all.into_iter();
            for (reply, n) in replies {
                let job = Job {
                    events: events.by_ref().take(n).collect(),
                    reply,
                };
                commit(writer, vec![job]);
            }
        }
    }
}
