//! The per-IP limit on `/track`, and the task that keeps its memory bounded.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::config::RateLimit;
use crate::tasks::Task;

/// A rate limiter keyed by client IP.
pub type IpRateLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

/// How often the cleaner forgets the clients whose bucket is full again.
const CLEAN_EVERY: Duration = Duration::from_secs(60);

/// A limiter allowing `rate.count` requests per `rate.per` per IP, with a
/// burst of `rate.count`.
pub fn new_rate_limiter(rate: RateLimit) -> IpRateLimiter {
    let count = NonZeroU32::new(rate.count).unwrap_or(NonZeroU32::MIN);
    let period = rate.per / rate.count.max(1);
    let quota = governor::Quota::with_period(period)
        .unwrap_or_else(|| governor::Quota::per_second(count))
        .allow_burst(count);
    governor::RateLimiter::keyed(quota)
}

/// A limiter and its cleaner task, which forgets addresses whose bucket is
/// full again, so that memory follows the active clients, not every client
/// ever seen.
pub(crate) fn start(rate: RateLimit) -> (Arc<IpRateLimiter>, Task) {
    let limiter = Arc::new(new_rate_limiter(rate));
    let cleaner = {
        let limiter = Arc::clone(&limiter);
        Task::spawn("rate limiter cleaner", move |mut stop| async move {
            let mut every = tokio::time::interval(CLEAN_EVERY);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = every.tick() => {
                        limiter.retain_recent();
                        limiter.shrink_to_fit();
                    }
                }
            }
        })
    };
    (limiter, cleaner)
}
