//! The drain: consumers of the group `<prefix>:drain`, on every instance,
//! store batches of entries through [`Store::insert`] and acknowledge them
//! only after the commit.
//!
//! Exactly once: an event's `(session, id)` is unique in the database.
//! An entry delivered for the first time goes the fast way (`COPY` for ids
//! the server generated). Anything that may have been committed already, a
//! claimed entry, or a batch retried after a commit whose outcome was not
//! seen, is marked checked ([`NewEvent::into_checked`]) and goes through
//! the insert that skips what is stored. A fast-path batch that meets a
//! duplicate fails as a whole (nothing is stored twice) and is retried
//! checked. A batch the database refuses for a reason of its data is split
//! into its entries; an entry refused alone goes to the dead-letter stream,
//! is acknowledged, and the drain goes on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use beacon_model::{escape_for_log, NewEvent};
use beacon_store::{Store, StoreError};
use redis::aio::ConnectionManager;
use redis::RedisResult;
use tokio::sync::oneshot;

use super::entry::{self, EntryError, VERSION};
use super::monitor::{delete_idle_consumers, ensure_group};
use super::reply::{self, RawEntry};
use super::{BufferOptions, BufferStats};
use crate::health::DatabaseHealth;
use crate::live::Live;

/// How long a read waits in Redis for new entries: also how soon a
/// consumer notices the stop.
pub(super) const BLOCK: Duration = Duration::from_secs(1);
/// First and longest wait before a failed commit or read is retried.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long a stopping consumer still retries the commit of its batch in
/// hand (the database away); then the entries stay pending for another.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One consumer of the group.
pub(super) struct Consumer {
    /// Its own connection: it blocks in Redis.
    pub conn: ConnectionManager,
    /// The shared connection, for acknowledgements and dead letters.
    pub control: ConnectionManager,
    pub name: String,
    pub options: BufferOptions,
    pub store: Store,
    pub live: Arc<Live>,
    pub health: Arc<DatabaseHealth>,
    pub stats: Arc<BufferStats>,
}

/// Entries taken from the stream: their ids and events, index for index.
#[derive(Default)]
struct Batch {
    ids: Vec<String>,
    events: Vec<NewEvent>,
}

impl Batch {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every event marked checked.
    fn checked(self) -> Self {
        Self {
            ids: self.ids,
            events: self
                .events
                .into_iter()
                .map(NewEvent::into_checked)
                .collect(),
        }
    }
}

/// Has the stop been asked for?
fn stopped(stop: &mut oneshot::Receiver<()>) -> bool {
    !matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}

impl Consumer {
    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let claim_every = (self.options.claim_idle / 2).max(Duration::from_millis(200));
        let mut next_claim = Instant::now();
        let mut cursor = "0-0".to_owned();
        let mut backoff = BACKOFF_MIN;
        let mut newer_seen = false;
        while !stopped(&mut stop) {
            let claiming = Instant::now() >= next_claim;
            let read = if claiming {
                self.claim(&cursor).await.map(|(next, entries)| {
                    if next == "0-0" {
                        next_claim = Instant::now() + claim_every;
                    }
                    cursor = next;
                    entries
                })
            } else {
                self.read_new().await
            };
            let entries = match read {
                Ok(entries) => {
                    backoff = BACKOFF_MIN;
                    entries
                }
                Err(e) => {
                    self.stats.observe_redis(&Err::<(), _>(&e));
                    if e.code() == Some("NOGROUP") {
                        let _ = ensure_group(&mut self.control, &self.options.keys).await;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            if entries.is_empty() {
                continue;
            }
            if claiming {
                self.stats
                    .redelivered
                    .fetch_add(entries.len() as u64, Ordering::Relaxed);
            }
            let batch = self.decode(entries, claiming, &mut newer_seen).await;
            if !batch.is_empty() {
                self.store_batch(batch, claiming, &mut stop).await;
            }
        }
        // Leaves the group, unless entries are still pending with it (the
        // database away): then others claim them and the monitors' sweep
        // removes it later.
        let left = delete_idle_consumers(
            &mut self.control,
            &self.options.keys,
            Duration::ZERO,
            Some(&self.name),
        )
        .await;
        if let Err(e) = left {
            log::debug!("consumer {} not removed from the group: {e}", self.name);
        }
    }

    /// New entries for this consumer, waiting up to [`BLOCK`].
    async fn read_new(&mut self) -> RedisResult<Vec<RawEntry>> {
        let value: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.options.keys.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(self.options.batch_max)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.options.keys.stream)
            .arg(">")
            .query_async(&mut self.conn)
            .await?;
        Ok(reply::read(value))
    }

    /// Entries idle with another consumer (dead, or stuck) for longer than
    /// the claim timeout, now this one's.
    async fn claim(&mut self, cursor: &str) -> RedisResult<(String, Vec<RawEntry>)> {
        let value: redis::Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.options.keys.stream)
            .arg(&self.options.keys.group)
            .arg(&self.name)
            .arg(self.options.claim_idle.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(self.options.batch_max)
            .query_async(&mut self.conn)
            .await?;
        Ok(reply::autoclaim(value))
    }

    /// The events of the entries. A damaged entry is dead-lettered at once;
    /// one of a newer format is left pending for an instance that reads it.
    async fn decode(
        &mut self,
        entries: Vec<RawEntry>,
        redelivered: bool,
        newer_seen: &mut bool,
    ) -> Batch {
        // Parsing thousands of entries (and their `data`) is CPU work: on
        // the blocking pool, off the runtime that serves the other tasks.
        let decoded = web::block(move || {
            entries
                .into_iter()
                .map(|raw| {
                    let event = entry::decode(raw.version.as_deref(), raw.event.as_deref());
                    (raw, event)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut batch = Batch::default();
        for (raw, event) in decoded {
            match event {
                Ok(event) => {
                    batch.ids.push(raw.id);
                    batch.events.push(if redelivered {
                        event.into_checked()
                    } else {
                        event
                    });
                }
                Err(e @ EntryError::NewerVersion(_)) => {
                    if !*newer_seen {
                        *newer_seen = true;
                        log::warn!("leaving entries to newer instances: {e}");
                    }
                }
                Err(e @ EntryError::Malformed(_)) => {
                    self.dead_letter(&raw.id, raw.version, raw.event, &e.to_string())
                        .await;
                }
            }
        }
        batch
    }

    /// Stores the batch and acknowledges it: retried while the database is
    /// away, split up when it refuses the batch for its data.
    async fn store_batch(
        &mut self,
        mut batch: Batch,
        mut checked: bool,
        stop: &mut oneshot::Receiver<()>,
    ) {
        let mut backoff = BACKOFF_MIN;
        let mut stop_deadline: Option<Instant> = None;
        let mut touched = Instant::now();
        loop {
            let (back, outcome) = insert(&self.store, batch).await;
            batch = back;
            match outcome {
                Ok(new) => {
                    self.stats.transactions.fetch_add(1, Ordering::Relaxed);
                    self.health.reachable();
                    self.live.set_stale(false);
                    self.live.count_committed(new as u64);
                    self.stats
                        .drained
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.ack(&batch.ids).await;
                    return;
                }
                Err(e) if e.is_unavailable() => {
                    self.health.failed(&e);
                    self.live.set_stale(true);
                    // The commit may have happened before the connection
                    // broke: from now on, check for duplicates.
                    if !checked {
                        checked = true;
                        batch = batch.checked();
                    }
                    if stopped(stop) || stop_deadline.is_some() {
                        let deadline =
                            *stop_deadline.get_or_insert_with(|| Instant::now() + STOP_GRACE);
                        if Instant::now() >= deadline {
                            log::warn!(
                                "stopping with {} entries not stored (the database is away): another instance will claim them",
                                batch.len()
                            );
                            return;
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    // Still this consumer's: not claimed by another meanwhile.
                    if touched.elapsed() > self.options.claim_idle / 3 {
                        touched = Instant::now();
                        self.touch(&batch).await;
                    }
                }
                Err(e) if !checked => {
                    log::debug!("a batch failed on the fast path ({e}); retrying it checked");
                    checked = true;
                    batch = batch.checked();
                }
                Err(e) => {
                    log::warn!(
                        "a batch of {} entries was refused ({e}); storing them one by one",
                        batch.len()
                    );
                    self.one_by_one(batch).await;
                    return;
                }
            }
        }
    }

    /// Each entry alone: stored and acknowledged, or dead-lettered. Stops
    /// (leaving the rest pending, to be claimed later) if the database
    /// goes away meanwhile.
    async fn one_by_one(&mut self, batch: Batch) {
        for (id, event) in batch.ids.into_iter().zip(batch.events) {
            let encoded = entry::encode(&event);
            let one = Batch {
                ids: vec![id],
                events: vec![event],
            };
            let (one, outcome) = insert(&self.store, one).await;
            let id = one.ids.into_iter().next().unwrap_or_default();
            match outcome {
                Ok(new) => {
                    self.live.count_committed(new as u64);
                    self.stats.drained.fetch_add(1, Ordering::Relaxed);
                    self.ack(std::slice::from_ref(&id)).await;
                }
                Err(e) if e.is_unavailable() => {
                    self.health.failed(&e);
                    return;
                }
                Err(e) => {
                    self.dead_letter(
                        &id,
                        Some(VERSION.to_string().into_bytes()),
                        Some(encoded.into_bytes()),
                        &e.to_string(),
                    )
                    .await;
                }
            }
        }
    }

    /// Acknowledges stored entries. If Redis does not answer, they stay
    /// pending and are delivered again later, checked: no harm done.
    async fn ack(&mut self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        for attempt in 0..3 {
            let acked: RedisResult<u64> = redis::cmd("XACK")
                .arg(&self.options.keys.stream)
                .arg(&self.options.keys.group)
                .arg(ids)
                .query_async(&mut self.control)
                .await;
            self.stats.observe_redis(&acked);
            if acked.is_ok() {
                return;
            }
            tokio::time::sleep(BACKOFF_MIN * (attempt + 1)).await;
        }
        log::warn!(
            "{} stored entries could not be acknowledged: they will be delivered again and skipped as stored",
            ids.len()
        );
    }

    /// Resets the idle time of entries this consumer is still working on.
    async fn touch(&mut self, batch: &Batch) {
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.options.keys.stream)
            .arg(&self.options.keys.group)
            .arg(&self.name)
            .arg(0);
        cmd.arg(&batch.ids);
        let _: RedisResult<redis::Value> = cmd.arg("JUSTID").query_async(&mut self.control).await;
    }

    /// Moves an entry to the dead-letter stream (with the reason and its
    /// id), then acknowledges it. Logged without the payload.
    async fn dead_letter(
        &mut self,
        id: &str,
        version: Option<Vec<u8>>,
        event: Option<Vec<u8>>,
        reason: &str,
    ) {
        let moved: RedisResult<()> = redis::pipe()
            .cmd("XADD")
            .arg(&self.options.keys.dead)
            .arg("*")
            .arg("v")
            .arg(version.unwrap_or_default())
            .arg("e")
            .arg(event.unwrap_or_default())
            .arg("entry")
            .arg(id)
            .arg("reason")
            .arg(reason)
            .ignore()
            .cmd("XACK")
            .arg(&self.options.keys.stream)
            .arg(&self.options.keys.group)
            .arg(id)
            .ignore()
            .query_async(&mut self.control)
            .await;
        match moved {
            Ok(()) => {
                self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "entry {id} moved to {}: {}",
                    self.options.keys.dead,
                    escape_for_log(reason, 500)
                );
            }
            Err(e) => log::warn!("entry {id} could not be dead-lettered ({e}); it stays pending"),
        }
    }
}

/// One transaction on the blocking pool; the batch comes back with the
/// outcome (the number of new events).
async fn insert(store: &Store, batch: Batch) -> (Batch, Result<usize, StoreError>) {
    let store = store.clone();
    match web::block(move || {
        let outcome = store.insert(&batch.events).map(|inserted| inserted.len());
        (batch, outcome)
    })
    .await
    {
        Ok(done) => done,
        // The blocking pool is gone (stopping): the entries stay pending.
        Err(e) => (
            Batch::default(),
            Err(StoreError::Unavailable(format!("blocking pool: {e}"))),
        ),
    }
}
