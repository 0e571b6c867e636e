//! The writer threads' loop (take what is queued, commit it as one group,
//! answer) and the feeder's.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use beacon_model::NewEvent;
use tokio::sync::oneshot;

use super::{CommitError, Committed, Committer, Job};

/// What a writer hands to the feeder after a transaction.
pub(super) enum Outcome<C: Committer> {
    Committed(Vec<NewEvent>, C::Receipt),
    Unavailable(C::Error),
}

/// Passes every outcome to the sink, until the writers are gone.
pub(super) fn feeder_loop<C: Committer>(
    outcomes: &Receiver<Outcome<C>>,
    sink: &impl Fn(Result<Committed<'_, C::Receipt>, &C::Error>),
) {
    for outcome in outcomes {
        match outcome {
            Outcome::Committed(events, receipt) => sink(Ok(Committed {
                events: &events,
                receipt: &receipt,
            })),
            Outcome::Unavailable(e) => sink(Err(&e)),
        }
    }
}

/// One writer thread's share of the pipeline.
pub(super) struct Writer<C: Committer> {
    pub(super) committer: C,
    pub(super) rx: Arc<Mutex<Receiver<Job<C::Error>>>>,
    pub(super) outcomes: SyncSender<Outcome<C>>,
    pub(super) queued: Arc<AtomicUsize>,
    pub(super) transactions: Arc<AtomicU64>,
    pub(super) batch_max: usize,
}

impl<C: Committer> Writer<C> {
    /// Commits groups until every sender is gone and the queue is empty.
    pub(super) fn run(self) {
        while let Some(jobs) = self.next_group() {
            self.commit(jobs);
        }
    }

    /// Waits for a request, then takes whatever else is queued up to
    /// `batch_max` events (a request is never split, so the last one may
    /// carry the group past it). `None` once the queue is closed and empty.
    fn next_group(&self) -> Option<Vec<Job<C::Error>>> {
        let rx = self.rx.lock().ok()?;
        // Blocks until work arrives; fails only once every sender is gone
        // and the queue is empty: then the writer's work is done.
        let first = rx.recv().ok()?;
        let mut count = first.events.len();
        let mut jobs = vec![first];
        while count < self.batch_max {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        Some(jobs)
    }

    /// Commits a group; on a failure that is not the database being away,
    /// retries each request alone so one request's problem cannot fail the
    /// others of its group.
    fn commit(&self, jobs: Vec<Job<C::Error>>) {
        // The group's events are moved (not cloned) into one batch; each
        // reply keeps its request's event count, so a failed group can be
        // split back into its requests.
        let mut all: Vec<NewEvent> = Vec::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            replies.push((job.reply, job.events.len()));
            all.extend(job.events);
        }
        match self.committer.commit(&all) {
            Ok(receipt) => {
                self.transactions.fetch_add(1, Ordering::Relaxed);
                for (reply, n) in replies {
                    self.answer(reply, n, Ok(()));
                }
                // The feeder outlives the writers: this send fails only if
                // its thread panicked.
                let _ = self.outcomes.send(Outcome::Committed(all, receipt));
            }
            Err(e) if e.is_unavailable() || replies.len() == 1 => {
                if e.is_unavailable() {
                    let _ = self
                        .outcomes
                        .send(Outcome::Unavailable(e.for_another_request()));
                }
                let mut replies = replies.into_iter();
                let first = replies.next();
                for (reply, n) in replies {
                    self.answer(reply, n, Err(e.for_another_request()));
                }
                if let Some((first, n)) = first {
                    self.answer(first, n, Err(e));
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
                    self.commit(vec![job]);
                }
            }
        }
    }

    /// Answers a request of `n` events, whose room in the queue is free
    /// again from now on (so a client that retries at once finds it).
    fn answer(
        &self,
        reply: oneshot::Sender<Result<(), C::Error>>,
        n: usize,
        result: Result<(), C::Error>,
    ) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        // The client may have gone away (or timed out): the outcome stands
        // all the same, committed or not.
        let _ = reply.send(result);
    }
}
