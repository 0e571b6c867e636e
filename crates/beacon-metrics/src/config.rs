//! Configuration of [`LiveMetrics`](crate::LiveMetrics).

use std::time::Duration;

/// Windows, list sizes and memory caps of a [`LiveMetrics`](crate::LiveMetrics).
///
/// Durations are rounded up to whole seconds (whole `click_bucket`s for the
/// click window) and are at least one second; list sizes of zero give empty
/// lists. `LiveConfig::default()` is the documented dashboard setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConfig {
    /// A session is active when its latest event is younger than this (60 s).
    pub active_window: Duration,
    /// Window of `visits_last_min` and `events_last_min` (60 s).
    pub minute_window: Duration,
    /// Window of `top_clicks` (24 h).
    pub click_window: Duration,
    /// Bucket width of the click window; the window's end is rounded up to
    /// a whole bucket (60 s).
    pub click_bucket: Duration,
    /// Events dated more than this after the aggregator's clock (the latest
    /// `now` given to `expire`/`snapshot`) are rejected (15 min).
    pub max_future: Duration,
    /// Length of `top_clicks` (5).
    pub top_clicks: usize,
    /// Length of `recent_events` (25).
    pub recent_events: usize,
    /// Length of `top_pages` (5).
    pub top_pages: usize,
    /// Length of `top_referrers` (5).
    pub top_referrers: usize,
    /// Length of `top_countries` (10).
    pub top_countries: usize,
    /// Length of `top_devices` (5).
    pub top_devices: usize,
    /// Most sessions tracked at once; events of further new sessions are
    /// left out of the session-based figures and counted in
    /// [`LiveStats::dropped_sessions`](crate::LiveStats) (1,000,000).
    pub max_sessions: usize,
    /// Most distinct click labels tracked in the click window; clicks with a
    /// further new label are counted in
    /// [`LiveStats::dropped_labels`](crate::LiveStats) (10,000).
    pub max_labels: usize,
    /// Click labels are truncated to this many bytes, at a char boundary (256).
    pub max_label_bytes: usize,
    /// Urls and referrers are truncated to this many bytes, at a char
    /// boundary, before interning (2048).
    pub max_url_bytes: usize,
    /// Countries, device types and drop reasons are truncated to this many
    /// bytes, at a char boundary (64).
    pub max_tag_bytes: usize,
    /// Most distinct reasons of dropped events counted at once; drops for a
    /// further reason are counted in
    /// [`LiveStats::dropped_reasons`](crate::LiveStats) only (16).
    pub max_drop_reasons: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            active_window: Duration::from_secs(60),
            minute_window: Duration::from_secs(60),
            click_window: Duration::from_secs(24 * 3600),
            click_bucket: Duration::from_secs(60),
            max_future: Duration::from_secs(15 * 60),
            top_clicks: 5,
            recent_events: 25,
            top_pages: 5,
            top_referrers: 5,
            top_countries: 10,
            top_devices: 5,
            max_sessions: 1_000_000,
            max_labels: 10_000,
            max_label_bytes: 256,
            max_url_bytes: 2048,
            max_tag_bytes: 64,
            max_drop_reasons: 16,
        }
    }
}

/// Whole seconds, rounded up, at least one.
pub(crate) fn secs_ceil(d: Duration) -> i64 {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
    crate::time::ceil_div(ms, 1000).clamp(1, i64::MAX / 4)
}
