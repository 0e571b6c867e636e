//! Live metrics and their broadcast to `/stream` clients.
//!
//! One [`LiveMetrics`] is fed by the writers with committed events. One
//! broadcaster task takes a snapshot per tick, serializes it **once** into a
//! complete SSE frame, and publishes the same bytes (reference-counted, never
//! copied) to every client through a bounded broadcast channel. A client that
//! does not keep up skips to the newest frame; it can never grow memory or
//! hold back the others, and it costs ingestion nothing.
//!
//! [`start`] builds the live state, warms it up from storage and starts the
//! broadcaster (in `feed.rs`, with the ingest pipeline's sink).

mod feed;
mod seen;

pub use feed::{commit_sink, start, warm_up};

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use beacon_metrics::{LiveConfig, LiveEvent, LiveMetrics, Snapshot, DROP_BOT};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

/// Frames kept for clients that fall behind; a client further behind skips
/// to the newest.
const BROADCAST_CAPACITY: usize = 4;

/// What the broadcaster publishes: a frame, or the end of all streams.
#[derive(Clone)]
pub(crate) enum Frame {
    Data(Bytes),
    Close,
}

/// The snapshot as sent: the metrics' fields plus the server's own.
#[derive(Serialize)]
struct Tick<'a> {
    #[serde(flatten)]
    snapshot: &'a Snapshot,
    /// True when the database is unreachable: the figures are the last ones
    /// known and may be behind.
    stale: bool,
    /// The open anomalies, as the database had them at the last interval.
    anomalies: &'a [crate::anomaly_worker::AnomalyView],
}

/// Why an event was dropped before storage, as counted on `/stream`
/// (`dropped_last_min`, `bots_last_min`; `/metrics` has the totals since
/// start, kept by enrichment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Traffic recognised as a crawler, monitor, previewer, HTTP library or
    /// headless browser (dropped unless `--keep-bots`).
    Bot,
}

impl DropReason {
    /// The reason's name on `/stream`, as in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Bot => DROP_BOT,
        }
    }
}

/// Live state shared by the writers, the broadcaster and `/stream`.
pub struct Live {
    metrics: Mutex<LiveMetrics>,
    frames: broadcast::Sender<Frame>,
    latest: RwLock<Bytes>,
    sequence: AtomicU64,
    open_streams: AtomicUsize,
    closed: AtomicBool,
    stale: AtomicBool,
    committed: AtomicU64,
    retry: Duration,
    anomalies: RwLock<Vec<crate::anomaly_worker::AnomalyView>>,
    detector: RwLock<Option<crate::anomaly_worker::DetectorView>>,
    /// Buffered mode: the events already fed, by `(session, public id)`.
    seen: Mutex<Option<seen::Seen>>,
}

impl Live {
    /// Empty live state at `now`; `interval` is the tick (used as the
    /// client's reconnection delay too).
    pub fn new(config: LiveConfig, interval: Duration, now: DateTime<Utc>) -> Self {
        let (frames, _) = broadcast::channel(BROADCAST_CAPACITY);
        let mut metrics = LiveMetrics::new(config);
        // The aggregator's clock starts at the epoch; set it to now so that
        // events are judged against the present from the first one.
        metrics.expire(now);
        Self {
            metrics: Mutex::new(metrics),
            frames,
            latest: RwLock::new(Bytes::new()),
            sequence: AtomicU64::new(0),
            open_streams: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            committed: AtomicU64::new(0),
            retry: interval.clamp(Duration::from_secs(1), Duration::from_secs(30)),
            anomalies: RwLock::default(),
            detector: RwLock::default(),
            seen: Mutex::new(None),
        }
    }

    /// Counts `committed` newly committed events and feeds `events`, those
    /// of them that count in the live figures (called after each commit;
    /// events of bots kept with `--keep-bots` are committed but not fed).
    pub fn record(&self, committed: usize, events: &[LiveEvent<'_>]) {
        self.committed
            .fetch_add(committed as u64, Ordering::Relaxed);
        self.feed(events);
    }

    /// Counts `n` events dropped before storage at `now`, for `reason`:
    /// shown on `/stream` for a minute.
    pub fn record_dropped(&self, reason: DropReason, n: usize, now: DateTime<Utc>) {
        if n == 0 {
            return;
        }
        if let Ok(mut metrics) = self.metrics.lock() {
            metrics.record_dropped(reason.as_str(), n as u64, now);
        }
    }

    /// Buffered mode: from now on, remember the events fed by
    /// `(session, public id)`, so that [`Live::feed_once`] skips an event
    /// already counted (by the warm-up, or sent twice with one id).
    pub(crate) fn dedupe_by_public_id(&self) {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(seen::Seen::new(seen::CAPACITY));
        }
    }

    /// Notes that an event was fed (when deduplicating).
    fn remember(&self, session: &str, public_id: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            if let Some(seen) = seen.as_mut() {
                seen.insert(session, public_id);
            }
        }
    }

    /// Feeds the events not fed before (each with its public id), without
    /// counting them as committed (the buffered mode's live feed).
    pub(crate) fn feed_once(&self, events: &[(LiveEvent<'_>, &str)]) {
        let new: Vec<LiveEvent<'_>> = match self.seen.lock() {
            Ok(mut seen) => match seen.as_mut() {
                Some(seen) => events
                    .iter()
                    .filter(|(e, id)| seen.insert(e.session, id))
                    .map(|(e, _)| *e)
                    .collect(),
                None => events.iter().map(|(e, _)| *e).collect(),
            },
            Err(_) => return,
        };
        self.feed(&new);
    }

    /// Counts events committed by this instance (buffered mode, where the
    /// live metrics are fed from the stream instead).
    pub(crate) fn count_committed(&self, n: u64) {
        self.committed.fetch_add(n, Ordering::Relaxed);
    }

    /// Feeds events to the aggregator without counting them as committed
    /// now (warm-up).
    fn feed(&self, events: &[LiveEvent<'_>]) {
        if events.is_empty() {
            return;
        }
        // The aggregator borrows the events and copies only what it keeps;
        // they are freed by our caller, outside the lock.
        if let Ok(mut metrics) = self.metrics.lock() {
            for event in events {
                metrics.record(event);
            }
        }
    }

    /// Marks the figures as stale (database unreachable) or fresh.
    pub fn set_stale(&self, stale: bool) {
        self.stale.store(stale, Ordering::Relaxed);
    }

    /// Replaces the open anomalies shown on `/stream` and `/metrics`.
    pub fn set_anomalies(&self, open: Vec<crate::anomaly_worker::AnomalyView>) {
        *self
            .anomalies
            .write()
            .unwrap_or_else(PoisonError::into_inner) = open;
    }

    /// The open anomalies, as last refreshed from the database.
    pub fn open_anomalies(&self) -> Vec<crate::anomaly_worker::AnomalyView> {
        self.anomalies
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the anomaly detector's state shown on `/metrics`.
    pub fn set_detector(&self, state: Option<crate::anomaly_worker::DetectorView>) {
        *self
            .detector
            .write()
            .unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// The anomaly detector's state, as last refreshed from the database.
    pub fn detector(&self) -> Option<crate::anomaly_worker::DetectorView> {
        self.detector
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True while the figures may be behind because the database is away.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Builds one snapshot at `now`, serializes it once into a frame and
    /// publishes it to every client.
    pub fn tick(&self, now: DateTime<Utc>) {
        let snapshot = match self.metrics.lock() {
            Ok(mut metrics) => metrics.snapshot(now),
            Err(_) => return,
        };
        let anomalies = self.open_anomalies();
        let tick = Tick {
            snapshot: &snapshot,
            stale: self.stale.load(Ordering::Relaxed),
            anomalies: &anomalies,
        };
        let json = match serde_json::to_string(&tick) {
            Ok(json) => json,
            Err(e) => {
                log::error!("cannot serialize the live snapshot: {e}");
                return;
            }
        };
        // The id, the latest frame and the broadcast change together, under
        // the write lock, and a stream opens under the read lock (`open`):
        // it starts from the frame before this one and receives this one,
        // or starts from this one and receives only later ones. Never a
        // frame twice, and never an older one after a newer.
        let mut latest = self.latest.write().unwrap_or_else(PoisonError::into_inner);
        let id = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let frame = Bytes::from(format!("id: {id}\ndata: {json}\n\n: heartbeat\n\n"));
        *latest = frame.clone();
        // No receivers is not an error: nobody is watching.
        let _ = self.frames.send(Frame::Data(frame));
    }

    /// The opening of a new stream: reconnection delay, the `stream-open`
    /// message, and the latest snapshot so the dashboard fills at once.
    pub(crate) fn open(&self, now: DateTime<Utc>) -> (Bytes, broadcast::Receiver<Frame>) {
        let mut first = format!(
            "retry: {}\ndata: {{\"timestamp\":\"{}\",\"message\":\"stream-open\"}}\n\n",
            self.retry.as_millis(),
            now.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
        .into_bytes();
        // Subscribed under the same lock as `tick` publishes under: the
        // receiver gets exactly the frames after the latest one.
        let latest = self.latest.read().unwrap_or_else(PoisonError::into_inner);
        let receiver = self.frames.subscribe();
        first.extend_from_slice(&latest);
        (Bytes::from(first), receiver)
    }

    /// Ends every open stream (at shutdown) and refuses new ones.
    pub fn close_streams(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.frames.send(Frame::Close);
    }

    /// True once [`Live::close_streams`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Open `/stream` connections right now.
    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::Relaxed)
    }

    /// Registers an open stream until the guard is dropped.
    pub(crate) fn stream_guard(self: &Arc<Self>) -> StreamGuard {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(Arc::clone(self))
    }

    /// Events committed (and new) since start.
    pub fn committed_events(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Active sessions tracked right now.
    pub fn active_sessions(&self) -> usize {
        self.metrics.lock().map_or(0, |m| m.active_sessions())
    }
}

/// Counts a stream as open while it lives.
pub(crate) struct StreamGuard(Arc<Live>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
