//! The retention task (`--retention DAYS`) and the pace of every prune
//! (`beacon prune` too): see `beacon_store::Store::prune_step`.
//!
//! Every instance runs the task; one at a time deletes, the one holding
//! the database lease [`LEASE`], renewed between steps. A run deletes in
//! small steps and pauses after each as long as the step took, so that a
//! prune of a large backlog takes at most about half of the database's
//! time and ingestion goes on beside it. A failed step is retried a few
//! times (a deleting step gives up on its lock after 2 s rather than hold
//! up ingestion); the next run picks up what is left.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use beacon_store::{PruneRun, Store, StoreError};

use crate::clock::{Clock, SharedClock};
use crate::config::Retention;
use crate::tasks::spawn_thread;
use crate::StartError;

/// The name of the database lease held by the deleting instance.
pub const LEASE: &str = "retention";

/// How long the lease lasts without renewal: an instance that stopped
/// mid-run hands over after this.
const LEASE_TTL: Duration = Duration::from_secs(60);

/// Shortest pause between two steps.
const MIN_PAUSE: Duration = Duration::from_millis(10);

/// How many times in a row a step may fail before the run gives up.
const ATTEMPTS: u32 = 5;

/// How often a long run says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Runs `run` to its end, pausing after each step for as long as it took
/// (at least [`MIN_PAUSE`]). `pause(d)` waits `d` and returns false to end
/// the run early (shutdown, a lost lease). Returns whether the run ended.
pub(crate) fn drive(
    store: &Store,
    run: &mut PruneRun,
    clock: &dyn Clock,
    mut pause: impl FnMut(Duration) -> bool,
) -> Result<bool, StoreError> {
    let mut failures = 0;
    let mut said = Instant::now();
    loop {
        let started = Instant::now();
        match store.prune_step(run, clock.now()) {
            Ok(more) => {
                failures = 0;
                if !more {
                    return Ok(true);
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= ATTEMPTS {
                    return Err(e);
                }
                log::debug!("a prune step failed ({e}); trying again");
            }
        }
        if said.elapsed() >= PROGRESS_EVERY {
            let d = run.deleted();
            log::info!(
                "pruning before {}: {} events and {} sessions deleted so far",
                run.before(),
                d.events,
                d.sessions
            );
            said = Instant::now();
        }
        if !pause(started.elapsed().max(MIN_PAUSE)) {
            return Ok(false);
        }
    }
}

/// The running retention task.
pub struct RetentionWorker {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl RetentionWorker {
    /// Starts the task: a run at once, then one every `interval`, keeping
    /// `retention` days.
    pub fn start(
        store: Store,
        retention: Retention,
        interval: Duration,
        clock: SharedClock,
    ) -> Result<Self, StartError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = spawn_thread("beacon-retention".into(), move || {
            let holder = crate::anomaly_worker::holder_id();
            let mut failing = false;
            loop {
                match run_once(&store, retention, &holder, &*clock, &stopped) {
                    Ok(true) => failing = false,
                    Ok(false) => return,
                    Err(e) if !failing => {
                        log::warn!("retention waits for the database: {e}");
                        failing = true;
                    }
                    Err(_) => {}
                }
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
        Ok(Self { stop, handle })
    }

    /// Stops the task at its next pause (the lease expires by itself).
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.handle.join().is_err() {
            log::error!("the retention task panicked");
        }
    }
}

/// One run, when this instance holds the lease. Returns false when told
/// to stop.
fn run_once(
    store: &Store,
    retention: Retention,
    holder: &str,
    clock: &dyn Clock,
    stopped: &Receiver<()>,
) -> Result<bool, StoreError> {
    if !store.try_lease(LEASE, holder, clock.now(), LEASE_TTL)? {
        return Ok(true);
    }
    let started = Instant::now();
    let mut run = PruneRun::new(retention.cutoff(clock.now()), store.backend());
    let mut renewed = Instant::now();
    let mut stopping = false;
    drive(store, &mut run, clock, |pause| {
        match stopped.recv_timeout(pause) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                stopping = true;
                return false;
            }
        }
        if renewed.elapsed() < LEASE_TTL / 3 {
            return true;
        }
        renewed = Instant::now();
        // A lost lease (or a failed renewal) ends the run: another
        // instance goes on with it.
        store
            .try_lease(LEASE, holder, clock.now(), LEASE_TTL)
            .unwrap_or(false)
    })?;
    let deleted = run.deleted();
    if deleted.events > 0 || deleted.sessions > 0 {
        log::info!(
            "retention: deleted {} events and {} sessions from before {} in {:.1} s",
            deleted.events,
            deleted.sessions,
            run.before(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(!stopping)
}
