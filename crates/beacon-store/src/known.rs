//! The sessions this [`crate::Store`] has written: a batch whose session is
//! known, and has nothing to add to it, skips the session upsert.
//!
//! A session's row changes after its creation only to fill a field that
//! is still empty (the upsert's `COALESCE`) and to move `first_seen` and
//! `last_seen`. The bounds are moved by the rollup pass, from the events it
//! folds in (see `rollup/postgres.rs` and `rollup/sqlite.rs`); so a batch
//! needs the upsert only for a session it does not know or a field it can
//! fill. With pixel traffic that is the first batch of each session: the
//! others (clicks, scrolls, heartbeats) cost no session statement.
//!
//! Bounded: two generations of at most `capacity / 2` entries each; when
//! the current one is full it becomes the previous one and the oldest is
//! dropped, so a session that keeps sending stays, and a forgotten one is
//! upserted once more. Entries are only ever added after their transaction
//! committed, and a token's id never changes (sessions are never deleted
//! by Beacon; see docs/operations.md for deleting them by hand).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Bits of the session fields the upsert fills only while empty.
pub(crate) mod field {
    pub const USER_AGENT: u8 = 1;
    pub const REFERRER: u8 = 2;
    pub const ENTRY_URL: u8 = 4;
    pub const COUNTRY: u8 = 8;
    pub const CITY: u8 = 16;
    /// The enrichment columns (visitor id, browser, system, device,
    /// region, bot), written together when the session starts.
    pub const PROFILE: u8 = 32;
}

/// What is remembered of a written session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Known {
    /// `sessions.id`.
    pub id: i64,
    /// The fields that may still be empty in the row ([`field`] bits): a
    /// batch that has one of them must upsert.
    pub empty: u8,
}

/// Most sessions remembered by default.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Debug)]
pub(crate) struct KnownSessions {
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<String, Known>,
    previous: HashMap<String, Known>,
    half: usize,
}

impl Generations {
    fn insert(&mut self, token: String, known: Known) {
        if self.current.len() >= self.half && !self.current.contains_key(&token) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(token, known);
    }
}

impl KnownSessions {
    /// Remembers at most `capacity` sessions (at least 2).
    pub fn new(capacity: usize) -> Self {
        Self {
            generations: Mutex::new(Generations {
                half: (capacity / 2).max(1),
                ..Generations::default()
            }),
        }
    }

    /// What is known of each token, in order.
    pub fn lookup<'a>(&self, tokens: impl Iterator<Item = &'a str>) -> Vec<Option<Known>> {
        let mut g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tokens
            .map(|token| {
                if let Some(known) = g.current.get(token) {
                    return Some(*known);
                }
                // Still in use: move it to the current generation.
                let (token, known) = g.previous.remove_entry(token)?;
                g.insert(token, known);
                Some(known)
            })
            .collect()
    }

    /// Forgets every session.
    #[cfg(feature = "test-support")]
    pub fn clear(&self) {
        let mut g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        g.current.clear();
        g.previous.clear();
    }

    /// Remembers sessions written by a committed transaction.
    pub fn remember(&self, sessions: impl Iterator<Item = (String, Known)>) {
        let mut g = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (token, known) in sessions {
            g.insert(token, known);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(id: i64) -> Known {
        Known { id, empty: 0 }
    }

    #[test]
    fn remembers_and_forgets_the_oldest_generation() {
        let cache = KnownSessions::new(4);
        cache.remember([("a".to_owned(), known(1)), ("b".to_owned(), known(2))].into_iter());
        assert_eq!(
            cache.lookup(["a", "b", "c"].into_iter()),
            [Some(known(1)), Some(known(2)), None]
        );
        // "c" fills a new generation; "a" and "b" are still found.
        cache.remember([("c".to_owned(), known(3))].into_iter());
        assert_eq!(cache.lookup(["b"].into_iter()), [Some(known(2))]);
        // "b" was moved forward with "c"; "d" starts another generation,
        // which drops "a" (not used since) but keeps "b" and "c".
        cache.remember([("d".to_owned(), known(4))].into_iter());
        assert_eq!(
            cache.lookup(["a", "b", "c", "d"].into_iter()),
            [None, Some(known(2)), Some(known(3)), Some(known(4))]
        );
    }

    #[test]
    fn an_update_replaces_the_entry() {
        let cache = KnownSessions::new(4);
        cache.remember([("a".to_owned(), Known { id: 1, empty: 7 })].into_iter());
        cache.remember([("a".to_owned(), Known { id: 1, empty: 0 })].into_iter());
        assert_eq!(cache.lookup(["a"].into_iter()), [Some(known(1))]);
    }
}
