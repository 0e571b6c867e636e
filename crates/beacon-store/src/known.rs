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
//! committed.
//!
//! Sessions are deleted while servers run (retention, `beacon prune`,
//! `beacon forget`: `crate::retention`), by any instance or command. A
//! cached id of a deleted session would file new events under a row that
//! no longer exists, so the cache follows the database's deletion log
//! (the table `session_deletions`): it is current with one *epoch* of
//! that log, and every insert transaction, before it trusts a cached id,
//! reads the newest epoch and, when it moved, drops the ids deleted since
//! ([`KnownSessions::catch_up`]). Deletions and inserts exclude each other
//! (PostgreSQL: the ingest lock, exclusive for a deletion; SQLite: the one
//! write lock), so no deletion commits between that read and the insert's
//! commit. An entry is remembered only under the epoch its transaction
//! read: a batch that committed before a deletion it did not see caches
//! nothing.
use std::collections::{HashMap, HashSet};
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
    /// The epoch of the deletion log the entries are current with; `None`
    /// before the first transaction read it.
    epoch: Option<i64>,
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
        let mut g = self.lock();
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

    /// The epoch of the deletion log the entries are current with.
    pub fn epoch(&self) -> Option<i64> {
        self.lock().epoch
    }

    /// Brings the cache to the deletion log's epoch `newest`: drops the
    /// entries whose id is in `deleted` (the sessions deleted since the
    /// cache's epoch, or a superset), or every entry when `deleted` is
    /// `None` (the ids are no longer all logged). Nothing changes when the
    /// cache is at `newest` or past it already (another transaction
    /// caught up first).
    pub fn catch_up(&self, newest: i64, deleted: Option<&HashSet<i64>>) {
        let mut g = self.lock();
        if g.epoch.is_some_and(|e| e >= newest) {
            return;
        }
        match deleted {
            Some(ids) => {
                g.current.retain(|_, k| !ids.contains(&k.id));
                g.previous.retain(|_, k| !ids.contains(&k.id));
            }
            None => {
                g.current.clear();
                g.previous.clear();
            }
        }
        g.epoch = Some(newest);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every session.
    #[cfg(feature = "test-support")]
    pub fn clear(&self) {
        let mut g = self.lock();
        g.current.clear();
        g.previous.clear();
    }

    /// Remembers sessions written by a committed transaction that read
    /// the deletion log's epoch `epoch`. When the cache has moved past it
    /// since (a deletion committed after that transaction), nothing is
    /// remembered: one of the sessions may be among the deleted.
    pub fn remember(&self, sessions: impl Iterator<Item = (String, Known)>, epoch: i64) {
        let mut g = self.lock();
        if g.epoch != Some(epoch) {
            return;
        }
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

    /// A cache current with epoch 0, as after its first transaction.
    fn cache(capacity: usize) -> KnownSessions {
        let cache = KnownSessions::new(capacity);
        cache.catch_up(0, None);
        cache
    }

    #[test]
    fn remembers_and_forgets_the_oldest_generation() {
        let cache = cache(4);
        cache.remember(
            [("a".to_owned(), known(1)), ("b".to_owned(), known(2))].into_iter(),
            0,
        );
        assert_eq!(
            cache.lookup(["a", "b", "c"].into_iter()),
            [Some(known(1)), Some(known(2)), None]
        );
        // "c" fills a new generation; "a" and "b" are still found.
        cache.remember([("c".to_owned(), known(3))].into_iter(), 0);
        assert_eq!(cache.lookup(["b"].into_iter()), [Some(known(2))]);
        // "b" was moved forward with "c"; "d" starts another generation,
        // which drops "a" (not used since) but keeps "b" and "c".
        cache.remember([("d".to_owned(), known(4))].into_iter(), 0);
        assert_eq!(
            cache.lookup(["a", "b", "c", "d"].into_iter()),
            [None, Some(known(2)), Some(known(3)), Some(known(4))]
        );
    }

    #[test]
    fn an_update_replaces_the_entry() {
        let cache = cache(4);
        cache.remember([("a".to_owned(), Known { id: 1, empty: 7 })].into_iter(), 0);
        cache.remember([("a".to_owned(), Known { id: 1, empty: 0 })].into_iter(), 0);
        assert_eq!(cache.lookup(["a"].into_iter()), [Some(known(1))]);
    }

    #[test]
    fn catching_up_drops_the_deleted_ids_and_keeps_the_others() {
        let cache = cache(8);
        cache.remember(
            [("a".to_owned(), known(1)), ("b".to_owned(), known(2))].into_iter(),
            0,
        );
        cache.catch_up(1, Some(&HashSet::from([1])));
        assert_eq!(cache.epoch(), Some(1));
        assert_eq!(cache.lookup(["a", "b"].into_iter()), [None, Some(known(2))]);
    }

    #[test]
    fn catching_up_without_the_deleted_ids_forgets_everything() {
        let cache = cache(8);
        cache.remember([("a".to_owned(), known(1))].into_iter(), 0);
        cache.catch_up(5, None);
        assert_eq!(cache.lookup(["a"].into_iter()), [None]);
    }

    #[test]
    fn a_cache_past_an_epoch_does_not_go_back_to_it() {
        let cache = cache(8);
        cache.catch_up(3, Some(&HashSet::new()));
        cache.remember([("a".to_owned(), known(1))].into_iter(), 3);
        // A transaction that read epoch 2 catches up late: nothing moves.
        cache.catch_up(2, None);
        assert_eq!(cache.epoch(), Some(3));
        assert_eq!(cache.lookup(["a"].into_iter()), [Some(known(1))]);
    }

    #[test]
    fn sessions_written_before_a_deletion_the_cache_has_seen_are_not_remembered() {
        let cache = cache(8);
        cache.catch_up(1, Some(&HashSet::from([7])));
        // Committed under epoch 0, remembered after the cache saw epoch 1:
        // session 7 may be the deleted one.
        cache.remember([("s".to_owned(), known(7))].into_iter(), 0);
        assert_eq!(cache.lookup(["s"].into_iter()), [None]);
    }

    #[test]
    fn a_new_cache_remembers_nothing_until_it_read_an_epoch() {
        let cache = KnownSessions::new(8);
        assert_eq!(cache.epoch(), None);
        cache.remember([("s".to_owned(), known(7))].into_iter(), 0);
        assert_eq!(cache.lookup(["s"].into_iter()), [None]);
    }
}
