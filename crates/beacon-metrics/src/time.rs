//! Integer time keys.
//!
//! Every window is a half-open interval `(end - W, end]` of millisecond
//! timestamps. A bucket of width `B` ms with key `k` holds the timestamps in
//! `((k - 1) * B, k * B]`, so the key of a timestamp is `ceil(ts / B)` and a
//! window whose `end` is a multiple of `B` is exactly the union of the
//! buckets `end / B - W / B + 1 ..= end / B`.

use chrono::{DateTime, Utc};

/// `ceil(a / b)` for `b > 0`, also for negative `a`.
pub(crate) fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 {
        q
    } else {
        q + 1
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn millis(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The one-second bucket key of a millisecond timestamp.
pub(crate) fn second_key(ms: i64) -> i64 {
    ceil_div(ms, 1000)
}
