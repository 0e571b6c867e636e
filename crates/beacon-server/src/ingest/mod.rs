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
//! feeding the live metrics (the sink given to [`start`]) and freeing the
//! batch happen on a feeder thread, as the commits finish, while the writer
//! commits the next group.
//!
//! The pipeline commits through [`Committer`], which [`Store`] implements;
//! its unit tests run it against an in-memory one.

mod writer;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use beacon_model::NewEvent;
use beacon_store::{Inserted, Store, StoreError};
use tokio::sync::oneshot;

use crate::tasks::spawn_thread;
use crate::StartError;

/// What the pipeline commits to: one call, one transaction.
pub trait Committer: Clone + Send + 'static {
    /// What a commit tells about the events it stored; handed to the sink
    /// with the batch.
    type Receipt: Send + 'static;
    /// Why a commit failed.
    type Error: CommitError;

    /// Stores `events` in one transaction: all of them, or none.
    fn commit(&self, events: &[NewEvent]) -> Result<Self::Receipt, Self::Error>;
}

/// A failed commit, as the pipeline needs to tell them apart.
pub trait CommitError: std::error::Error + Send + 'static {
    /// True when the database, not the data, is the problem: retrying the
    /// group's requests one by one would fail the same way.
    fn is_unavailable(&self) -> bool;

    /// The same failure, for another request of the failed group (and for
    /// the sink), so that the errors need not be `Clone`. Called only on
    /// unavailable errors: a group that failed otherwise is retried one
    /// request at a time, and each gets its own error.
    fn for_another_request(&self) -> Self;
}

impl Committer for Store {
    type Receipt = Inserted;
    type Error = StoreError;

    fn commit(&self, events: &[NewEvent]) -> Result<Inserted, StoreError> {
        self.insert(events)
    }
}

impl CommitError for StoreError {
    fn is_unavailable(&self) -> bool {
        StoreError::is_unavailable(self)
    }

    fn for_another_request(&self) -> Self {
        match self {
            Self::Unavailable(message) => Self::Unavailable(message.clone()),
            // Not reached (see the trait); the text is what matters then.
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// A committed group, as the sink sees it: the events of the batch and what
/// the commit returned about them (nothing copied).
pub struct Committed<'a, R> {
    /// The group's events, in submission order.
    pub events: &'a [NewEvent],
    /// What [`Committer::commit`] returned.
    pub receipt: &'a R,
}

/// Why a submission was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum IngestError<E = StoreError> {
    /// The queue is full.
    #[error("ingest queue is full, retry later")]
    Overloaded,
    /// The commit did not complete within the acknowledgement timeout (the
    /// events may still commit later).
    #[error("the database did not confirm the write in time, retry later")]
    AckTimeout,
    /// The writers are stopping or gone.
    #[error("server is shutting down, retry later")]
    ShuttingDown,
    /// The commit failed.
    #[error(transparent)]
    Store(E),
}

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

/// A request waiting in the queue.
struct Job<E> {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<(), E>>,
}

/// Handle to submit events; cheap to clone. When every handle is dropped the
/// writers commit what is queued and stop.
pub struct Ingestor<E = StoreError> {
    tx: Sender<Job<E>>,
    queued: Arc<AtomicUsize>,
    transactions: Arc<AtomicU64>,
    queue_max: usize,
    ack_timeout: Duration,
}

impl<E> Clone for Ingestor<E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            queued: Arc::clone(&self.queued),
            transactions: Arc::clone(&self.transactions),
            queue_max: self.queue_max,
            ack_timeout: self.ack_timeout,
        }
    }
}

/// Groups the feeder may hold before the writers wait for it.
const FEEDER_QUEUE: usize = 16;

/// The writer threads and the feeder, to be joined at shutdown.
pub struct Writers {
    handles: Vec<JoinHandle<()>>,
    feeder: JoinHandle<()>,
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
        if self.feeder.join().is_err() {
            log::error!("the ingest feeder thread panicked");
        }
    }
}

/// Starts the feeder and the writers. `sink` is called on the feeder
/// thread after each transaction, as the commits finish (with several
/// writers, two close commits may come in either order): with the
/// committed group, or with the error when the database was unavailable.
/// It runs after the requests were answered; a slow sink holds up the
/// writers only once the feeder's small queue is full.
///
/// Fails when a thread cannot be started; the threads already started are
/// stopped first.
pub fn start<C, S>(
    committer: C,
    options: &IngestOptions,
    sink: S,
) -> Result<(Ingestor<C::Error>, Writers), StartError>
where
    C: Committer,
    S: Fn(Result<Committed<'_, C::Receipt>, &C::Error>) + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Job<C::Error>>();
    let rx = Arc::new(Mutex::new(rx));
    let queued = Arc::new(AtomicUsize::new(0));
    let transactions = Arc::new(AtomicU64::new(0));
    let (outcomes, feed) = mpsc::sync_channel(FEEDER_QUEUE);
    let feeder = spawn_thread("beacon-feeder".into(), move || {
        writer::feeder_loop::<C>(&feed, &sink);
    })?;
    let mut handles = Vec::with_capacity(options.writers.max(1));
    for i in 0..options.writers.max(1) {
        let writer = writer::Writer {
            committer: committer.clone(),
            rx: Arc::clone(&rx),
            outcomes: outcomes.clone(),
            queued: Arc::clone(&queued),
            transactions: Arc::clone(&transactions),
            batch_max: options.batch_max.max(1),
        };
        match spawn_thread(format!("beacon-writer-{i}"), move || writer.run()) {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                // With the queue's sender gone, the started writers find it
                // closed and stop, and the feeder after them.
                drop((tx, outcomes));
                Writers { handles, feeder }.join();
                return Err(e);
            }
        }
    }
    Ok((
        Ingestor {
            tx,
            queued,
            transactions,
            queue_max: options.queue_max,
            ack_timeout: options.ack_timeout,
        },
        Writers { handles, feeder },
    ))
}

/// A queued request's acknowledgement, to be awaited.
struct Pending<E> {
    answer: oneshot::Receiver<Result<(), E>>,
    ack_timeout: Duration,
}

impl<E> Pending<E> {
    /// Waits for the commit, at most the acknowledgement timeout.
    async fn wait(self) -> Result<(), IngestError<E>> {
        match tokio::time::timeout(self.ack_timeout, self.answer).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(IngestError::Store(e)),
            Ok(Err(_)) => Err(IngestError::ShuttingDown),
            Err(_) => Err(IngestError::AckTimeout),
        }
    }
}

impl<E> Ingestor<E> {
    /// Queues the events and waits until they are committed.
    ///
    /// Errors: [`IngestError::Overloaded`] at once when the queue is full;
    /// [`IngestError::Store`] when the commit failed;
    /// [`IngestError::AckTimeout`] when no answer came in time (the events
    /// may still commit later).
    pub async fn submit(&self, events: Vec<NewEvent>) -> Result<(), IngestError<E>> {
        self.enqueue(events)?.wait().await
    }

    /// Queues the events, or refuses them when the queue is full.
    fn enqueue(&self, events: Vec<NewEvent>) -> Result<Pending<E>, IngestError<E>> {
        let n = events.len();
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > self.queue_max {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(IngestError::Overloaded);
        }
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Job { events, reply }).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(IngestError::ShuttingDown);
        }
        Ok(Pending {
            answer,
            ack_timeout: self.ack_timeout,
        })
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
