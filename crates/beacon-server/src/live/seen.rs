//! A bounded memory of events by `(session, public id)`: the buffered
//! mode's live feed counts each event once.

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Events remembered; the oldest are forgotten first. Far more than the
/// stream holds beyond the database in normal operation (the warm-up's
/// window plus what is not yet trimmed); 16 bytes or so each.
pub(super) const CAPACITY: usize = 1 << 20;

/// The remembered events, as 64-bit hashes (a false "seen" needs two
/// events among about a million to collide: about one chance in 2^44).
pub(super) struct Seen {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    cap: usize,
}

impl Seen {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Remembers the event; true when it was not remembered before.
    pub(super) fn insert(&mut self, session: &str, public_id: &str) -> bool {
        let mut hasher = DefaultHasher::new();
        (session, public_id).hash(&mut hasher);
        let key = hasher.finish();
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_new_once_and_the_oldest_are_forgotten_first() {
        let mut seen = Seen::new(2);
        assert!(seen.insert("s", "a"));
        assert!(!seen.insert("s", "a"));
        assert!(
            seen.insert("t", "a"),
            "the same id in another session is another event"
        );
        assert!(seen.insert("s", "b"));
        assert!(seen.insert("s", "a"), "forgotten after two newer ones");
    }
}
