//! Shared event generator of the benches: realistic tokens (~20 bytes),
//! urls (~40 bytes) and event mix.
// Each bench binary uses a different part of this module.
#![allow(dead_code, missing_docs)]

use beacon_metrics::LiveEvent;
use chrono::{DateTime, Duration, TimeZone, Utc};

/// An event as the server holds it once stored: owned strings, the click
/// label in its own column, metadata as JSON text.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub session: String,
    pub url: Option<String>,
    pub referrer: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub label: Option<String>,
    pub metadata: String,
    pub visitor: Option<i64>,
    pub country: Option<String>,
    pub device: Option<String>,
}

impl Event {
    /// The borrowed view fed to `record`, as the server builds it from a row.
    pub fn view(&self) -> LiveEvent<'_> {
        LiveEvent {
            id: self.id,
            kind: &self.kind,
            session: &self.session,
            url: self.url.as_deref(),
            referrer: self.referrer.as_deref(),
            timestamp: self.timestamp,
            label: self.label.as_deref(),
            metadata: &self.metadata,
            visitor: self.visitor,
            country: self.country.as_deref(),
            device: self.device.as_deref(),
        }
    }
}

/// A small xorshift generator: deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0)
        .single()
        .unwrap_or_default()
}

pub fn token(i: u64) -> String {
    format!("1764496800000-{i:06}")
}

pub fn url(i: u64) -> String {
    format!("https://site.example/articles/page-{i:05}")
}

pub fn referrer(i: u64) -> String {
    format!("https://referrer-{i:04}.example/")
}

const COUNTRIES: [&str; 20] = [
    "US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "ES", "IT", "NL", "PL", "SE", "AU", "MX", "KR",
    "CH", "BE", "AT", "PT",
];

/// The profile the server would give session `i`: one visitor in four has
/// two sessions (two tabs), 20 countries, mostly desktop and mobile. A
/// visitor id is a hash of the address and the user agent, so a visitor's
/// sessions share their country and device.
pub fn profile(i: u64) -> (i64, String, String) {
    let visitor = i * 4 / 5;
    let device = match visitor % 10 {
        0..5 => "desktop",
        5..9 => "mobile",
        _ => "tablet",
    };
    (
        -(visitor as i64) - 1,
        COUNTRIES[(visitor % 20) as usize].to_owned(),
        device.to_owned(),
    )
}

/// Events of `sessions` sessions, one every `step_ms` of event time, mixed
/// like the pixel's traffic: 35% heartbeat, 25% visit, 30% click, 8% scroll,
/// 2% session_end.
pub struct Traffic {
    rng: Rng,
    sessions: u64,
    step_ms: i64,
    next_id: i64,
    now: DateTime<Utc>,
    profiled: bool,
}

impl Traffic {
    pub fn new(sessions: u64, step_ms: i64) -> Self {
        Self {
            rng: Rng::new(0x5eed),
            sessions,
            step_ms,
            next_id: 1,
            now: start(),
            profiled: false,
        }
    }

    /// The same traffic, each event with its session's [`profile`].
    pub fn profiled(sessions: u64, step_ms: i64) -> Self {
        Self {
            profiled: true,
            ..Self::new(sessions, step_ms)
        }
    }

    /// Event time of the latest event.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    pub fn next_event(&mut self) -> Event {
        self.now += Duration::milliseconds(self.step_ms);
        self.next_id += 1;
        let s = self.rng.below(self.sessions);
        let roll = self.rng.below(100);
        let page = self.rng.below(200);
        let mut label = None;
        let (kind, metadata, referrer) = match roll {
            0..35 => (
                "heartbeat",
                r#"{"active_time":9000,"uptime":12000}"#.to_owned(),
                None,
            ),
            35..60 => (
                "visit",
                r#"{"city":"Paris","country":"FR","page_title":"Article","viewport":"1280x720"}"#
                    .to_owned(),
                (self.rng.below(2) == 0).then(|| referrer(self.rng.below(20))),
            ),
            60..90 => {
                let l = format!("Button {}", self.rng.below(50));
                let metadata = format!(r#"{{"element_type":"a","label":"{l}"}}"#);
                label = Some(l);
                ("click", metadata, None)
            }
            90..98 => ("scroll", r#"{"depth":50}"#.to_owned(), None),
            _ => ("session_end", r#"{"duration":64000}"#.to_owned(), None),
        };
        let mut event = Event {
            id: self.next_id,
            kind: kind.to_owned(),
            session: token(s),
            url: Some(url(page)),
            referrer,
            timestamp: self.now - Duration::milliseconds(self.rng.below(3_000) as i64),
            label,
            metadata,
            visitor: None,
            country: None,
            device: None,
        };
        if self.profiled {
            let (visitor, country, device) = profile(s);
            event.visitor = Some(visitor);
            event.country = Some(country);
            event.device = Some(device);
        }
        event
    }
}
