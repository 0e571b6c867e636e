//! What every handler shares.

use std::sync::Arc;

use beacon_model::Limits;
use beacon_store::Store;

use crate::ingest::Ingestor;
use crate::live::Live;

/// Shared application state.
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The ingest queue.
    pub ingestor: Ingestor,
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
}

/// A rate limiter keyed by client IP.
pub type IpRateLimiter = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;

/// A limiter allowing `rate.count` requests per `rate.period` per IP, with a
/// burst of `rate.count`.
pub fn new_rate_limiter(rate: crate::config::RateLimit) -> IpRateLimiter {
    let count = std::num::NonZeroU32::new(rate.count).unwrap_or(std::num::NonZeroU32::MIN);
    let period = rate.per / rate.count.max(1);
    let quota = governor::Quota::with_period(period)
        .unwrap_or_else(|| governor::Quota::per_second(count))
        .allow_burst(count);
    governor::RateLimiter::keyed(quota)
}
