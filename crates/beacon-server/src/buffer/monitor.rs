//! The monitor: measures the backlog and the oldest unstored entry, keeps
//! the Redis health flag fresh, and trims the stream below everything
//! still needed.
//!
//! It also removes from the group the consumers of instances that are
//! gone: idle for [`CONSUMER_GONE_CLAIMS`] claim timeouts with nothing
//! pending (their entries claimed by the others), checked and deleted in
//! one script, so that a consumer that read meanwhile is never deleted
//! with its entries. A stopping instance removes its own at once.
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
/// A consumer idle for this many claim timeouts with nothing pending
/// belongs to an instance that is gone. A live consumer reads at least
/// every second (`drain::BLOCK`), so it is never idle that long.
pub(super) const CONSUMER_GONE_CLAIMS: u32 = 10;

/// Deletes the group's consumers that have nothing pending and are idle
/// for at least ARGV[2] ms (all of them, or only ARGV[3] when given), in
/// one step: Redis runs a script alone, so no consumer can read between
/// the check and the delete. Returns how many were deleted.
const DELETE_IDLE_CONSUMERS: &str = r"
local gone = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2])
     and (ARGV[3] == nil or ARGV[3] == f['name']) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    gone = gone + 1
  end
end
return gone
";

/// Removes consumers with nothing pending, idle for at least `idle`; only
/// `name` when given. Returns how many were removed.
pub(super) async fn delete_idle_consumers(
    conn: &mut ConnectionManager,
    keys: &Keys,
    idle: Duration,
    name: Option<&str>,
) -> RedisResult<u64> {
    // EVAL, not EVALSHA: sent about once per claim timeout, and a Redis
    // restarted without its script cache needs nothing reloaded.
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(DELETE_IDLE_CONSUMERS)
        .arg(1)
        .arg(&keys.stream)
        .arg(&keys.group)
        .arg(idle.as_millis() as u64);
    if let Some(name) = name {
        cmd.arg(name);
    }
    cmd.query_async(conn).await
}

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
    /// How long an entry stays with a consumer before another claims it.
    pub claim_idle: Duration,
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
            if round.is_multiple_of(self.sweep_every()) {
                let gone = self.claim_idle * CONSUMER_GONE_CLAIMS;
                match delete_idle_consumers(&mut self.conn, &self.keys, gone, None).await {
                    Ok(0) => {}
                    Ok(n) => log::info!(
                        "removed {n} consumers of stopped instances from the group {} (idle for {}s, nothing pending)",
                        self.keys.group,
                        gone.as_secs()
                    ),
                    Err(e) => log::debug!("consumer sweep skipped: {e}"),
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

    /// Measurements between two sweeps of gone consumers: about one claim
    /// timeout.
    fn sweep_every(&self) -> u32 {
        let rounds = self.claim_idle.as_millis() / MEASURE_EVERY.as_millis();
        u32::try_from(rounds).unwrap_or(u32::MAX).max(1)
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
