//! The rollup worker: folds acknowledged events into the rollups of the
//! historical API, off the acknowledgement path (see
//! `beacon_store::Store::roll_up`).
//!
//! Each pass reads what was committed since the last one, so many
//! acknowledged batches share one rollup transaction. The watermark lives in
//! the database: events committed and not yet rolled up when the process
//! stops (or crashes) are rolled up by the next pass of any instance.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use beacon_store::{Backend, Store, StoreError};

use crate::clock::{Clock, SharedClock};
use crate::tasks::spawn_thread;
use crate::StartError;

/// Events read per rollup transaction.
///
/// On PostgreSQL a pass runs beside the writers (they wait only for the
/// instant it takes the ingest lock): big enough to merge many batches,
/// small enough to keep each transaction short.
///
/// On SQLite a pass writes under the one write lock, and every commit
/// waits for it: small passes, which read before they take the lock, keep
/// that wait short, at a slightly higher p99 than no passes would give
/// (docs/benchmarks.md, "What limits throughput").
fn pass_events(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => 20_000,
        Backend::Sqlite => 1_000,
    }
}

/// How long the last passes at shutdown may take; what is left is rolled
/// up at the next start.
const FINAL_PASSES: Duration = Duration::from_secs(5);

/// What the worker has done, for `GET /metrics`.
#[derive(Debug, Default)]
pub struct RollupStats {
    events: AtomicU64,
    caught_up_at: AtomicI64,
}

impl RollupStats {
    /// Events folded into the rollups since start.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Unix time (seconds) of the last pass that left nothing committed
    /// out of the rollups; 0 before the first.
    pub fn caught_up_at(&self) -> i64 {
        self.caught_up_at.load(Ordering::Relaxed)
    }
}

/// The running worker.
pub struct Roller {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl Roller {
    /// Starts the worker; it runs a pass at once (catching up after a
    /// restart), then every `interval`.
    pub fn start(
        store: Store,
        interval: Duration,
        stats: Arc<RollupStats>,
        clock: SharedClock,
    ) -> Result<Self, StartError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = spawn_thread("beacon-rollups".into(), move || {
            let mut failing = false;
            loop {
                // While the database is away, say so once, not per pass;
                // the watermark keeps what is owed.
                match catch_up(&store, &stats, &*clock, None) {
                    Ok(()) if failing => {
                        log::info!("rollups caught up again");
                        failing = false;
                    }
                    Err(e) if !failing => {
                        log::warn!("rollups wait for the database: {e}");
                        failing = true;
                    }
                    _ => {}
                }
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                        let deadline = Some(Instant::now() + FINAL_PASSES);
                        if let Err(e) = catch_up(&store, &stats, &*clock, deadline) {
                            log::warn!("stopping with events not yet rolled up ({e}); the next start rolls them up");
                        }
                        return;
                    }
                }
            }
        })?;
        Ok(Self { stop, handle })
    }

    /// Runs the last passes (bounded in time) and stops the worker. Call it
    /// after the writers stopped, so that their last commits are included.
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.handle.join().is_err() {
            log::error!("the rollup worker panicked");
        }
    }
}

/// Passes until nothing committed is left out, or the deadline.
fn catch_up(
    store: &Store,
    stats: &RollupStats,
    clock: &dyn Clock,
    deadline: Option<Instant>,
) -> Result<(), StoreError> {
    loop {
        let pass = store.roll_up(pass_events(store.backend()))?;
        stats
            .events
            .fetch_add(pass.applied as u64, Ordering::Relaxed);
        if pass.caught_up {
            stats
                .caught_up_at
                .store(clock.now().timestamp(), Ordering::Relaxed);
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            log::warn!("stopping with events not yet rolled up; the next start rolls them up");
            return Ok(());
        }
    }
}
