//! The pure half of a rollup pass: from a batch of committed events, the
//! sessions they belong to and what the rollups already hold for them, the
//! rows to add. No database here; the backends read the inputs and write
//! the [`Plan`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use beacon_model::EventKind;
use diesel::sql_types::{BigInt, Bool, Nullable, SmallInt, Text};
use diesel::QueryableByName;

use super::units::{day_of, place_item, quarter_of, Dim, Grain};

/// Label of a click without one (as the live stream shows it).
const UNKNOWN_LABEL: &str = "unknown";

/// A committed event not yet in the rollups, as read back from `events`.
#[derive(QueryableByName, Debug)]
pub(super) struct PendingEvent {
    #[diesel(sql_type = BigInt)]
    pub(super) session_id: i64,
    #[diesel(sql_type = Text)]
    pub(super) kind: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) url: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) referrer: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) label: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub(super) occurred_at: i64,
}

/// The columns [`PendingEvent`] reads.
pub(super) const PENDING_COLUMNS: &str = "session_id, kind, url, referrer, label, occurred_at";

/// A session of a pass's events, as the pass reads it: who is behind it,
/// its bounds now, and what the rollups last recorded for it.
#[derive(QueryableByName, Debug, Default)]
pub(super) struct PassSession {
    #[diesel(sql_type = BigInt)]
    pub(super) id: i64,
    /// Its visitor key ([`super::VISITOR_KEY`]).
    #[diesel(sql_type = BigInt)]
    pub(super) visitor: i64,
    #[diesel(sql_type = Bool)]
    pub(super) bot: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) country: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) region: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) city: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) browser: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) os: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) device: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub(super) first_seen: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) last_seen: i64,
    /// The quarter last recorded in `rollup_session` (none: no row yet).
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(super) quarter: Option<i64>,
    /// The duration last recorded in `rollup_session`.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(super) duration_us: Option<i64>,
}

/// The statement that reads [`PassSession`]s, given the condition on
/// `s.id` that picks them (ordered by id).
pub(super) fn pass_sessions_sql(condition: &str) -> String {
    format!(
        "SELECT s.id, {key} AS visitor, s.bot, s.country, s.region, s.city, s.browser, s.os, \
         s.device, s.first_seen, s.last_seen, r.quarter, r.duration_us FROM sessions s \
         LEFT JOIN rollup_session r ON r.session_id = s.id WHERE {condition} ORDER BY s.id",
        key = super::VISITOR_KEY
    )
}

/// The items of a session's dimensions, in [`Dim::SESSION`] order, as a
/// row of `rollup_seen_profile` holds them: an empty string for none.
///
/// A visitor's sightings with its session dimensions are stored as one row
/// per quarter and such a set, rather than one `rollup_seen` row per
/// dimension: most visitors are seen with one set only (their place and
/// user agent), so this writes one row where a row per dimension would be
/// six. The items a row stands for are those of [`SessionItems::items`];
/// rows of dimensions 4 to 9 in `rollup_seen`, written before, mean what
/// they meant and are read alongside.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct SessionItems(pub(super) [String; 6]);

impl SessionItems {
    /// Each (dimension, item) it has.
    pub(super) fn items(&self) -> impl Iterator<Item = (Dim, &str)> {
        Dim::SESSION
            .into_iter()
            .zip(&self.0)
            .filter(|(_, item)| !item.is_empty())
            .map(|(dim, item)| (dim, item.as_str()))
    }

    /// True when it has no item (a session without enrichment): such a
    /// set is not stored.
    fn is_empty(&self) -> bool {
        self.0.iter().all(String::is_empty)
    }
}

/// The columns of `rollup_seen_profile` that hold a [`SessionItems`], in
/// its order.
pub(super) const SESSION_ITEM_COLUMNS: &str = "country, region, city, browser, os, device";

/// A row of `rollup_seen_profile`, as read.
#[derive(QueryableByName, Debug)]
pub(super) struct SeenProfileRow {
    #[diesel(sql_type = BigInt)]
    visitor: i64,
    #[diesel(sql_type = BigInt)]
    quarter: i64,
    #[diesel(sql_type = Text)]
    country: String,
    #[diesel(sql_type = Text)]
    region: String,
    #[diesel(sql_type = Text)]
    city: String,
    #[diesel(sql_type = Text)]
    browser: String,
    #[diesel(sql_type = Text)]
    os: String,
    #[diesel(sql_type = Text)]
    device: String,
}

impl SeenProfileRow {
    /// Its visitor, items and quarter.
    pub(super) fn into_parts(self) -> (i64, SessionItems, i64) {
        let items = [
            self.country,
            self.region,
            self.city,
            self.browser,
            self.os,
            self.device,
        ];
        (self.visitor, SessionItems(items), self.quarter)
    }
}

/// The statement that reads the [`SeenProfileRow`]s of the visitors a
/// condition on `visitor` picks.
pub(super) fn seen_profiles_sql(condition: &str) -> String {
    format!(
        "SELECT visitor, quarter, {SESSION_ITEM_COLUMNS} FROM rollup_seen_profile \
         WHERE {condition}"
    )
}

/// What the rollups take from a session that is not a bot's: its visitor
/// key, and the items of its session dimensions ([`Dim::of_session`]).
#[derive(Debug)]
pub(super) struct Profile {
    visitor: i64,
    items: SessionItems,
}

/// A column's value, an empty one being as good as none (as in the
/// rebuild).
fn known(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The [`Profile`] of each session that is not a bot's, by id. Events of
/// the others (bots, and sessions no longer stored) are left out of the
/// rollups.
pub(super) fn profiles(sessions: &[PassSession]) -> HashMap<i64, Profile> {
    sessions
        .iter()
        .filter(|s| !s.bot)
        .map(|s| {
            let country = known(&s.country);
            let place = |name: &Option<String>| known(name).map(|n| place_item(country, n));
            let own = |value: &Option<String>| known(value).map(str::to_owned);
            let items = [
                own(&s.country),
                place(&s.region),
                place(&s.city),
                own(&s.browser),
                own(&s.os),
                own(&s.device),
            ]
            .map(Option::unwrap_or_default);
            let profile = Profile {
                visitor: s.visitor,
                items: SessionItems(items),
            };
            (s.id, profile)
        })
        .collect()
}

/// What an inserted event contributes.
#[derive(Debug)]
pub(super) struct Fact<'a> {
    session_id: i64,
    /// The visitor key of its session.
    visitor: i64,
    quarter: i64,
    visit: bool,
    click: bool,
    /// (dimension, item) pairs of the event's own dimensions seen
    /// (visitors); counted as [`counted`] says.
    items: Vec<(Dim, &'a str)>,
    /// The items of its session's dimensions, seen and counted likewise.
    profile: &'a SessionItems,
}

/// Whether an item of `dim` is counted in `rollup_counts` for an event:
/// never for [`Dim::All`] (its counts are `rollup_stats`), page views only
/// for the session dimensions, always for the others (a page or referrer
/// item is a page view's, a label a click's).
fn counted(dim: Dim, visit: bool) -> bool {
    match dim {
        Dim::All => false,
        d if d.of_session() => visit,
        _ => true,
    }
}

/// The facts of a batch of events, in the batch's order, leaving out the
/// events of sessions without a profile.
pub(super) fn facts<'a>(
    events: &'a [PendingEvent],
    profiles: &'a HashMap<i64, Profile>,
) -> Vec<Fact<'a>> {
    events
        .iter()
        .filter_map(|e| {
            let profile = profiles.get(&e.session_id)?;
            let visit = e.kind == EventKind::Visit.as_str();
            let click = e.kind == EventKind::Click.as_str();
            let mut items = vec![(Dim::All, "")];
            if visit {
                if let Some(url) = &e.url {
                    items.push((Dim::Page, url.as_str()));
                }
                if let Some(referrer) = e.referrer.as_deref().filter(|r| !r.is_empty()) {
                    items.push((Dim::Referrer, referrer));
                }
            }
            if click {
                items.push((Dim::Click, e.label.as_deref().unwrap_or(UNKNOWN_LABEL)));
            }
            Some(Fact {
                session_id: e.session_id,
                visitor: profile.visitor,
                quarter: quarter_of(e.occurred_at),
                visit,
                click,
                items,
                profile: &profile.items,
            })
        })
        .collect()
}

/// The quarters in which `facts` were seen with each (dimension, item),
/// the items of their sessions' dimensions included.
pub(super) fn sightings<'a>(facts: &[Fact<'a>]) -> BTreeMap<(Dim, &'a str), BTreeSet<i64>> {
    let mut out: BTreeMap<(Dim, &str), BTreeSet<i64>> = BTreeMap::new();
    for f in facts {
        for (dim, item) in f.items.iter().copied().chain(f.profile.items()) {
            out.entry((dim, item)).or_default().insert(f.quarter);
        }
    }
    out
}

/// Each set of session items `facts` were seen with, and the quarter: the
/// `rollup_seen_profile` rows they stand for.
pub(super) fn profile_sightings<'a>(facts: &[Fact<'a>]) -> BTreeSet<(&'a SessionItems, i64)> {
    facts
        .iter()
        .filter(|f| !f.profile.is_empty())
        .map(|f| (f.profile, f.quarter))
        .collect()
}

/// The distinct visitor keys of `facts`, sorted.
pub(super) fn visitors_of(facts: &[Fact<'_>]) -> Vec<i64> {
    let keys: BTreeSet<i64> = facts.iter().map(|f| f.visitor).collect();
    keys.into_iter().collect()
}

/// A row of `rollup_seen`, as read.
#[derive(QueryableByName, Debug)]
pub(super) struct SeenRow {
    #[diesel(sql_type = BigInt)]
    pub(super) visitor: i64,
    #[diesel(sql_type = SmallInt)]
    pub(super) dim: i16,
    #[diesel(sql_type = Text)]
    pub(super) item: String,
    #[diesel(sql_type = BigInt)]
    pub(super) quarter: i64,
}

/// A session's bounds now, and what the rollups last recorded for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionSpan {
    pub(super) id: i64,
    pub(super) first_seen: i64,
    pub(super) last_seen: i64,
    pub(super) quarter: Option<i64>,
    pub(super) duration_us: Option<i64>,
}

/// The spans of the sessions that are not bots' (bots' sessions are in no
/// rollup: not started, not counted).
pub(super) fn spans(sessions: &[PassSession]) -> Vec<SessionSpan> {
    sessions
        .iter()
        .filter(|s| !s.bot)
        .map(|s| SessionSpan {
            id: s.id,
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            quarter: s.quarter,
            duration_us: s.duration_us,
        })
        .collect()
}

/// A row to add to `rollup_seen`: a visitor was seen with an item in a
/// quarter. Fields in key order, so rows sort as the table's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Seen {
    pub(super) visitor: i64,
    pub(super) dim: Dim,
    pub(super) item: String,
    pub(super) quarter: i64,
}

/// A row to add to `rollup_seen_profile`: a visitor was seen with a set of
/// session items in a quarter. Fields in key order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct SeenProfile {
    pub(super) visitor: i64,
    pub(super) quarter: i64,
    pub(super) items: SessionItems,
}

/// The key of a `rollup_counts` row, in key order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct CountKey {
    pub(super) grain: Grain,
    pub(super) dim: Dim,
    pub(super) unit: i64,
    pub(super) item: String,
}

/// The key of a `rollup_visitors` row, in key order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct VisitorKey {
    pub(super) grain: Grain,
    pub(super) dim: Dim,
    pub(super) unit: i64,
    pub(super) item: String,
    /// The last quarter before the unit in which the visitor was seen with
    /// the item; -1 when none.
    pub(super) prev: i64,
}

/// A change to one quarter's row of `rollup_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct StatsDelta {
    pub(super) events: i64,
    pub(super) page_views: i64,
    pub(super) clicks: i64,
    /// Sessions whose first event is in the quarter.
    pub(super) sessions: i64,
    /// Summed duration of those sessions, µs.
    pub(super) duration_us: i64,
}

impl StatsDelta {
    fn add(&mut self, d: Self) {
        self.events += d.events;
        self.page_views += d.page_views;
        self.clicks += d.clicks;
        self.sessions += d.sessions;
        self.duration_us += d.duration_us;
    }

    fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

/// The new state of a session's `rollup_session` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionRollup {
    /// The quarter of its first event (replaces the stored one).
    pub(super) quarter: i64,
    /// Last seen − first seen, µs (replaces the stored one).
    pub(super) duration_us: i64,
    /// Events to add to its counter.
    pub(super) events: i64,
    /// Page views to add to its counter.
    pub(super) page_views: i64,
}

/// Everything one batch changes, in key order.
#[derive(Default, Debug)]
pub(super) struct Plan {
    pub(super) seen: BTreeSet<Seen>,
    pub(super) seen_profiles: BTreeSet<SeenProfile>,
    pub(super) counts: BTreeMap<CountKey, i64>,
    pub(super) visitors: BTreeMap<VisitorKey, i64>,
    /// By quarter.
    pub(super) stats: BTreeMap<i64, StatsDelta>,
    /// By session id.
    pub(super) sessions: BTreeMap<i64, SessionRollup>,
}

impl Plan {
    fn count(&mut self, dim: Dim, quarter: i64, item: &str, n: i64) {
        for (grain, unit) in [(Grain::Quarter, quarter), (Grain::Day, day_of(quarter))] {
            let key = CountKey {
                grain,
                dim,
                unit,
                item: item.to_owned(),
            };
            *self.counts.entry(key).or_default() += n;
        }
    }

    pub(super) fn stat(&mut self, quarter: i64, delta: StatsDelta) {
        self.stats.entry(quarter).or_default().add(delta);
    }

    pub(super) fn drop_zeros(&mut self) {
        self.stats.retain(|_, row| !row.is_zero());
        self.counts.retain(|_, n| *n != 0);
        self.visitors.retain(|_, n| *n != 0);
    }
}

/// One visitor unit of a visitor and item: the visitor was seen with the
/// item in `unit` (of `grain`), and last before that unit in `prev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VisitorUnit {
    pub(super) grain: Grain,
    pub(super) unit: i64,
    pub(super) prev: i64,
}

/// Visitor units of one visitor and item seen in `quarters` (sorted).
pub(super) fn visitor_units(quarters: &BTreeSet<i64>) -> Vec<VisitorUnit> {
    let mut out = Vec::with_capacity(quarters.len() + 2);
    let mut prev = -1;
    let mut last_day = None;
    for &q in quarters {
        out.push(VisitorUnit {
            grain: Grain::Quarter,
            unit: q,
            prev,
        });
        let day = day_of(q);
        if last_day != Some(day) {
            // The first quarter of a day: `prev` is the last one before it.
            out.push(VisitorUnit {
                grain: Grain::Day,
                unit: day,
                prev,
            });
            last_day = Some(day);
        }
        prev = q;
    }
    out
}

/// Events and page views a batch adds to one session.
#[derive(Debug, Clone, Copy, Default)]
struct Added {
    events: i64,
    page_views: i64,
}

/// Computes the changes of one batch from its facts, the quarters already
/// seen for its visitors (`rollup_seen` and `rollup_seen_profile` rows),
/// and its sessions' spans (those of [`spans`]).
pub(super) fn plan(
    facts: &[Fact<'_>],
    seen: Vec<SeenRow>,
    seen_profiles: Vec<SeenProfileRow>,
    spans: Vec<SessionSpan>,
) -> Plan {
    let mut plan = Plan::default();
    let mut new_seen: BTreeMap<(i64, Dim, &str), BTreeSet<i64>> = BTreeMap::new();
    let mut new_profiles: BTreeSet<(i64, &SessionItems, i64)> = BTreeSet::new();
    let mut added: HashMap<i64, Added> = HashMap::new();
    for f in facts {
        let delta = StatsDelta {
            events: 1,
            page_views: i64::from(f.visit),
            clicks: i64::from(f.click),
            ..StatsDelta::default()
        };
        plan.stat(f.quarter, delta);
        for &(dim, item) in &f.items {
            if counted(dim, f.visit) {
                plan.count(dim, f.quarter, item, 1);
            }
            new_seen
                .entry((f.visitor, dim, item))
                .or_default()
                .insert(f.quarter);
        }
        for (dim, item) in f.profile.items() {
            if counted(dim, f.visit) {
                plan.count(dim, f.quarter, item, 1);
            }
        }
        if !f.profile.is_empty() {
            new_profiles.insert((f.visitor, f.profile, f.quarter));
        }
        let a = added.entry(f.session_id).or_default();
        a.events += 1;
        a.page_views += i64::from(f.visit);
    }
    // The session items' sightings, once per visitor, set and quarter
    // rather than per event.
    for &(visitor, items, quarter) in &new_profiles {
        for (dim, item) in items.items() {
            new_seen
                .entry((visitor, dim, item))
                .or_default()
                .insert(quarter);
        }
    }

    let mut old_seen: HashMap<(i64, Dim, &str), BTreeSet<i64>> = HashMap::new();
    for row in &seen {
        // A dimension this version does not know is in no batch's facts.
        let Some(dim) = Dim::from_stored(row.dim) else {
            continue;
        };
        let key = (row.visitor, dim, row.item.as_str());
        if new_seen.contains_key(&key) {
            old_seen.entry(key).or_default().insert(row.quarter);
        }
    }
    let held_profiles: Vec<(i64, SessionItems, i64)> = seen_profiles
        .into_iter()
        .map(SeenProfileRow::into_parts)
        .collect();
    let mut old_profiles: HashSet<(i64, &SessionItems, i64)> = HashSet::new();
    for (visitor, items, quarter) in &held_profiles {
        old_profiles.insert((*visitor, items, *quarter));
        for (dim, item) in items.items() {
            let key = (*visitor, dim, item);
            if new_seen.contains_key(&key) {
                old_seen.entry(key).or_default().insert(*quarter);
            }
        }
    }
    for (key, quarters) in new_seen {
        let (visitor, dim, item) = key;
        let old = old_seen.remove(&key).unwrap_or_default();
        if quarters.is_subset(&old) {
            continue;
        }
        let mut merged = old.clone();
        for &quarter in &quarters {
            // The session dimensions' sightings are stored as sets, below.
            if merged.insert(quarter) && !dim.of_session() {
                plan.seen.insert(Seen {
                    visitor,
                    dim,
                    item: item.to_owned(),
                    quarter,
                });
            }
        }
        for (units, sign) in [(visitor_units(&old), -1), (visitor_units(&merged), 1)] {
            for u in units {
                let key = VisitorKey {
                    grain: u.grain,
                    dim,
                    unit: u.unit,
                    item: item.to_owned(),
                    prev: u.prev,
                };
                *plan.visitors.entry(key).or_default() += sign;
            }
        }
    }
    for (visitor, items, quarter) in new_profiles {
        if !old_profiles.contains(&(visitor, items, quarter)) {
            plan.seen_profiles.insert(SeenProfile {
                visitor,
                quarter,
                items: items.clone(),
            });
        }
    }

    for span in spans {
        let quarter = quarter_of(span.first_seen);
        let duration = span.last_seen - span.first_seen;
        let a = added.get(&span.id).copied().unwrap_or_default();
        let old = span.quarter.zip(span.duration_us);
        if old == Some((quarter, duration)) && a.events == 0 {
            continue;
        }
        if let Some((old_quarter, old_duration)) = old {
            let undo = StatsDelta {
                sessions: -1,
                duration_us: -old_duration,
                ..StatsDelta::default()
            };
            plan.stat(old_quarter, undo);
        }
        let started = StatsDelta {
            sessions: 1,
            duration_us: duration,
            ..StatsDelta::default()
        };
        plan.stat(quarter, started);
        let row = SessionRollup {
            quarter,
            duration_us: duration,
            events: a.events,
            page_views: a.page_views,
        };
        plan.sessions.insert(span.id, row);
    }
    plan.drop_zeros();
    plan
}

/// A session's earliest and latest event among a batch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SessionBounds {
    pub(super) session_id: i64,
    /// Event time, µs.
    pub(super) first: i64,
    /// Event time, µs.
    pub(super) last: i64,
}

/// Each session of `events` (bots' too: their bounds are the session's,
/// not a figure) with its earliest and latest event among them, by
/// session id.
pub(super) fn session_bounds(events: &[PendingEvent]) -> Vec<SessionBounds> {
    let mut bounds: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for e in events {
        let at = e.occurred_at;
        let b = bounds.entry(e.session_id).or_insert((at, at));
        b.0 = b.0.min(at);
        b.1 = b.1.max(at);
    }
    bounds
        .into_iter()
        .map(|(session_id, (first, last))| SessionBounds {
            session_id,
            first,
            last,
        })
        .collect()
}

/// Each span as the bounds update will leave it: widened to the bounds of
/// the events folded in (both sorted by session id).
pub(super) fn widen(spans: &mut [PassSession], bounds: &[SessionBounds]) {
    for span in spans {
        if let Ok(i) = bounds.binary_search_by_key(&span.id, |b| b.session_id) {
            span.first_seen = span.first_seen.min(bounds[i].first);
            span.last_seen = span.last_seen.max(bounds[i].last);
        }
    }
}

#[cfg(test)]
mod tests;
