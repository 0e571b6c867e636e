//! The live figures pushed to dashboards on every tick.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};

use crate::event::LiveEvent;

/// The live figures at one instant; serializes to the `/stream` payload.
///
/// JSON names are part of the wire contract and never change; fields may be
/// added (those added later default when absent, so older payloads still
/// deserialize).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The `now` of the snapshot, as RFC 3339 UTC with whole seconds
    /// (`"2026-11-30T10:00:05Z"`; the fraction is cut, not rounded).
    #[serde(serialize_with = "rfc3339_secs")]
    pub timestamp: DateTime<Utc>,
    /// Sessions with an event in the active window and no `session_end` at
    /// or after their latest other event.
    pub active_users: u64,
    /// `visit` events in the minute window.
    pub visits_last_min: u64,
    /// Click labels of the click window, by count desc then label asc.
    pub top_clicks: Vec<LabelCount>,
    /// The most recent events, newest first (timestamp desc, then id desc).
    pub recent_events: Vec<RecentEvent>,
    /// Events of any type in the minute window.
    pub events_last_min: u64,
    /// Urls of active sessions, by visitors desc then url asc.
    pub top_pages: Vec<PageVisitors>,
    /// First referrers of active sessions, by visitors desc then referrer asc.
    pub top_referrers: Vec<ReferrerVisitors>,
    /// Countries of active sessions, by visitors desc then country asc.
    #[serde(default)]
    pub top_countries: Vec<CountryVisitors>,
    /// Device types of active sessions, by visitors desc then device asc.
    #[serde(default)]
    pub top_devices: Vec<DeviceVisitors>,
    /// Events dropped as bots ([`DROP_BOT`](crate::DROP_BOT)) in the minute
    /// window of the caller's clock.
    #[serde(default)]
    pub bots_last_min: u64,
    /// Events dropped in the minute window, per reason (only reasons with
    /// drops; `"bot"` is `bots_last_min`).
    #[serde(default)]
    pub dropped_last_min: BTreeMap<String, u64>,
}

/// One entry of `top_clicks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCount {
    /// The click label (`"unknown"` when the click had none).
    pub label: String,
    /// Clicks with this label in the click window (at least 1).
    pub count: u64,
}

/// One entry of `top_pages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageVisitors {
    /// The page url.
    pub url: String,
    /// Distinct visitors among the active sessions whose latest url is this
    /// one (at least 1).
    pub visitors: u64,
}

/// One entry of `top_referrers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferrerVisitors {
    /// The referrer.
    pub referrer: String,
    /// Distinct visitors among the active sessions whose first referrer is
    /// this one (at least 1).
    pub visitors: u64,
}

/// One entry of `top_countries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountryVisitors {
    /// The country (an ISO 3166-1 alpha-2 code, from the server).
    pub country: String,
    /// Distinct visitors among the active sessions from this country (at
    /// least 1).
    pub visitors: u64,
}

/// One entry of `top_devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceVisitors {
    /// The device type (`desktop`, `mobile`, `tablet` or `other`, from the
    /// server).
    pub device: String,
    /// Distinct visitors among the active sessions on this device type (at
    /// least 1).
    pub visitors: u64,
}

/// One entry of `recent_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentEvent {
    /// Database id.
    pub id: i64,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Event time, RFC 3339 UTC with `Z`, with only the non-zero fraction
    /// digits (`"2026-11-30T10:00:04Z"`, `"2026-11-30T10:00:04.250Z"`).
    #[serde(serialize_with = "rfc3339_auto")]
    pub timestamp: DateTime<Utc>,
    /// Page url.
    pub url: Option<String>,
    /// Referrer.
    pub referrer: Option<String>,
    /// The event's `data` object.
    pub metadata: serde_json::Value,
    /// Session token.
    pub session_token: String,
}

impl From<&LiveEvent<'_>> for RecentEvent {
    fn from(e: &LiveEvent<'_>) -> Self {
        Self {
            id: e.id,
            kind: e.kind.to_owned(),
            timestamp: e.timestamp,
            url: e.url.map(str::to_owned),
            referrer: e.referrer.map(str::to_owned),
            metadata: parse_metadata(e.metadata),
            session_token: e.session.to_owned(),
        }
    }
}

/// The `metadata` of a recent event: its JSON text parsed, `null` if invalid.
pub(crate) fn parse_metadata(json: &str) -> serde_json::Value {
    serde_json::from_str(json).unwrap_or_default()
}

fn rfc3339_secs<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn rfc3339_auto<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}
