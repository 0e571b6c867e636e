//! The most recent events, newest first, in a fixed-size buffer.

use std::cell::OnceCell;
use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use crate::event::LiveEvent;
use crate::mem;
use crate::snapshot::RecentEvent;
use crate::time::{millis, second_key};

/// An owned copy of an event kept for `recent_events`. Its metadata stays
/// JSON text until a snapshot first shows it, and is parsed once.
#[derive(Debug)]
struct Kept {
    id: i64,
    timestamp: DateTime<Utc>,
    kind: Box<str>,
    session: Box<str>,
    url: Option<Box<str>>,
    referrer: Option<Box<str>>,
    metadata: Box<str>,
    parsed: OnceCell<serde_json::Value>,
}

impl Kept {
    fn order(&self) -> (DateTime<Utc>, i64) {
        (self.timestamp, self.id)
    }

    fn heap_bytes(&self) -> usize {
        let text = |s: &str| mem::heap(s.len());
        text(&self.kind)
            + text(&self.session)
            + self.url.as_deref().map_or(0, text)
            + self.referrer.as_deref().map_or(0, text)
            + text(&self.metadata)
    }
}

/// Up to `cap` events with the greatest `(timestamp, id)`, sorted descending.
#[derive(Debug)]
pub(crate) struct Recent {
    cap: usize,
    items: VecDeque<Kept>,
}

impl Recent {
    /// An empty buffer of `cap` events.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            items: VecDeque::with_capacity(cap),
        }
    }

    /// Keeps a copy of `ev` if it ranks among the `cap` most recent. Costs
    /// one comparison when it does not (the common case once full).
    pub(crate) fn push(&mut self, ev: &LiveEvent<'_>) {
        let key = (ev.timestamp, ev.id);
        if self.items.len() == self.cap && self.items.back().is_none_or(|last| key <= last.order())
        {
            return;
        }
        let pos = self
            .items
            .iter()
            .position(|e| key > e.order())
            .unwrap_or(self.items.len());
        if self.items.len() == self.cap {
            self.items.pop_back();
        }
        self.items.insert(
            pos,
            Kept {
                id: ev.id,
                timestamp: ev.timestamp,
                kind: ev.kind.into(),
                session: ev.session.into(),
                url: ev.url.map(Box::from),
                referrer: ev.referrer.map(Box::from),
                metadata: ev.metadata.into(),
                parsed: OnceCell::new(),
            },
        );
    }

    /// Drops the events dated after second `max_key`.
    pub(crate) fn purge_after(&mut self, max_key: i64) {
        self.items
            .retain(|e| second_key(millis(&e.timestamp)) <= max_key);
    }

    /// The events, newest first, as shown in a snapshot.
    pub(crate) fn events(&self) -> Vec<RecentEvent> {
        self.items
            .iter()
            .map(|e| RecentEvent {
                id: e.id,
                kind: e.kind.to_string(),
                timestamp: e.timestamp,
                url: e.url.as_deref().map(str::to_owned),
                referrer: e.referrer.as_deref().map(str::to_owned),
                metadata: e
                    .parsed
                    .get_or_init(|| crate::snapshot::parse_metadata(&e.metadata))
                    .clone(),
                session_token: e.session.to_string(),
            })
            .collect()
    }

    /// Number of events held.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Heap bytes, including the events' texts (not their parsed metadata,
    /// at most `cap` small JSON values).
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::vec::<Kept>(self.items.capacity())
            + self.items.iter().map(Kept::heap_bytes).sum::<usize>()
    }
}
