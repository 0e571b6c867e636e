//! Events the caller dropped before storage (bots, ...): counts per reason
//! and per second of the caller's clock, for `bots_last_min` and
//! `dropped_last_min`.

use crate::mem;

/// One second's count (`key` = the second; `i64::MIN`: never used).
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: i64,
    count: u64,
}

const EMPTY: Slot = Slot {
    key: i64::MIN,
    count: 0,
};

/// The counts of one reason.
#[derive(Debug)]
struct Reason {
    name: Box<str>,
    /// Slot `key mod len` holds second `key`.
    slots: Box<[Slot]>,
}

/// Per-reason rings of one-second counts, a power of two at least
/// `window + 1` long, so the seconds of one window never share a slot.
///
/// Invariant: after [`expire`](Self::expire) every reason held has a count
/// in the window; a reason with none is freed.
#[derive(Debug)]
pub(crate) struct Dropped {
    reasons: Vec<Reason>,
    len: usize,
}

impl Dropped {
    /// No reason yet, for a window of `window` seconds.
    pub(crate) fn new(window: i64) -> Self {
        let len = usize::try_from(window + 1).unwrap_or(usize::MAX / 2);
        Self {
            reasons: Vec::new(),
            len: len.max(1).next_power_of_two(),
        }
    }

    fn index(&self, key: i64) -> usize {
        (key & (self.len as i64 - 1)) as usize
    }

    /// Adds `n` drops for `reason` in second `key`, the latest second of the
    /// clock. Returns `false` when the reason is new and `max_reasons` are
    /// held already.
    pub(crate) fn add(&mut self, reason: &str, key: i64, n: u64, max_reasons: usize) -> bool {
        let i = self.index(key);
        let at = match self.reasons.iter().position(|r| &*r.name == reason) {
            Some(at) => at,
            None if self.reasons.len() >= max_reasons => return false,
            None => {
                self.reasons.push(Reason {
                    name: reason.into(),
                    slots: vec![EMPTY; self.len].into_boxed_slice(),
                });
                self.reasons.len() - 1
            }
        };
        let slot = &mut self.reasons[at].slots[i];
        if slot.key != key {
            *slot = Slot { key, count: 0 };
        }
        slot.count = slot.count.saturating_add(n);
        true
    }

    fn sum(&self, reason: &Reason, end: i64, window: i64) -> u64 {
        reason
            .slots
            .iter()
            .filter(|s| s.key > end - window && s.key <= end)
            .map(|s| s.count)
            .fold(0, u64::saturating_add)
    }

    /// Frees the reasons with no count in the window `(end - window, end]`.
    pub(crate) fn expire(&mut self, end: i64, window: i64) {
        let mut reasons = std::mem::take(&mut self.reasons);
        reasons.retain(|r| self.sum(r, end, window) > 0);
        self.reasons = reasons;
    }

    /// Drops for `reason` in `(end - window, end]`.
    pub(crate) fn count(&self, reason: &str, end: i64, window: i64) -> u64 {
        self.reasons
            .iter()
            .find(|r| &*r.name == reason)
            .map_or(0, |r| self.sum(r, end, window))
    }

    /// `(reason, drops)` of every reason with drops in `(end - window, end]`.
    pub(crate) fn counts(&self, end: i64, window: i64) -> impl Iterator<Item = (&str, u64)> {
        self.reasons
            .iter()
            .map(move |r| (&*r.name, self.sum(r, end, window)))
            .filter(|(_, n)| *n > 0)
    }

    /// Heap bytes: the reasons, their names and rings.
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::vec::<Reason>(self.reasons.capacity())
            + self
                .reasons
                .iter()
                .map(|r| mem::heap(r.name.len()) + mem::vec::<Slot>(r.slots.len()))
                .sum::<usize>()
    }
}
