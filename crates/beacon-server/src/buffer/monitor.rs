//! The monitor: measures the backlog and the oldest unstored entry, keeps
//! the Redis health flag fresh, and trims the stream below everything
//! still needed.
//!
//! An entry is needed while it is pending (delivered, not acknowledged),
//! undelivered, or not yet read by a live reader that reported within
//! [`READER_STALE`]. Everything before the oldest needed entry is stored
//! and read, and `XTRIM MINID` removes it. Every instance's monitor trims;
//! they cannot disagree in a harmful way, since what is needed only ever
//! moves forward: an entry below a bound computed a moment ago was stored
//! then, and nothing can make it needed again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::streams::{StreamInfoGroupsReply, StreamPendingReply, StreamRangeReply};
use redis::RedisResult;
use tokio::sync::oneshot;

use super::{BufferStats, Keys, StreamPos};

/// Time between two measurements.
const MEASURE_EVERY: Duration = Duration::from_millis(250);
/// Measurements between two trims.
const TRIM_EVERY: u32 = 4;
/// A live reader silent for this long is gone: it no longer holds entries.
pub(super) const READER_STALE: Duration = Duration::from_secs(60);

/// Milliseconds since the epoch, now.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Creates the stream and the group if missing (the group at the start of
/// the stream: nothing already there is skipped).
pub(super) async fn ensure_group(conn: &mut ConnectionManager, keys: &Keys) -> RedisResult<()> {
    let created: RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.stream)
        .arg(&keys.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Says where a live reader has read up to.
pub(super) async fn report_reader(
    conn: &mut ConnectionManager,
    keys: &Keys,
    instance: &str,
    pos: StreamPos,
) -> RedisResult<()> {
    redis::cmd("HSET")
        .arg(&keys.readers)
        .arg(instance)
        .arg(format!("{pos} {}", now_ms()))
        .query_async(conn)
        .await
}

/// At start: the group exists, and this instance's live reader holds the
/// whole stream until it has read it.
pub(super) async fn prepare(
    conn: &ConnectionManager,
    keys: &Keys,
    instance: &str,
) -> RedisResult<()> {
    let mut conn = conn.clone();
    ensure_group(&mut conn, keys).await?;
    report_reader(&mut conn, keys, instance, StreamPos::START).await
}

/// What one measurement found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Measure {
    /// Events accepted, not yet stored.
    pub backlog: u64,
    /// The oldest pending entry, if any.
    pub oldest_pending: Option<StreamPos>,
    /// The first entry not yet delivered to the group, if any.
    pub first_undelivered: Option<StreamPos>,
    /// The group's last delivered entry.
    pub last_delivered: StreamPos,
}

impl Measure {
    /// The oldest entry not yet stored.
    pub fn oldest_unstored(&self) -> Option<StreamPos> {
        match (self.oldest_pending, self.first_undelivered) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The monitor task's state.
pub(super) struct Monitor {
    pub conn: ConnectionManager,
    pub keys: Keys,
    pub instance: String,
    pub stats: Arc<BufferStats>,
}

impl Monitor {
    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut ticker = tokio::time::interval(MEASURE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round: u32 = 0;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = ticker.tick() => {}
            }
            round = round.wrapping_add(1);
            let appended_before = self.stats.appended_since.load(Ordering::Relaxed);
            let measured = self.measure().await;
            self.stats.observe_redis(&measured);
            let Ok(measured) = measured else { continue };
            self.stats
                .backlog
                .store(measured.backlog, Ordering::Relaxed);
            // What was appended before the measurement is in it now.
            self.stats
                .appended_since
                .fetch_sub(appended_before, Ordering::Relaxed);
            self.stats.oldest_unstored_ms.store(
                measured.oldest_unstored().map_or(0, |p| p.ms.max(1)),
                Ordering::Relaxed,
            );
            if round.is_multiple_of(TRIM_EVERY) {
                if let Err(e) = self.trim(&measured).await {
                    log::debug!("stream trim skipped: {e}");
                }
            }
        }
        // The instance's live reader is gone: it holds nothing any more.
        let _: RedisResult<()> = redis::cmd("HDEL")
            .arg(&self.keys.readers)
            .arg(&self.instance)
            .query_async(&mut self.conn)
            .await;
    }

    /// The group's figures (recreating the group if Redis lost it).
    async fn measure(&mut self) -> RedisResult<Measure> {
        let groups: RedisResult<StreamInfoGroupsReply> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.keys.stream)
            .query_async(&mut self.conn)
            .await;
        let group = match groups {
            Ok(groups) => groups
                .groups
                .into_iter()
                .find(|g| g.name == self.keys.group),
            Err(e)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        let Some(group) = group else {
            // No stream or no group: Redis lost its data (or was never
            // prepared). The group starts at the stream's beginning.
            log::warn!(
                "the consumer group {} is missing: creating it",
                self.keys.group
            );
            ensure_group(&mut self.conn, &self.keys).await?;
            return Ok(Measure::default());
        };
        let pending: StreamPendingReply = redis::cmd("XPENDING")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .query_async(&mut self.conn)
            .await?;
        let oldest_pending = match &pending {
            StreamPendingReply::Data(data) if data.count > 0 => StreamPos::parse(&data.start_id),
            _ => None,
        };
        let last_delivered = StreamPos::parse(&group.last_delivered_id).unwrap_or(StreamPos::START);
        let next: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.keys.stream)
            .arg(last_delivered.next().to_string())
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn)
            .await?;
        let first_undelivered = next.ids.first().and_then(|e| StreamPos::parse(&e.id));
        let backlog = match (group.lag, first_undelivered) {
            (_, None) => group.pending as u64,
            (Some(lag), Some(_)) => group.pending as u64 + lag as u64,
            // Redis cannot say (Redis 7.0 after some deletions): the
            // stream's length, which counts stored entries not yet trimmed
            // too, is a bound from above.
            (None, Some(_)) => {
                redis::cmd("XLEN")
                    .arg(&self.keys.stream)
                    .query_async(&mut self.conn)
                    .await?
            }
        };
        Ok(Measure {
            backlog,
            oldest_pending,
            first_undelivered,
            last_delivered,
        })
    }

    /// Trims the stream below the oldest entry still needed.
    async fn trim(&mut self, measured: &Measure) -> RedisResult<()> {
        let readers: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&self.keys.readers)
            .query_async(&mut self.conn)
            .await?;
        let now = now_ms();
        let stale_before = now.saturating_sub(READER_STALE.as_millis() as u64);
        let mut bound = measured
            .oldest_unstored()
            .unwrap_or(measured.last_delivered.next());
        for (reader, value) in readers {
            let mut parts = value.split(' ');
            let pos = parts.next().and_then(StreamPos::parse);
            let at: Option<u64> = parts.next().and_then(|t| t.parse().ok());
            match (pos, at) {
                (Some(pos), Some(at)) if at >= stale_before => bound = bound.min(pos.next()),
                _ => {
                    log::info!(
                        "live reader {reader} stopped reporting: it no longer holds the stream"
                    );
                    let _: RedisResult<()> = redis::cmd("HDEL")
                        .arg(&self.keys.readers)
                        .arg(&reader)
                        .query_async(&mut self.conn)
                        .await;
                }
            }
        }
        if bound == StreamPos::START {
            return Ok(());
        }
        redis::cmd("XTRIM")
            .arg(&self.keys.stream)
            .arg("MINID")
            .arg("=")
            .arg(bound.to_string())
            .query_async(&mut self.conn)
            .await
    }
}
