//! The live feed: every instance reads the whole stream with plain `XREAD`
//! (not through the group, which hands each entry to one consumer) and
//! feeds its live metrics, so `/stream` on any instance shows every event.
//!
//! Neither twice nor never, across the warm-up: before the live state is
//! warmed up from the database, this instance registers its reader at the
//! start of the stream (`monitor::prepare`), so no entry is trimmed until
//! the reader has read it. The warm-up then reads what the database holds
//! and remembers each event's `(session, public id)`; the reader starts at
//! the stream's beginning and skips what was remembered. An event stored
//! before the warm-up is counted by the warm-up; one stored after it is
//! still in the stream (untrimmed, since the reader holds it) and is
//! counted by the reader. The same remembered keys make an event a client
//! sent twice with one id count once, as it is stored once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_metrics::LiveEvent;
use redis::aio::ConnectionManager;
use tokio::sync::oneshot;

use super::entry;
use super::monitor::report_reader;
use super::reply;
use super::{Keys, StreamPos};
use crate::live::Live;

/// How long a read waits in Redis for new entries.
pub(super) const BLOCK: Duration = Duration::from_secs(1);
/// Entries per read.
const COUNT: usize = 2000;
/// How often the reader says where it is (well within `READER_STALE`).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// This instance's live reader.
pub(super) struct Reader {
    /// Its own connection: it blocks in Redis.
    pub conn: ConnectionManager,
    /// The shared connection, to report the position.
    pub control: ConnectionManager,
    pub keys: Keys,
    pub instance: String,
    pub live: Arc<Live>,
}

impl Reader {
    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut last = StreamPos::START;
        let mut reported = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(COUNT)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.keys.stream)
                .arg(last.to_string());
            let read = tokio::select! {
                _ = &mut stop => break,
                read = cmd.query_async::<redis::Value>(&mut self.conn) => read,
            };
            match read {
                Ok(value) => {
                    backoff = Duration::from_millis(100);
                    // Parsing and aggregating is CPU work: on the blocking
                    // pool, off the runtime that drives the connections.
                    let live = Arc::clone(&self.live);
                    let fed = actix_web::web::block(move || feed(&live, reply::read(value))).await;
                    if let Ok(Some(pos)) = fed {
                        last = pos;
                    }
                }
                Err(e) => {
                    log::debug!("live feed: read failed ({e}); retrying");
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
            if reported.elapsed() >= REPORT_EVERY {
                reported = Instant::now();
                if let Err(e) =
                    report_reader(&mut self.control, &self.keys, &self.instance, last).await
                {
                    log::debug!("live feed: position not reported ({e})");
                }
            }
        }
    }
}

/// Feeds the entries' events to the live metrics, once each; returns the
/// last entry's position.
fn feed(live: &Live, entries: Vec<reply::RawEntry>) -> Option<StreamPos> {
    let last = entries.last().and_then(|e| StreamPos::parse(&e.id));
    let events: Vec<_> = entries
        .into_iter()
        .filter_map(|raw| {
            let pos = StreamPos::parse(&raw.id)?;
            // Entries of a newer format or damaged ones: not shown.
            let view = entry::view(raw.version.as_deref(), raw.event.as_deref()).ok()?;
            // Kept bots (--keep-bots) are stored, never counted live.
            if view.profile.as_ref().is_some_and(|p| p.bot) {
                return None;
            }
            let label = view.label();
            Some((pos, view, label))
        })
        .collect();
    let views: Vec<(LiveEvent<'_>, &str)> = events
        .iter()
        .map(|(pos, e, label)| {
            let view = LiveEvent {
                id: pos.as_i64(),
                kind: &e.kind,
                session: &e.session,
                url: e.url.as_deref(),
                referrer: e.referrer.as_deref(),
                timestamp: e.occurred_at,
                label: label.as_deref(),
                metadata: &e.data,
                visitor: e.profile.as_ref().and_then(|p| p.visitor_id),
                country: e.profile.as_ref().and_then(|p| p.country.as_deref()),
                device: e.profile.as_ref().and_then(|p| p.device.as_deref()),
            };
            (view, e.id.as_str())
        })
        .collect();
    live.feed_once(&views);
    last
}
