//! The aggregator.

use chrono::{DateTime, Utc};

use crate::config::{secs_ceil, LiveConfig};
use crate::dropped::Dropped;
use crate::event::{truncate, LiveEvent, DROP_BOT, KIND_CLICK, KIND_VISIT};
use crate::recent::Recent;
use crate::ring::{ClickRing, SecondRing};
use crate::sessions::{Sessions, Touch};
use crate::snapshot::{
    CountryVisitors, DeviceVisitors, LabelCount, PageVisitors, ReferrerVisitors, Snapshot,
};
use crate::time::{ceil_div, millis, second_key};
use crate::visitors::{COUNTRY, DEVICE, REFERRER, URL};

/// Live aggregation of committed events: active users, last-minute counts,
/// top clicks, recent events, top pages, referrers, countries and devices,
/// and the events the caller dropped before storage.
///
/// Pure and single-threaded: no clock, no I/O, no locks (wrap it in a
/// `Mutex` to share it). Memory is bounded by the configuration (see the
/// crate documentation).
#[derive(Debug)]
pub struct LiveMetrics {
    config: LiveConfig,
    /// Window lengths in seconds / click buckets.
    active_s: i64,
    minute_s: i64,
    future_s: i64,
    click_bucket_ms: i64,
    click_buckets: i64,
    /// The aggregator's clock: the latest `now` given, as a second key.
    clock: Option<i64>,
    /// The oldest click bucket still inside the click window at `clock`
    /// (kept so that `record` does not divide for it).
    oldest_click_bucket: Option<i64>,
    minute: SecondRing,
    clicks: ClickRing,
    sessions: Sessions,
    recent: Recent,
    dropped: Dropped,
    rejected_future: u64,
    dropped_sessions: u64,
    dropped_labels: u64,
    dropped_reasons: u64,
}

/// Sizes and drop counters of a [`LiveMetrics`], for tests and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveStats {
    /// Sessions counted in `active_users`.
    pub active_sessions: usize,
    /// Sessions held in memory: active ones plus ended ones kept until they
    /// leave the active window (so a late event cannot revive them wrongly).
    pub tracked_sessions: usize,
    /// Distinct urls held by tracked sessions.
    pub interned_urls: usize,
    /// Distinct referrers held by tracked sessions.
    pub interned_referrers: usize,
    /// Distinct countries held by tracked sessions.
    pub interned_countries: usize,
    /// Distinct device types held by tracked sessions.
    pub interned_devices: usize,
    /// Distinct visitor ids among the active sessions (sessions without
    /// one are not counted here).
    pub active_visitor_ids: usize,
    /// Distinct click labels in the click window.
    pub interned_labels: usize,
    /// Events held for `recent_events`.
    pub recent_events: usize,
    /// Events rejected because they were dated more than `max_future` after
    /// the clock.
    pub rejected_future: u64,
    /// Events of new sessions refused because `max_sessions` was reached.
    pub dropped_sessions: u64,
    /// Clicks with a new label refused because `max_labels` was reached.
    pub dropped_labels: u64,
    /// Calls of [`LiveMetrics::record_dropped`] with a new reason refused
    /// because `max_drop_reasons` was reached.
    pub dropped_reasons: u64,
}

impl LiveMetrics {
    /// An empty aggregator. Its clock is unset until the first
    /// [`expire`](Self::expire) or [`snapshot`](Self::snapshot).
    pub fn new(config: LiveConfig) -> Self {
        let active_s = secs_ceil(config.active_window);
        let minute_s = secs_ceil(config.minute_window);
        let future_s = secs_ceil(config.max_future);
        let click_bucket_ms = secs_ceil(config.click_bucket) * 1000;
        let click_window_ms = secs_ceil(config.click_window) * 1000;
        let click_buckets = ceil_div(click_window_ms, click_bucket_ms);
        let future_buckets = ceil_div(future_s * 1000, click_bucket_ms);
        let ring_len = |w: i64, f: i64| usize::try_from(w + f + 2).unwrap_or(usize::MAX);
        let mut config = config;
        // Session indices stay below the visitors' paired flag (2^31).
        config.max_sessions = config.max_sessions.min((1 << 31) - 2);
        config.max_labels = config.max_labels.min(u32::MAX as usize - 2);
        Self {
            minute: SecondRing::new(ring_len(minute_s, future_s)),
            clicks: ClickRing::new(ring_len(click_buckets, future_buckets)),
            sessions: Sessions::new(ring_len(active_s, future_s)),
            recent: Recent::new(config.recent_events),
            dropped: Dropped::new(minute_s),
            config,
            active_s,
            minute_s,
            future_s,
            click_bucket_ms,
            click_buckets,
            clock: None,
            oldest_click_bucket: None,
            rejected_future: 0,
            dropped_sessions: 0,
            dropped_labels: 0,
            dropped_reasons: 0,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// Adds one committed event. Each event must be recorded once.
    ///
    /// Borrows the event: it copies only what it keeps (see [`LiveEvent`]),
    /// and freeing the caller's row is the caller's business, after
    /// releasing any lock it holds around this call.
    ///
    /// Out-of-order events land in the bucket of their own timestamp. An
    /// event dated more than `max_future` after the clock is rejected
    /// entirely; one too old for a window is left out of that window only
    /// (it can never be inside it again), and may still enter
    /// `recent_events`. Before the clock is set nothing is rejected.
    pub fn record(&mut self, event: &LiveEvent<'_>) {
        let ts = millis(&event.timestamp);
        let key = second_key(ts);
        let clock = self.clock;
        if clock.is_some_and(|c| key > c + self.future_s) {
            self.rejected_future += 1;
            return;
        }
        if clock.is_none_or(|c| key > c - self.minute_s) {
            self.minute.add(key, event.kind == KIND_VISIT);
        }
        if event.kind == KIND_CLICK {
            let bucket = ceil_div(ts, self.click_bucket_ms);
            if self.oldest_click_bucket.is_none_or(|b| bucket >= b) {
                let label = truncate(event.label(), self.config.max_label_bytes);
                if !self.clicks.add(bucket, label, self.config.max_labels) {
                    self.dropped_labels += 1;
                }
            }
        }
        if clock.is_none_or(|c| key > c - self.active_s) {
            let touched = self.sessions.touch(event, ts, &self.config);
            if touched == Touch::Full {
                self.dropped_sessions += 1;
            }
        }
        self.recent.push(event);
    }

    /// Counts `n` events that the caller dropped before storage at `now`,
    /// for `reason` (cut to `max_tag_bytes`): they show as
    /// `dropped_last_min` (and, for [`DROP_BOT`], `bots_last_min`) for a
    /// minute window.
    ///
    /// Advances the clock to `now` first, as [`expire`](Self::expire) does;
    /// the drops count at the clock (an earlier `now` counts as the
    /// clock's). A new reason beyond `max_drop_reasons` held at once is
    /// refused and counted in [`LiveStats::dropped_reasons`].
    pub fn record_dropped(&mut self, reason: &str, n: u64, now: DateTime<Utc>) {
        self.expire(now);
        let Some(clock) = self.clock else { return };
        if n == 0 {
            return;
        }
        let reason = truncate(reason, self.config.max_tag_bytes);
        if !self
            .dropped
            .add(reason, clock, n, self.config.max_drop_reasons)
        {
            self.dropped_reasons += 1;
        }
    }

    /// Advances the clock to `now` and evicts what left every window.
    ///
    /// The clock never goes back: an earlier `now` than a previous one is
    /// treated as the previous one. The first call also drops what was
    /// recorded before it with a timestamp more than `max_future` after
    /// `now` (a session with such an event is dropped as a whole).
    pub fn expire(&mut self, now: DateTime<Utc>) {
        let now_key = second_key(millis(&now));
        let first = self.clock.is_none();
        let clock = self.clock.map_or(now_key, |c| c.max(now_key));
        self.clock = Some(clock);
        self.oldest_click_bucket =
            Some(ceil_div(clock * 1000, self.click_bucket_ms) - self.click_buckets + 1);
        let max_key = clock + self.future_s;
        if first {
            self.minute.purge_after(max_key);
            self.recent.purge_after(max_key);
        }
        let end_bucket = ceil_div(clock * 1000, self.click_bucket_ms);
        let max_bucket = ceil_div(max_key * 1000, self.click_bucket_ms);
        self.clicks
            .expire(end_bucket - self.click_buckets, max_bucket);
        self.sessions
            .expire(clock - self.active_s, first.then_some(max_key));
        self.dropped.expire(clock, self.minute_s);
    }

    /// Expires state at `now`, then returns the figures at `now`.
    ///
    /// Every window is `(end - W, end]` at millisecond precision, where
    /// `end` is the clock (`now`, or the latest earlier `now` if later)
    /// rounded up to a whole second; for `top_clicks`, rounded up to a whole
    /// `click_bucket`.
    pub fn snapshot(&mut self, now: DateTime<Utc>) -> Snapshot {
        self.expire(now);
        let clock = self.clock.unwrap_or_else(|| second_key(millis(&now)));
        let (events, visits) = self.minute.sum(clock, self.minute_s);
        let end_bucket = ceil_div(clock * 1000, self.click_bucket_ms);
        Snapshot {
            timestamp: now,
            active_users: self.sessions.active() as u64,
            visits_last_min: visits,
            top_clicks: self
                .clicks
                .top(end_bucket, self.config.top_clicks)
                .into_iter()
                .map(|(label, count)| LabelCount {
                    label: label.to_owned(),
                    count,
                })
                .collect(),
            recent_events: self.recent.events(),
            events_last_min: events,
            top_pages: self
                .sessions
                .top(URL, self.config.top_pages)
                .into_iter()
                .map(|(url, visitors)| PageVisitors {
                    url: url.to_owned(),
                    visitors,
                })
                .collect(),
            top_referrers: self
                .sessions
                .top(REFERRER, self.config.top_referrers)
                .into_iter()
                .map(|(referrer, visitors)| ReferrerVisitors {
                    referrer: referrer.to_owned(),
                    visitors,
                })
                .collect(),
            top_countries: self
                .sessions
                .top(COUNTRY, self.config.top_countries)
                .into_iter()
                .map(|(country, visitors)| CountryVisitors {
                    country: country.to_owned(),
                    visitors,
                })
                .collect(),
            top_devices: self
                .sessions
                .top(DEVICE, self.config.top_devices)
                .into_iter()
                .map(|(device, visitors)| DeviceVisitors {
                    device: device.to_owned(),
                    visitors,
                })
                .collect(),
            bots_last_min: self.dropped.count(DROP_BOT, clock, self.minute_s),
            dropped_last_min: self
                .dropped
                .counts(clock, self.minute_s)
                .map(|(reason, n)| (reason.to_owned(), n))
                .collect(),
        }
    }

    /// Sessions counted in `active_users` as of the last `expire`/`snapshot`
    /// plus the events recorded since.
    pub fn active_sessions(&self) -> usize {
        self.sessions.active()
    }

    /// Sizes and drop counters.
    pub fn stats(&self) -> LiveStats {
        let interned = self.sessions.interned();
        LiveStats {
            active_sessions: self.sessions.active(),
            tracked_sessions: self.sessions.tracked(),
            interned_urls: interned[URL],
            interned_referrers: interned[REFERRER],
            interned_countries: interned[COUNTRY],
            interned_devices: interned[DEVICE],
            active_visitor_ids: self.sessions.visitor_ids(),
            interned_labels: self.clicks.labels(),
            recent_events: self.recent.len(),
            rejected_future: self.rejected_future,
            dropped_sessions: self.dropped_sessions,
            dropped_labels: self.dropped_labels,
            dropped_reasons: self.dropped_reasons,
        }
    }

    /// Bytes held by this aggregator, heap included: the struct, rings,
    /// session slots, hash tables (hashbrown layout), every interned string
    /// and token with its malloc chunk overhead, and the recent events with
    /// their texts. An estimate of what the allocator hands out, not of the
    /// process RSS.
    pub fn approx_memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.minute.memory_bytes()
            + self.clicks.memory_bytes()
            + self.sessions.memory_bytes()
            + self.recent.memory_bytes()
            + self.dropped.memory_bytes()
    }
}
