//! What every handler shares.

use std::sync::Arc;

use beacon_model::Limits;
use beacon_store::Store;

use crate::clock::SharedClock;
use crate::intake::Intake;
use crate::live::{DropReason, Live};
use crate::rate_limit::IpRateLimiter;

/// Shared application state.
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Where `/track` hands its events: the ingest queue, or the Redis
    /// buffer.
    pub ingestor: Intake,
    /// Where handlers take the time from.
    pub clock: SharedClock,
    /// Input limits.
    pub limits: Limits,
    /// Live metrics and the stream broadcaster.
    pub live: Arc<Live>,
    /// Most concurrent `/stream` clients.
    pub stream_max: usize,
    /// Per-IP limit on `/track`, when configured.
    pub rate_limiter: Option<Arc<IpRateLimiter>>,
    /// Longest wait for a request body.
    pub request_timeout: std::time::Duration,
    /// Token required by the read endpoints; `None`: reads are open.
    pub read_token: Option<crate::config::ReadToken>,
    /// What the rollup worker has done.
    pub rollups: Arc<crate::rollups::RollupStats>,
    /// Whether the database answers, as the last storage call found it.
    pub health: Arc<crate::health::DatabaseHealth>,
    /// Buffered mode: asks Redis whether it answers.
    pub redis: Option<crate::buffer::RedisProbe>,
    /// Client addresses, user agents, places and visitor ids.
    pub enrichment: Arc<crate::enrich::Enrichment>,
}

impl AppState {
    /// Counts `n` events of a request dropped before storage for `reason`
    /// (bots, unless `--keep-bots`), now: `/stream` shows them for a minute
    /// (`bots_last_min`, `dropped_last_min`). The request's answer does not
    /// change. (`/metrics` has the totals, from enrichment.)
    pub fn dropped(&self, reason: DropReason, n: usize) {
        self.live.record_dropped(reason, n, self.clock.now());
    }
}
