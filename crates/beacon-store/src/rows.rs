use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::QueryableByName;

/// Converts stored microseconds to a time (out-of-range values clamp to the
/// epoch rather than fail a read).
pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// An event as stored, with its database id.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct StoredEvent {
    /// Database id, increasing with insertion.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// Public (idempotency) id.
    #[diesel(sql_type = Text)]
    pub public_id: String,
    /// Session token.
    #[diesel(sql_type = Text)]
    pub session_token: String,
    /// Event type.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// Page url.
    #[diesel(sql_type = Nullable<Text>)]
    pub url: Option<String>,
    /// Referrer.
    #[diesel(sql_type = Nullable<Text>)]
    pub referrer: Option<String>,
    /// User agent.
    #[diesel(sql_type = Nullable<Text>)]
    pub user_agent: Option<String>,
    /// Click label (`data.label` of a click).
    #[diesel(sql_type = Nullable<Text>)]
    pub label: Option<String>,
    /// The event's `data`, as JSON text.
    #[diesel(sql_type = Text)]
    pub metadata: String,
    /// Event time, microseconds since the Unix epoch.
    #[diesel(sql_type = BigInt)]
    pub occurred_at_us: i64,
    /// Receive time, microseconds since the Unix epoch.
    #[diesel(sql_type = BigInt)]
    pub received_at_us: i64,
}

impl StoredEvent {
    /// Event time.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        from_micros(self.occurred_at_us)
    }
    /// Receive time.
    pub fn received_at(&self) -> DateTime<Utc> {
        from_micros(self.received_at_us)
    }
}

/// A stored event as the live metrics need it: the event with its
/// session's visitor id, country and device type (read at warm-up).
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct LiveRow {
    /// The event.
    #[diesel(embed)]
    pub event: StoredEvent,
    /// The session's daily visitor id; none for sessions stored before
    /// visitor ids, which count as their own visitor.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub visitor_id: Option<i64>,
    /// The session's ISO 3166-1 alpha-2 country code.
    #[diesel(sql_type = Nullable<Text>)]
    pub country: Option<String>,
    /// The session's device type.
    #[diesel(sql_type = Nullable<Text>)]
    pub device: Option<String>,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct SessionRow {
    /// Database id.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// The pixel's session token.
    #[diesel(sql_type = Text)]
    pub token: String,
    /// User agent of the session's first event.
    #[diesel(sql_type = Nullable<Text>)]
    pub user_agent: Option<String>,
    /// Referrer of the session's first event.
    #[diesel(sql_type = Nullable<Text>)]
    pub referrer: Option<String>,
    /// Url of the session's first page view.
    #[diesel(sql_type = Nullable<Text>)]
    pub entry_url: Option<String>,
    /// ISO 3166-1 alpha-2 country code (from the GeoIP database, a trusted
    /// CDN header or the pixel's `data.country`, in that order).
    #[diesel(sql_type = Nullable<Text>)]
    pub country: Option<String>,
    /// Region (state, province).
    #[diesel(sql_type = Nullable<Text>)]
    pub region: Option<String>,
    /// City.
    #[diesel(sql_type = Nullable<Text>)]
    pub city: Option<String>,
    /// Browser family.
    #[diesel(sql_type = Nullable<Text>)]
    pub browser: Option<String>,
    /// Browser major version.
    #[diesel(sql_type = Nullable<Text>)]
    pub browser_version: Option<String>,
    /// Operating system family.
    #[diesel(sql_type = Nullable<Text>)]
    pub os: Option<String>,
    /// Operating system major version.
    #[diesel(sql_type = Nullable<Text>)]
    pub os_version: Option<String>,
    /// `desktop`, `mobile`, `tablet` or `other`.
    #[diesel(sql_type = Nullable<Text>)]
    pub device: Option<String>,
    /// Daily visitor id (negative); none for sessions stored before
    /// enrichment, which count as their own visitor.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub visitor_id: Option<i64>,
    /// Stored with `--keep-bots` only.
    #[diesel(sql_type = Bool)]
    pub bot: bool,
    /// Earliest event time, microseconds since the Unix epoch.
    #[diesel(sql_type = BigInt)]
    pub first_seen_us: i64,
    /// Latest event time, microseconds since the Unix epoch.
    #[diesel(sql_type = BigInt)]
    pub last_seen_us: i64,
}

impl SessionRow {
    /// Earliest event time.
    pub fn first_seen(&self) -> DateTime<Utc> {
        from_micros(self.first_seen_us)
    }
    /// Latest event time.
    pub fn last_seen(&self) -> DateTime<Utc> {
        from_micros(self.last_seen_us)
    }
}
