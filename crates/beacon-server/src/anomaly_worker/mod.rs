//! The anomaly worker: runs the detector of `beacon-metrics` on the page
//! views of the site, of its busiest pages and of its busiest referrers
//! (see `counts`), and keeps the open anomalies and the detector's state
//! where `/stream` and `/metrics` show them.
//!
//! Exactly one instance detects and stores: the one holding the database
//! lease [`LEASE`], renewed at every interval and lasting a few, so that
//! another instance takes over when the holder stops. Counts are read from
//! the `events` table, so they are the site's, whichever instance stored
//! them. When the leader takes the lease it folds pending events into the
//! rollups and warms the detector from the rollups of the past weeks, then
//! from the events of the last hours, interval by interval. An interval it
//! cannot read (the database is away) is a gap for the detector, never a
//! "dark" or "drop": Beacon's blind spot is not the site's.
//!
//! Every instance, leader or not, reads the open anomalies and the
//! detector's state (recorded by the leader) from the database at every
//! interval into [`Live`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use beacon_metrics::anomaly::{AnomalyDetector, DetectorConfig, Event, SeriesKey};
use beacon_store::{AnomalyRow, DetectorStateRow, Store};
use chrono::{DateTime, TimeDelta, Utc};

use crate::alerts::{Alert, AlertSender};
use crate::clock::SharedClock;
use crate::live::Live;
use crate::tasks::spawn_thread;
use crate::StartError;

mod counts;
mod view;

#[cfg(test)]
use counts::items;
use counts::{feed, gap_until, warm_items, Fed, TOP_PAGES, TOP_REFERRERS};
pub use view::{kind_name, mode_name, series_name, to_row, AnomalyView, DetectorView};

/// The name of the database lease held by the detecting instance.
pub const LEASE: &str = "anomaly-detector";

/// How many intervals a lease lasts without renewal.
const LEASE_INTERVALS: u32 = 3;

/// How far back the detector is warmed from the rollups.
const WARM_HISTORY: TimeDelta = TimeDelta::weeks(4);

/// The most recent history is read from the events, interval by interval,
/// rather than from the rollups' quarters, and what it shows is detected:
/// an anomaly that began up to this long before a start (or a change of
/// leader) is still reported.
const WARM_FROM_EVENTS: TimeDelta = TimeDelta::hours(3);

/// How long after an interval's end its page views are read: pixels send
/// their batches a little after the views, and other instances commit
/// theirs a little later, so an interval read at its very end would lack
/// its last seconds.
const SETTLE: TimeDelta = TimeDelta::seconds(30);

/// How often the worker looks at the clock for an interval's end.
const POLL: Duration = Duration::from_millis(200);

/// The running worker.
pub struct AnomalyWorker {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl AnomalyWorker {
    /// Starts the worker; `interval` is the detector's step (it must be
    /// whole seconds from a minute to a day, dividing a day).
    pub fn start(
        store: Store,
        interval: Duration,
        live: Arc<Live>,
        clock: SharedClock,
        alerter: Option<AlertSender>,
    ) -> Result<Self, StartError> {
        let config = DetectorConfig {
            step: interval,
            ..DetectorConfig::default()
        };
        // Checked now, so that a bad step stops the start rather than the
        // detection.
        AnomalyDetector::new(config.clone(), TOP_PAGES, TOP_REFERRERS)
            .map_err(|e| StartError::Task(format!("anomaly detector: {e}")))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = spawn_thread("beacon-anomalies".into(), move || {
            let mut worker = Worker {
                store,
                live,
                clock,
                config,
                holder: holder_id(),
                alerter,
                detector: None,
                done_until: None,
            };
            loop {
                worker.tick();
                match stopped.recv_timeout(POLL) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
        Ok(Self { stop, handle })
    }

    /// Stops the worker (the lease expires by itself).
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.handle.join().is_err() {
            log::error!("the anomaly worker panicked");
        }
    }
}

/// A name for this instance's lease, unique per process and worker.
pub(crate) fn holder_id() -> String {
    static WORKERS: AtomicU64 = AtomicU64::new(0);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    format!(
        "{}-{}-{started}",
        std::process::id(),
        WORKERS.fetch_add(1, Ordering::Relaxed)
    )
}

struct Worker {
    store: Store,
    live: Arc<Live>,
    clock: SharedClock,
    config: DetectorConfig,
    holder: String,
    /// Sends alerts when `--alert-webhook` is set.
    alerter: Option<AlertSender>,
    /// Present while this instance holds the lease.
    detector: Option<Fed>,
    /// End of the last interval handled.
    done_until: Option<DateTime<Utc>>,
}

impl Worker {
    fn step(&self) -> TimeDelta {
        TimeDelta::from_std(self.config.step).unwrap_or(TimeDelta::minutes(5))
    }

    /// At each interval end (once it settled): the lease, the detection
    /// when this instance holds it, and the open anomalies for everyone.
    fn tick(&mut self) {
        let now = self.clock.now();
        let step = self.step();
        let step_us = step.num_microseconds().unwrap_or(1).max(1);
        let settled = (now - SETTLE).timestamp_micros();
        let end_us = settled.div_euclid(step_us) * step_us;
        let Some(end) = DateTime::from_timestamp_micros(end_us) else {
            return;
        };
        if self.done_until.is_some_and(|done| done >= end) {
            return;
        }
        self.done_until = Some(end);
        let ttl = self.config.step * LEASE_INTERVALS;
        match self.store.try_lease(LEASE, &self.holder, now, ttl) {
            Ok(true) => self.detect(end, now),
            Ok(false) => {
                if self.detector.take().is_some() {
                    log::info!("another instance detects anomalies now");
                }
            }
            Err(e) => {
                // Nobody can store anything now; the intervals are a gap.
                log::warn!("anomaly detection waits for the database: {e}");
                if let Some(fed) = &mut self.detector {
                    gap_until(fed, end, step);
                }
            }
        }
        match self.store.open_anomalies() {
            Ok(rows) => self
                .live
                .set_anomalies(rows.iter().map(AnomalyView::from).collect()),
            Err(e) => log::debug!("open anomalies not refreshed: {e}"),
        }
        match self.store.detector_state(LEASE) {
            Ok(state) => self
                .live
                .set_detector(state.as_ref().map(DetectorView::from)),
            Err(e) => log::debug!("anomaly detector state not refreshed: {e}"),
        }
    }

    /// Feeds every complete interval before `end`, warming first when this
    /// instance just took the lease.
    fn detect(&mut self, end: DateTime<Utc>, now: DateTime<Utc>) {
        let took_over = self.detector.is_none();
        if took_over {
            match self.warm(end) {
                Ok(fed) => {
                    log::info!("anomaly detection started ({:?} mode)", fed.detector.mode());
                    self.detector = Some(fed);
                }
                Err(e) => {
                    log::warn!("anomaly detector not warmed, retrying next interval: {e}");
                    return;
                }
            }
        }
        let step = self.step();
        let Some(fed) = &mut self.detector else {
            return;
        };
        let mode = fed.detector.mode();
        let events = feed(&self.store, fed, end, step);
        if fed.detector.mode() != mode {
            log::info!(
                "anomaly detector now in {} mode",
                mode_name(fed.detector.mode())
            );
        }
        // The state first: /anomalies never shows an anomaly beside a
        // detector that has not reported yet.
        report_state(&self.store, fed, now);
        for event in events {
            let (Event::Opened(a) | Event::Closed(a)) = &event.event;
            let row = to_row(&event.series, a);
            if let Err(e) = self.store.upsert_anomaly(&row, now) {
                log::warn!("anomaly not stored ({:?} {}): {e}", row.series, row.kind);
            } else {
                let opened = matches!(event.event, Event::Opened(_));
                // The series names a url or referrer: quoted and escaped.
                log::info!(
                    "anomaly {}: {:?} {}",
                    if opened { "opened" } else { "closed" },
                    row.series,
                    row.kind
                );
                // Sent once stored: the leader stores each anomaly once,
                // so it is announced once.
                if let Some(alerter) = &self.alerter {
                    alerter.send(Alert::new(opened, AnomalyView::from(&row)));
                }
            }
        }
        if took_over {
            close_orphans(&self.store, fed, end, now);
        }
    }

    /// A detector warmed from the rollups of the past weeks and the events
    /// of the last hours (what it finds there is reported too: it is recent
    /// enough to matter).
    fn warm(&self, end: DateTime<Utc>) -> Result<Fed, String> {
        // The rollups lag the events by the rollup worker's interval; fold
        // what is pending now, so that the quarters read are complete.
        self.store.roll_up_all().map_err(|e| e.to_string())?;
        let mut detector = AnomalyDetector::new(self.config.clone(), TOP_PAGES, TOP_REFERRERS)
            .map_err(|e| e.to_string())?;
        let quarter = TimeDelta::minutes(15);
        let quarter_us = quarter.num_microseconds().unwrap_or(1);
        let recent = end - WARM_FROM_EVENTS;
        let warm_end_us = recent.timestamp_micros().div_euclid(quarter_us) * quarter_us;
        let warm_end = DateTime::from_timestamp_micros(warm_end_us).unwrap_or(recent);
        let (first, counts) = self
            .store
            .page_views_per_quarter(warm_end - WARM_HISTORY, warm_end)
            .map_err(|e| e.to_string())?;
        // Before the first page view ever counted the site was not tracked
        // yet: that is no history, not weeks of silence to learn from.
        let Some(tracked) = counts.iter().position(|&n| n > 0) else {
            return Ok(Fed {
                detector,
                next: warm_end,
            });
        };
        let first = first + quarter * i32::try_from(tracked).unwrap_or(0);
        let counts: Vec<Option<u64>> = counts[tracked..].iter().copied().map(Some).collect();
        let next = match detector.warm(&SeriesKey::Site, first, Duration::from_secs(900), &counts) {
            Ok(()) => {
                warm_items(&self.store, &mut detector, first, warm_end)?;
                warm_end
            }
            Err(e) => {
                // A step that does not divide a quarter cannot use the
                // rollups; the detector learns from the events instead.
                log::warn!("anomaly detector not warmed from the rollups: {e}");
                end
            }
        };
        Ok(Fed { detector, next })
    }
}

/// Records what the detector knows, for every instance to show.
fn report_state(store: &Store, fed: &Fed, now: DateTime<Utc>) {
    let detector = &fed.detector;
    let row = DetectorStateRow {
        mode: mode_name(detector.mode()).to_owned(),
        history_us: i64::try_from(detector.site().history().as_micros()).unwrap_or(i64::MAX),
        series: i64::try_from(detector.series().len()).unwrap_or(i64::MAX),
        updated_us: now.timestamp_micros(),
    };
    if let Err(e) = store.set_detector_state(LEASE, &row) {
        log::debug!("anomaly detector state not recorded: {e}");
    }
}

/// Closes, at `end`, the anomalies stored as open that a fresh detector
/// (after a restart or a change of leader) does not see open: no detector
/// would ever close them otherwise. One it sees again (same series, kind
/// and start) stays open, and is closed by the detector in time.
fn close_orphans(store: &Store, fed: &Fed, end: DateTime<Utc>, now: DateTime<Utc>) {
    let open: Vec<AnomalyRow> = fed
        .detector
        .open()
        .iter()
        .map(|(series, a)| to_row(series, a))
        .collect();
    let stored = match store.open_anomalies() {
        Ok(rows) => rows,
        Err(e) => {
            log::warn!("open anomalies of the previous detector not checked: {e}");
            return;
        }
    };
    for row in stored {
        let seen = open
            .iter()
            .any(|o| o.series == row.series && o.kind == row.kind && o.start_us == row.start_us);
        if seen {
            continue;
        }
        let closed = AnomalyRow {
            end_us: Some(end.timestamp_micros()),
            ..row
        };
        match store.upsert_anomaly(&closed, now) {
            Ok(()) => log::info!(
                "anomaly closed at the detector's start: {} {}",
                closed.series,
                closed.kind
            ),
            Err(e) => log::warn!("anomaly of the previous detector not closed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
