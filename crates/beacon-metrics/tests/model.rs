//! Property tests: every snapshot equals a brute-force recomputation over
//! the recorded events, for arbitrary arrival orders with bounded lateness.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration as StdDuration;

use beacon_metrics::{
    CountryVisitors, DeviceVisitors, LabelCount, LiveConfig, LiveEvent, LiveMetrics, PageVisitors,
    RecentEvent, ReferrerVisitors, Snapshot,
};

#[path = "common/owned_event.rs"]
mod owned_event;
use owned_event::Ev;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

fn ceil_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0)
}

fn ms(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn sec(t: &DateTime<Utc>) -> i64 {
    ceil_div(ms(t), 1000)
}

/// The reference: keeps every accepted event and recomputes everything.
struct Model {
    cfg: LiveConfig,
    clock: Option<i64>,
    accepted: Vec<Ev>,
    /// Per session, the events since it (re)entered the table.
    sessions: HashMap<String, Vec<Ev>>,
    /// `(second of the clock, reason, n)` of every drop.
    drops: Vec<(i64, String, u64)>,
}

/// Who counts as a visitor: a visitor id, or a session of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    Visitor(i64),
    Session(String),
}

fn s(d: StdDuration) -> i64 {
    i64::try_from(d.as_secs()).unwrap()
}

impl Model {
    fn new(cfg: LiveConfig) -> Self {
        Self {
            cfg,
            clock: None,
            accepted: Vec::new(),
            sessions: HashMap::new(),
            drops: Vec::new(),
        }
    }

    fn record_dropped(&mut self, reason: &str, n: u64, now: DateTime<Utc>) {
        self.expire(now);
        if n > 0 {
            self.drops.push((self.clock.unwrap(), reason.to_owned(), n));
        }
    }

    fn record(&mut self, e: Ev) {
        let k = sec(&e.timestamp);
        if self.clock.is_some_and(|c| k > c + s(self.cfg.max_future)) {
            return;
        }
        if self.clock.is_none_or(|c| k > c - s(self.cfg.active_window)) {
            self.sessions
                .entry(e.session.clone())
                .or_default()
                .push(e.clone());
        }
        self.accepted.push(e);
    }

    fn expire(&mut self, now: DateTime<Utc>) {
        let first = self.clock.is_none();
        let c = self.clock.map_or(sec(&now), |c| c.max(sec(&now)));
        self.clock = Some(c);
        let max = c + s(self.cfg.max_future);
        if first {
            self.accepted.retain(|e| sec(&e.timestamp) <= max);
            self.sessions
                .retain(|_, evs| evs.iter().all(|e| sec(&e.timestamp) <= max));
        }
        let cutoff = c - s(self.cfg.active_window);
        self.sessions
            .retain(|_, evs| evs.iter().map(|e| sec(&e.timestamp)).max().unwrap() > cutoff);
    }

    fn snapshot(&mut self, now: DateTime<Utc>) -> Snapshot {
        self.expire(now);
        let end = self.clock.unwrap();
        let minute = s(self.cfg.minute_window);
        let in_minute = |e: &&Ev| {
            let k = sec(&e.timestamp);
            k > end - minute && k <= end
        };
        let events_last_min = self.accepted.iter().filter(in_minute).count() as u64;
        let visits_last_min = self
            .accepted
            .iter()
            .filter(in_minute)
            .filter(|e| e.kind == "visit")
            .count() as u64;

        let bucket_ms = s(self.cfg.click_bucket) * 1000;
        let end_b = ceil_div(end * 1000, bucket_ms);
        let buckets = ceil_div(s(self.cfg.click_window) * 1000, bucket_ms);
        let mut labels: HashMap<String, u64> = HashMap::new();
        for e in &self.accepted {
            let b = ceil_div(ms(&e.timestamp), bucket_ms);
            if e.kind == "click" && b > end_b - buckets && b <= end_b {
                let l = e
                    .metadata
                    .get("label")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown");
                *labels.entry(l.to_owned()).or_default() += 1;
            }
        }
        let top_clicks = top(labels, self.cfg.top_clicks)
            .into_iter()
            .map(|(label, count)| LabelCount { label, count })
            .collect();

        let mut recent: Vec<&Ev> = self.accepted.iter().collect();
        recent.sort_by_key(|e| std::cmp::Reverse((e.timestamp, e.id)));
        recent.truncate(self.cfg.recent_events);

        let active_window = s(self.cfg.active_window);
        let mut active = 0;
        let mut pages: HashMap<String, HashSet<Who>> = HashMap::new();
        let mut refs: HashMap<String, HashSet<Who>> = HashMap::new();
        let mut countries: HashMap<String, HashSet<Who>> = HashMap::new();
        let mut devices: HashMap<String, HashSet<Who>> = HashMap::new();
        for (token, evs) in &self.sessions {
            let last = evs
                .iter()
                .filter(|e| e.kind != "session_end")
                .map(|e| ms(&e.timestamp))
                .max();
            let ended = evs
                .iter()
                .filter(|e| e.kind == "session_end")
                .map(|e| ms(&e.timestamp))
                .max();
            let Some(last) = last else { continue };
            if ended.is_some_and(|e| e >= last) || ceil_div(last, 1000) <= end - active_window {
                continue;
            }
            active += 1;
            // Generated profiles are the same for every event of a session
            // that carries one, as the server's are.
            let who = evs
                .iter()
                .find_map(|e| e.visitor)
                .map_or(Who::Session(token.clone()), Who::Visitor);
            let tag = |get: fn(&Ev) -> Option<&String>| {
                evs.iter()
                    .find_map(|e| get(e).filter(|v| !v.is_empty()).cloned())
            };
            if let Some(c) = tag(|e| e.country.as_ref()) {
                countries.entry(c).or_default().insert(who.clone());
            }
            if let Some(d) = tag(|e| e.device.as_ref()) {
                devices.entry(d).or_default().insert(who.clone());
            }
            let url = evs
                .iter()
                .filter(|e| e.url.as_deref().is_some_and(|u| !u.is_empty()))
                .max_by_key(|e| (ms(&e.timestamp), e.id));
            if let Some(e) = url {
                pages
                    .entry(e.url.clone().unwrap())
                    .or_default()
                    .insert(who.clone());
            }
            let referrer = evs
                .iter()
                .filter(|e| e.referrer.as_deref().is_some_and(|r| !r.is_empty()))
                .min_by_key(|e| (ms(&e.timestamp), e.id));
            if let Some(e) = referrer {
                refs.entry(e.referrer.clone().unwrap())
                    .or_default()
                    .insert(who.clone());
            }
        }
        let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
        for (key, reason, n) in &self.drops {
            if *key > end - minute && *key <= end {
                *dropped.entry(reason.clone()).or_default() += n;
            }
        }
        Snapshot {
            timestamp: now,
            active_users: active,
            visits_last_min,
            top_clicks,
            recent_events: recent
                .into_iter()
                .map(|e| RecentEvent::from(&e.view(&e.metadata.to_string())))
                .collect(),
            events_last_min,
            top_pages: top(distinct(pages), self.cfg.top_pages)
                .into_iter()
                .map(|(url, visitors)| PageVisitors { url, visitors })
                .collect(),
            top_referrers: top(distinct(refs), self.cfg.top_referrers)
                .into_iter()
                .map(|(referrer, visitors)| ReferrerVisitors { referrer, visitors })
                .collect(),
            top_countries: top(distinct(countries), self.cfg.top_countries)
                .into_iter()
                .map(|(country, visitors)| CountryVisitors { country, visitors })
                .collect(),
            top_devices: top(distinct(devices), self.cfg.top_devices)
                .into_iter()
                .map(|(device, visitors)| DeviceVisitors { device, visitors })
                .collect(),
            bots_last_min: dropped.get("bot").copied().unwrap_or(0),
            dropped_last_min: dropped,
        }
    }
}

/// Distinct visitors per value.
fn distinct(m: HashMap<String, HashSet<Who>>) -> HashMap<String, u64> {
    m.into_iter()
        .map(|(k, who)| (k, who.len() as u64))
        .collect()
}

fn top(m: HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = m.into_iter().filter(|(_, c)| *c > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap()
}

const KINDS: [&str; 6] = [
    "visit",
    "click",
    "scroll",
    "heartbeat",
    "session_end",
    "custom",
];
const URLS: [Option<&str>; 5] = [None, Some(""), Some("/a"), Some("/b"), Some("/c")];
const REFS: [Option<&str>; 4] = [None, Some(""), Some("r1"), Some("r2")];

/// One generated event: (session, kind, label, url, referrer, timestamp
/// ms, arrival delay ms, tick, carries the session's profile, drops
/// `(reason, n)` recorded on arrival).
type Gen = (
    usize,
    usize,
    usize,
    usize,
    usize,
    i64,
    i64,
    bool,
    bool,
    Option<(usize, u64)>,
);

/// Per generated session: visitor id, country, device type. Sessions 0
/// and 1 are one visitor in two tabs (on two devices), 2 and 4 another; 3
/// and 5 are visitors of their own; 5 never has a profile.
const PROFILES: [(Option<i64>, Option<&str>, Option<&str>); 6] = [
    (Some(-1), Some("FR"), Some("desktop")),
    (Some(-1), Some("FR"), Some("mobile")),
    (Some(-2), Some("DE"), Some("mobile")),
    (None, Some("DE"), None),
    (Some(-2), Some(""), Some("desktop")),
    (None, None, None),
];
const REASONS: [&str; 2] = ["bot", "spam"];

fn gen_event(span_ms: i64, max_early_ms: i64, max_late_ms: i64) -> impl Strategy<Value = Gen> {
    (
        0..6usize,
        prop_oneof![3 => Just(1usize), 6 => 0..6usize],
        0..6usize,
        0..5usize,
        0..4usize,
        (
            0..span_ms / 500,
            prop_oneof![Just(0i64), Just(1), Just(499), 0..500i64],
        )
            .prop_map(|(u, j)| u * 500 + j),
        prop_oneof![6 => 0..max_late_ms, 1 => -max_early_ms..0],
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.1, (0..2usize, 0..4u64)),
    )
}

fn build(i: usize, g: &Gen) -> Ev {
    let (session, kind, label, url, referrer, ts, _, _, profiled, _) = *g;
    let (visitor, country, device) = if profiled {
        PROFILES[session]
    } else {
        (None, None, None)
    };
    let metadata = match label {
        0 => json!({}),
        1 => json!({"label": 7}),
        2 => json!({"label": "Projects", "element_type": "a"}),
        3 => json!({"label": "Contact"}),
        4 => json!({"label": "About"}),
        _ => json!({"label": ""}),
    };
    Ev {
        id: (i as i64 * 7919) % 1009 + 1, // ids unrelated to time or arrival, unique below 1009
        kind: KINDS[kind].to_owned(),
        session: format!("s{session}"),
        url: URLS[url].map(str::to_owned),
        referrer: REFS[referrer].map(str::to_owned),
        timestamp: t0() + Duration::milliseconds(ts),
        metadata,
        visitor,
        country: country.map(str::to_owned),
        device: device.map(str::to_owned),
    }
}

fn small_config() -> LiveConfig {
    LiveConfig {
        click_window: StdDuration::from_secs(10 * 60),
        max_future: StdDuration::from_secs(120),
        top_clicks: 3,
        recent_events: 5,
        top_pages: 2,
        top_referrers: 2,
        top_countries: 1,
        top_devices: 2,
        ..LiveConfig::default()
    }
}

/// Feeds the events in arrival order, comparing every tick's snapshot and a
/// final one with the model; then checks the invariants and full expiry.
fn run(cfg: LiveConfig, gens: Vec<Gen>, extra_ms: i64) -> Result<(), TestCaseError> {
    let mut order: Vec<(i64, usize)> = gens
        .iter()
        .enumerate()
        .map(|(i, g)| (g.5 + g.6, i))
        .collect();
    order.sort();
    let start = t0() + Duration::milliseconds(order.first().map_or(0, |o| o.0) - 1000);
    let mut live = LiveMetrics::new(cfg.clone());
    let mut model = Model::new(cfg);
    live.expire(start);
    model.expire(start);
    let sessions: BTreeSet<usize> = gens.iter().map(|g| g.0).collect();
    let mut last = start;
    for (arrival, i) in order {
        let now = t0() + Duration::milliseconds(arrival);
        if gens[i].7 {
            let got = live.snapshot(now);
            prop_assert_eq!(&got, &model.snapshot(now), "tick at {}", arrival);
            prop_assert!(got.active_users <= sessions.len() as u64);
            prop_assert_eq!(got.active_users as usize, live.active_sessions());
        }
        if let Some((reason, n)) = gens[i].9 {
            live.record_dropped(REASONS[reason], n, now);
            model.record_dropped(REASONS[reason], n, now);
        }
        let event = build(i, &gens[i]);
        live.record(&event.view(&event.metadata.to_string()));
        model.record(build(i, &gens[i]));
        last = now;
    }
    let now = last + Duration::milliseconds(extra_ms);
    prop_assert_eq!(live.snapshot(now), model.snapshot(now), "final");

    let far = now + Duration::days(3);
    let s = live.snapshot(far);
    prop_assert_eq!(
        (s.active_users, s.visits_last_min, s.events_last_min),
        (0, 0, 0)
    );
    prop_assert!(s.top_clicks.is_empty() && s.top_pages.is_empty() && s.top_referrers.is_empty());
    prop_assert!(s.top_countries.is_empty() && s.top_devices.is_empty());
    prop_assert!(s.bots_last_min == 0 && s.dropped_last_min.is_empty());
    let st = live.stats();
    prop_assert_eq!(live.active_sessions(), 0);
    prop_assert_eq!(
        (
            st.tracked_sessions,
            st.interned_urls,
            st.interned_referrers,
            st.interned_labels
        ),
        (0, 0, 0, 0)
    );
    prop_assert_eq!(
        (
            st.interned_countries,
            st.interned_devices,
            st.active_visitor_ids
        ),
        (0, 0, 0)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn snapshots_match_brute_force_with_short_windows(
        gens in prop::collection::vec(gen_event(15 * 60_000, 4 * 60_000, 3 * 60_000), 0..120),
        extra in 0..(12 * 60_000i64),
    ) {
        run(small_config(), gens, extra)?;
    }

    #[test]
    fn snapshots_match_brute_force_with_default_windows(
        gens in prop::collection::vec(gen_event(3 * 60_000, 20 * 60_000, 2 * 60_000), 0..120),
        extra in 0..(3 * 60_000i64),
    ) {
        run(LiveConfig::default(), gens, extra)?;
    }

    #[test]
    fn dense_ticks_match_brute_force(
        gens in prop::collection::vec(gen_event(4 * 60_000, 150_000, 70_000), 0..60)
            .prop_map(|v| v.into_iter().map(|mut g| { g.7 = true; g }).collect::<Vec<_>>()),
    ) {
        run(small_config(), gens, 61_000)?;
    }
}
