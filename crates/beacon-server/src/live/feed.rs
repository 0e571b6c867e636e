//! What fills the live state: the commits of the ingest pipeline, the
//! stored events at start (warm-up), and the broadcaster's ticks.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use beacon_metrics::{LiveConfig, LiveEvent};
use beacon_model::NewEvent;
use beacon_store::{Inserted, LiveRow, Store, StoreError};
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::Live;
use crate::clock::SharedClock;
use crate::health::DatabaseHealth;
use crate::ingest::Committed;
use crate::tasks::Task;
use crate::StartError;

/// Builds the live state, fills it from storage, and starts the broadcaster
/// (one snapshot per `interval`), which the application stops at shutdown.
/// `dedupe`: the buffered mode's live state, which remembers the events
/// it was fed by public id (see `buffer/feed.rs`).
pub async fn start(
    store: &Store,
    interval: Duration,
    clock: &SharedClock,
    dedupe: bool,
) -> Result<(Arc<Live>, Task), StartError> {
    let live = Arc::new(Live::new(LiveConfig::default(), interval, clock.now()));
    if dedupe {
        live.dedupe_by_public_id();
    }
    {
        let (store, live, now) = (store.clone(), Arc::clone(&live), clock.now());
        web::block(move || warm_up(&store, &live, now))
            .await
            .map_err(|e| StartError::Task(e.to_string()))??;
    }
    let broadcaster = {
        let (live, store, clock) = (Arc::clone(&live), store.clone(), Arc::clone(clock));
        Task::spawn("live broadcaster", move |stop| {
            run_broadcaster(live, store, clock, interval, stop)
        })
    };
    Ok((live, broadcaster))
}

/// The ingest pipeline's sink: feeds the new events of each commit to the
/// live metrics (all of them count as committed; those of bots, stored
/// only with `--keep-bots`, count in no live figure), and marks the figures
/// stale while the database is away.
pub fn commit_sink(
    live: Arc<Live>,
    health: Arc<DatabaseHealth>,
) -> impl Fn(Result<Committed<'_, Inserted>, &StoreError>) + Send + 'static {
    move |outcome| match outcome {
        Ok(committed) => {
            health.reachable();
            let mut count = 0;
            let new: Vec<LiveEvent<'_>> = committed
                .receipt
                .new_events(committed.events)
                .inspect(|_| count += 1)
                .filter(|(_, e)| !e.profile().is_some_and(|p| p.bot))
                .map(|(id, e)| live_view(id, e))
                .collect();
            live.set_stale(false);
            live.record(count, &new);
        }
        Err(e) => {
            health.failed(e);
            live.set_stale(true);
        }
    }
}

/// The live view of a committed event of a batch, `id` its `events.id`:
/// the same fields as [`live_event`] reads from the stored row, the profile
/// the one enrichment gave the event (the session's: the aggregator keeps
/// the first one it sees, as the store keeps that of the first batch).
fn live_view(id: i64, e: &NewEvent) -> LiveEvent<'_> {
    let profile = e.profile();
    LiveEvent {
        id,
        kind: e.kind().as_str(),
        session: e.session().as_str(),
        url: e.url(),
        referrer: e.referrer(),
        timestamp: e.occurred_at(),
        label: e.label(),
        metadata: e.data_json(),
        visitor: profile.and_then(|p| p.visitor_id),
        country: profile.and_then(|p| p.country.as_deref()),
        device: profile.and_then(|p| p.device.as_deref()),
    }
}

/// The aggregator's view of a stored row: no copy, no JSON parsing. The
/// click label comes from its own column, which ingestion filled with
/// `data.label` of clicks when a string, cut to 256 bytes, the same cut as
/// `LiveConfig::default().max_label_bytes`. The profile is the session's.
fn live_event(row: &LiveRow) -> LiveEvent<'_> {
    let e = &row.event;
    LiveEvent {
        id: e.id,
        kind: &e.kind,
        session: &e.session_token,
        url: e.url.as_deref(),
        referrer: e.referrer.as_deref(),
        timestamp: e.occurred_at(),
        label: e.label.as_deref(),
        metadata: &e.metadata,
        visitor: row.visitor_id,
        country: row.country.as_deref(),
        device: row.device.as_deref(),
    }
}

/// Ticks until stopped (or the streams are closed): the first snapshot at
/// once, then one per `interval`. While the figures are stale (the last
/// commit found the database away) it checks the database each tick, so
/// `stale` clears when it returns even without traffic.
async fn run_broadcaster(
    live: Arc<Live>,
    store: Store,
    clock: SharedClock,
    interval: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        if live.is_closed() {
            break;
        }
        if live.is_stale() {
            let store = store.clone();
            let up = matches!(web::block(move || store.ping()).await, Ok(Ok(())));
            live.set_stale(!up);
        }
        live.tick(clock.now());
    }
}

/// How far back the warm-up reads events one by one: the active and minute
/// windows need them all; older figures are not affected by a restart gap
/// this short.
const WARM_UP_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// Most events read one by one at warm-up, to bound start time.
const WARM_UP_MAX_EVENTS: i64 = 500_000;

/// Fills the live state from storage after a restart, so the dashboard does
/// not blank: the events of the minutes before `now` and the most recent
/// events, with their sessions' profiles, bots (kept with `--keep-bots`)
/// left out.
pub fn warm_up(store: &Store, live: &Live, now: DateTime<Utc>) -> Result<(), StoreError> {
    let cutoff = now - WARM_UP_WINDOW;
    let window = store.live_events_since(cutoff, WARM_UP_MAX_EVENTS)?;
    let recent: Vec<LiveRow> = store
        .recent_live_events(25)?
        .into_iter()
        .filter(|r| r.event.occurred_at() < cutoff)
        .rev()
        .collect();
    live.feed(&recent.iter().map(live_event).collect::<Vec<_>>());
    live.feed(&window.iter().map(live_event).collect::<Vec<_>>());
    for e in recent.iter().chain(&window) {
        live.remember(&e.event.session_token, &e.event.public_id);
    }
    live.tick(now);
    if !window.is_empty() || !recent.is_empty() {
        log::info!(
            "live metrics warmed up with {} events",
            window.len() + recent.len()
        );
    }
    Ok(())
}
