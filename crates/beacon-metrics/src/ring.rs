//! Fixed-size rings of time buckets, tagged with their absolute key.
//!
//! Slot `key mod len` holds bucket `key`. A slot whose tag is older than an
//! incoming key is stale and recycled on insert (expiry on record); an
//! incoming key older than the tag is dropped, which happens only to events
//! that are already outside every window the ring can still be asked about.
//! The ring is sized `window + future + 2` buckets, so the keys that can
//! still matter (`(clock - window, clock + future]`) never share a slot.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::hash::IdHasher;
use crate::intern::{Id, Interner};
use crate::mem;

#[derive(Debug, Clone, Copy)]
struct SecondSlot {
    key: i64,
    events: u32,
    visits: u32,
}

const EMPTY_SECOND: SecondSlot = SecondSlot {
    key: i64::MIN,
    events: 0,
    visits: 0,
};

/// Per-second event and visit counts.
#[derive(Debug)]
pub(crate) struct SecondRing {
    /// A power of two long, so that `record` masks instead of dividing.
    slots: Vec<SecondSlot>,
}

impl SecondRing {
    /// A ring of at least `len` one-second buckets.
    pub(crate) fn new(len: usize) -> Self {
        Self {
            slots: vec![EMPTY_SECOND; len.max(1).next_power_of_two()],
        }
    }

    fn index(&self, key: i64) -> usize {
        (key & (self.slots.len() as i64 - 1)) as usize
    }

    /// Counts one event in second `key`.
    pub(crate) fn add(&mut self, key: i64, visit: bool) {
        let i = self.index(key);
        let s = &mut self.slots[i];
        if s.key != key {
            if s.key > key {
                return;
            }
            *s = SecondSlot {
                key,
                events: 0,
                visits: 0,
            };
        }
        s.events += 1;
        s.visits += u32::from(visit);
    }

    /// `(events, visits)` of the seconds `end - window + 1 ..= end`.
    pub(crate) fn sum(&self, end: i64, window: i64) -> (u64, u64) {
        let mut events = 0u64;
        let mut visits = 0u64;
        for key in end - window + 1..=end {
            let s = &self.slots[self.index(key)];
            if s.key == key {
                events += u64::from(s.events);
                visits += u64::from(s.visits);
            }
        }
        (events, visits)
    }

    /// Empties the buckets newer than `max_key`.
    pub(crate) fn purge_after(&mut self, max_key: i64) {
        for s in &mut self.slots {
            if s.key > max_key {
                *s = EMPTY_SECOND;
            }
        }
    }

    /// Heap bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::vec::<SecondSlot>(self.slots.capacity())
    }
}

type IdMap = HashMap<Id, u32, BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
struct ClickSlot {
    key: i64,
    /// Clicks per label id in this bucket; each id holds one label reference.
    counts: IdMap,
}

/// Click counts per label, per bucket, with running totals per label.
///
/// Invariant: a label's interner count is the sum of its counts over the
/// slots, and its reference count is the number of slots it appears in.
#[derive(Debug)]
pub(crate) struct ClickRing {
    slots: Vec<ClickSlot>,
    labels: Interner,
}

impl ClickRing {
    /// A ring of `len` buckets.
    pub(crate) fn new(len: usize) -> Self {
        Self {
            slots: (0..len.max(1))
                .map(|_| ClickSlot {
                    key: i64::MIN,
                    counts: IdMap::default(),
                })
                .collect(),
            labels: Interner::default(),
        }
    }

    fn index(&self, key: i64) -> usize {
        key.rem_euclid(self.slots.len() as i64) as usize
    }

    /// Counts one click on `label` in bucket `key`. Returns `false` when the
    /// label is new and `max_labels` distinct labels are already tracked.
    pub(crate) fn add(&mut self, key: i64, label: &str, max_labels: usize) -> bool {
        let i = self.index(key);
        if self.slots[i].key != key {
            if self.slots[i].key > key {
                return true;
            }
            self.clear_slot(i);
            self.slots[i].key = key;
        }
        let id = match self.labels.lookup(label) {
            Some(id) => id,
            None if self.labels.len() >= max_labels => return false,
            None => self.labels.intern(label),
        };
        let c = self.slots[i].counts.entry(id).or_insert(0);
        if *c == 0 {
            self.labels.add_ref(id);
        }
        *c += 1;
        self.labels.add_count(id, 1);
        true
    }

    fn clear_slot(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.key = i64::MIN;
        if slot.counts.is_empty() {
            return;
        }
        for (id, c) in slot.counts.drain() {
            self.labels.sub_count(id, c);
            self.labels.release(id);
        }
        if slot.counts.capacity() > 64 {
            slot.counts = IdMap::default();
        }
    }

    /// Empties the buckets with key `<= cutoff` or `> max_key`.
    pub(crate) fn expire(&mut self, cutoff: i64, max_key: i64) {
        for i in 0..self.slots.len() {
            let k = self.slots[i].key;
            if k != i64::MIN && (k <= cutoff || k > max_key) {
                self.clear_slot(i);
            }
        }
        self.labels.shrink();
    }

    /// Top `n` labels by clicks in buckets `<= end` (count desc, label asc).
    /// Call after [`expire`](Self::expire), so no bucket is older than the window.
    pub(crate) fn top(&self, end: i64, n: usize) -> Vec<(&str, u64)> {
        // Buckets after `end` exist only for clocks skewed into the future:
        // subtract them from the running totals.
        let mut later: Vec<(Id, u32)> = Vec::new();
        for s in &self.slots {
            if s.key != i64::MIN && s.key > end {
                later.extend(s.counts.iter().map(|(&id, &c)| (id, c)));
            }
        }
        let items = self.labels.counted().filter_map(|(id, text, count)| {
            let minus: u32 = later
                .iter()
                .filter(|(l, _)| *l == id)
                .map(|(_, c)| *c)
                .sum();
            let count = count - minus;
            (count > 0).then_some((text, u64::from(count)))
        });
        crate::topk::top_k(items, n)
    }

    /// Number of distinct labels tracked.
    pub(crate) fn labels(&self) -> usize {
        self.labels.len()
    }

    /// Heap bytes: slots, their maps and the label table.
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::vec::<ClickSlot>(self.slots.capacity())
            + self
                .slots
                .iter()
                .map(|s| mem::hash_map::<Id, u32>(s.counts.capacity()))
                .sum::<usize>()
            + self.labels.memory_bytes()
    }
}
