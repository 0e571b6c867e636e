//! The write path: one transaction per group of events. What a batch says
//! about its sessions, and what a commit returns, are here; the statements
//! of each backend are in [`postgres`] and [`sqlite`].

mod postgres;
mod sqlite;

use std::collections::{BTreeMap, HashMap};

use beacon_model::{EventKind, NewEvent, VisitorProfile};
use diesel::connection::Connection;
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;

use crate::known::{field, Known};
use crate::store::Pools;
use crate::{Store, StoreError, StoredEvent};

pub use postgres::INGEST_LOCK;

/// What a batch says about one session: the upsert row.
struct SessionAgg<'a> {
    first_seen: i64,
    last_seen: i64,
    user_agent: Option<&'a str>,
    referrer: Option<&'a str>,
    entry_url: Option<&'a str>,
    country: Option<&'a str>,
    city: Option<&'a str>,
    /// Event time of the visit that gave entry url, country and city.
    first_visit: Option<i64>,
    /// Who is behind the session, from its earliest event (enrichment).
    profile: Option<&'a VisitorProfile>,
}

/// The profile columns of a session with none.
static NO_PROFILE: VisitorProfile = VisitorProfile {
    visitor_id: None,
    browser: None,
    browser_version: None,
    os: None,
    os_version: None,
    device: None,
    country: None,
    region: None,
    city: None,
    bot: false,
};

impl<'a> SessionAgg<'a> {
    /// The session's country: the profile's code when the events were
    /// enriched, else what the pixel's first page view said.
    fn country(&self) -> Option<&'a str> {
        match self.profile {
            Some(p) => p.country.as_deref(),
            None => self.country,
        }
    }

    /// The session's city, as [`SessionAgg::country`].
    fn city(&self) -> Option<&'a str> {
        match self.profile {
            Some(p) => p.city.as_deref(),
            None => self.city,
        }
    }

    /// The profile columns (all empty without enrichment).
    fn profile(&self) -> &'a VisitorProfile {
        self.profile.unwrap_or(&NO_PROFILE)
    }
}

impl SessionAgg<'_> {
    /// The fields this batch has no value for ([`field`] bits).
    fn empty_fields(&self) -> u8 {
        [
            (self.user_agent, field::USER_AGENT),
            (self.referrer, field::REFERRER),
            (self.entry_url, field::ENTRY_URL),
            (self.country(), field::COUNTRY),
            (self.city(), field::CITY),
            (self.profile.map(|_| ""), field::PROFILE),
        ]
        .into_iter()
        .filter(|(value, _)| value.is_none())
        .fold(0, |bits, (_, bit)| bits | bit)
    }
}

/// Every [`field`] bit.
const ALL_FIELDS: u8 = field::USER_AGENT
    | field::REFERRER
    | field::ENTRY_URL
    | field::COUNTRY
    | field::CITY
    | field::PROFILE;

/// A session the batch must upsert: its token, what the batch says about
/// it, and the fields its row may still have empty before the upsert
/// ([`ALL_FIELDS`] when not known).
struct Upsert<'s, 'a> {
    token: &'s str,
    agg: &'s SessionAgg<'a>,
    empty: u8,
}

fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// Sessions of the batch, deduplicated and sorted by token: sorted so that
/// two writers upserting overlapping sessions lock rows in the same order
/// and cannot deadlock; deduplicated because PostgreSQL refuses an upsert
/// that touches one row twice.
fn sessions_of(events: &[NewEvent]) -> BTreeMap<&str, SessionAgg<'_>> {
    let mut sessions: BTreeMap<&str, SessionAgg<'_>> = BTreeMap::new();
    for e in events {
        let at = micros(e.occurred_at());
        let agg = sessions
            .entry(e.session().as_str())
            .or_insert_with(|| SessionAgg {
                first_seen: at,
                last_seen: at,
                user_agent: e.user_agent(),
                referrer: e.referrer(),
                entry_url: None,
                country: None,
                city: None,
                first_visit: None,
                profile: e.profile(),
            });
        if at < agg.first_seen {
            agg.first_seen = at;
            agg.user_agent = e.user_agent().or(agg.user_agent);
            agg.referrer = e.referrer().or(agg.referrer);
            agg.profile = e.profile().or(agg.profile);
        }
        agg.last_seen = agg.last_seen.max(at);
        if *e.kind() == EventKind::Visit && agg.first_visit.is_none_or(|v| at < v) {
            agg.first_visit = Some(at);
            agg.entry_url = e.url();
            agg.country = e.data_str("country");
            agg.city = e.data_str("city");
        }
    }
    sessions
}

#[derive(QueryableByName)]
struct SessionId {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    token: String,
}

#[derive(QueryableByName, Debug)]
struct InsertedEvent {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    session_id: i64,
    #[diesel(sql_type = Text)]
    public_id: String,
}

/// The id of an event's session. Every session of a batch has one once its
/// upserts ran (upserted, or known to this store); a missing one would
/// store the event under no session, so the batch fails instead.
fn session_id(ids: &HashMap<String, i64>, e: &NewEvent) -> Result<i64, StoreError> {
    ids.get(e.session().as_str())
        .copied()
        .ok_or(StoreError::MissingSession)
}

/// What one committed batch inserted: the rows the database returned. Join
/// them with the batch's events through [`Inserted::stored_events`], which
/// can run after the commit has been acknowledged, off the writer's path.
#[derive(Debug)]
pub struct Inserted {
    session_ids: HashMap<String, i64>,
    /// Rows the duplicate-checking insert returned.
    rows: Vec<InsertedEvent>,
    /// `(index in the batch, id)` of the events written without a
    /// duplicate check (server-generated ids), in index order.
    copied: Vec<(usize, i64)>,
}

impl Inserted {
    /// Events that were new (not already stored).
    pub fn len(&self) -> usize {
        self.rows.len() + self.copied.len()
    }

    /// True when every event of the batch was already stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The new events of `events` (the batch given to [`Store::insert`]) as
    /// stored, in input order.
    pub fn stored_events(&self, events: &[NewEvent]) -> Vec<StoredEvent> {
        let mut out = Vec::with_capacity(self.len());
        out.extend(self.new_events(events).map(|(id, e)| StoredEvent {
            id,
            public_id: e.id().as_str().to_owned(),
            session_token: e.session().as_str().to_owned(),
            kind: e.kind().as_str().to_owned(),
            url: e.url().map(str::to_owned),
            referrer: e.referrer().map(str::to_owned),
            user_agent: e.user_agent().map(str::to_owned),
            label: e.label().map(str::to_owned),
            metadata: e.data_json().to_owned(),
            occurred_at_us: micros(e.occurred_at()),
            received_at_us: micros(e.received_at()),
        }));
        out
    }

    /// The new events of `events` (the batch given to [`Store::insert`]),
    /// borrowed, each with its `events.id`, in input order: what
    /// [`Inserted::stored_events`] copies, for a caller that only reads
    /// them.
    pub fn new_events<'e>(
        &'e self,
        events: &'e [NewEvent],
    ) -> impl Iterator<Item = (i64, &'e NewEvent)> + 'e {
        // Keys borrow the returned rows: no allocation per event to join them.
        let mut checked: HashMap<(i64, &str), i64> = self
            .rows
            .iter()
            .map(|r| ((r.session_id, r.public_id.as_str()), r.id))
            .collect();
        let mut copied = self.copied.iter().peekable();
        events.iter().enumerate().filter_map(move |(index, e)| {
            if let Some((_, id)) = copied.next_if(|(i, _)| *i == index) {
                return Some((*id, e));
            }
            // Every event's session has an id: the insert checked it
            // before it built `self`.
            let session_id = *self.session_ids.get(e.session().as_str())?;
            // `remove`, so a duplicate within the batch maps to the one row.
            let id = checked.remove(&(session_id, e.id().as_str()))?;
            Some((id, e))
        })
    }
}

impl Store {
    /// Stores a group of events in one transaction and returns the events
    /// that were new (an event whose `(session, id)` is already stored is
    /// skipped, which makes retries idempotent), in input order.
    ///
    /// Either everything is committed or nothing is.
    pub fn insert_batch(&self, events: &[NewEvent]) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self.insert(events)?.stored_events(events))
    }

    /// [`Store::insert_batch`] without building the stored events: what the
    /// database returned, to be joined with `events` later if needed.
    pub fn insert(&self, events: &[NewEvent]) -> Result<Inserted, StoreError> {
        if events.is_empty() {
            return Ok(Inserted {
                session_ids: HashMap::new(),
                rows: vec![],
                copied: vec![],
            });
        }
        let sessions = sessions_of(events);
        // A known session with nothing to fill skips the upsert: its bounds
        // are moved by the rollup pass (see `known.rs`).
        let known = self.known.lookup(sessions.keys().copied());
        let mut ids = HashMap::with_capacity(sessions.len());
        let mut upserts: Vec<Upsert<'_, '_>> = Vec::new();
        for ((token, agg), known) in sessions.iter().zip(known) {
            match known {
                Some(k) if k.empty & !agg.empty_fields() == 0 => {
                    ids.insert((*token).to_owned(), k.id);
                }
                _ => upserts.push(Upsert {
                    token,
                    agg,
                    empty: known.map_or(ALL_FIELDS, |k| k.empty),
                }),
            }
        }
        let inserted = match &*self.pools {
            Pools::Pg(pool) => {
                let mut conn = pool.get()?;
                conn.transaction(|conn| postgres::insert(conn, &upserts, ids, events))?
            }
            Pools::Sqlite(pool) => {
                let (_turn, mut conn) = self.sqlite_write_conn(pool)?;
                conn.immediate_transaction(|conn| sqlite::insert(conn, &upserts, ids, events))?
            }
        };
        // Committed: the upserted sessions exist with these ids.
        self.known.remember(upserts.iter().filter_map(|u| {
            let id = *inserted.session_ids.get(u.token)?;
            let known = Known {
                id,
                empty: u.empty & u.agg.empty_fields(),
            };
            Some((u.token.to_owned(), known))
        }));
        Ok(inserted)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_event_whose_session_has_no_id_is_an_error_not_session_zero() {
        let received = chrono::DateTime::parse_from_rfc3339("2026-11-30T10:01:00Z").unwrap();
        let events = crate::testing::parse_events(
            r#"{"type":"visit","sessionId":"s","url":"https://site/"}"#,
            received.to_utc(),
            None,
        );
        let mut ids = HashMap::new();
        assert!(matches!(
            session_id(&ids, &events[0]),
            Err(StoreError::MissingSession)
        ));
        ids.insert("s".to_owned(), 7);
        assert_eq!(session_id(&ids, &events[0]).unwrap(), 7);
    }
}
