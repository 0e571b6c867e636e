//! The most recent events, newest first, in a fixed-size buffer.

use std::collections::VecDeque;

use crate::event::LiveEvent;
use crate::mem;
use crate::time::{millis, second_key};

/// Up to `cap` events with the greatest `(timestamp, id)`, sorted descending.
#[derive(Debug)]
pub(crate) struct Recent {
    cap: usize,
    items: VecDeque<LiveEvent>,
}

fn order(e: &LiveEvent) -> (chrono::DateTime<chrono::Utc>, i64) {
    (e.timestamp, e.id)
}

impl Recent {
    /// An empty buffer of `cap` events.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            items: VecDeque::with_capacity(cap),
        }
    }

    /// Keeps `ev` if it ranks among the `cap` most recent; returns the event
    /// that is no longer kept (`ev` itself or the one it pushed out).
    pub(crate) fn push(&mut self, ev: LiveEvent) -> Option<LiveEvent> {
        let key = order(&ev);
        if self.items.len() == self.cap && self.items.back().is_none_or(|last| key <= order(last)) {
            return Some(ev);
        }
        let pos = self
            .items
            .iter()
            .position(|e| key > order(e))
            .unwrap_or(self.items.len());
        let out = if self.items.len() == self.cap {
            self.items.pop_back()
        } else {
            None
        };
        self.items.insert(pos, ev);
        out
    }

    /// Drops the events dated after second `max_key`.
    pub(crate) fn purge_after(&mut self, max_key: i64) {
        self.items
            .retain(|e| second_key(millis(&e.timestamp)) <= max_key);
    }

    /// The events, newest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &LiveEvent> {
        self.items.iter()
    }

    /// Number of events held.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Heap bytes, including a rough cost of the events' strings and JSON.
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::vec::<LiveEvent>(self.items.capacity())
            + self
                .items
                .iter()
                .map(|e| {
                    mem::heap(e.kind.capacity())
                        + mem::heap(e.session.capacity())
                        + e.url.as_ref().map_or(0, |s| mem::heap(s.capacity()))
                        + e.referrer.as_ref().map_or(0, |s| mem::heap(s.capacity()))
                        + mem::json(&e.metadata)
                })
                .sum::<usize>()
    }
}
