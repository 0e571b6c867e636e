//! A refcounted string table: each distinct text is stored once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::mem;

/// Id of an interned string.
pub(crate) type Id = u32;
/// "No string".
pub(crate) const NONE: Id = u32::MAX;

#[derive(Debug)]
struct Entry {
    /// `None` while the slot is on the free list.
    text: Option<Arc<str>>,
    /// Holders of this id (sessions, click buckets); at zero it is freed.
    refs: u32,
    /// A counter owned by the caller (visitors, clicks).
    count: u32,
}

/// Strings interned with a reference count and one caller counter each.
///
/// Invariant: `map` holds exactly the entries whose `text` is `Some`, and an
/// entry is freed as soon as `refs` drops to zero.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    map: HashMap<Arc<str>, Id>,
    entries: Vec<Entry>,
    free: Vec<Id>,
    text_bytes: usize,
}

impl Interner {
    /// Id of `s`, if interned.
    pub(crate) fn lookup(&self, s: &str) -> Option<Id> {
        self.map.get(s).copied()
    }

    /// Id of `s`, interning it with no reference when new.
    pub(crate) fn intern(&mut self, s: &str) -> Id {
        if let Some(id) = self.lookup(s) {
            return id;
        }
        let text: Arc<str> = Arc::from(s);
        self.text_bytes += mem::arc_str(s.len());
        let entry = Entry {
            text: Some(text.clone()),
            refs: 0,
            count: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                id
            }
            None => {
                // Ids stay below NONE: callers cap the number of holders far lower.
                let id = Id::try_from(self.entries.len()).unwrap_or(NONE - 1);
                self.entries.push(entry);
                id
            }
        };
        self.map.insert(text, id);
        id
    }

    /// Interns `s` and takes one reference on it.
    pub(crate) fn acquire(&mut self, s: &str) -> Id {
        let id = self.intern(s);
        self.add_ref(id);
        id
    }

    /// Takes one more reference on `id`.
    pub(crate) fn add_ref(&mut self, id: Id) {
        self.entries[id as usize].refs += 1;
    }

    /// Drops one reference on `id`, freeing it at zero.
    pub(crate) fn release(&mut self, id: Id) {
        let e = &mut self.entries[id as usize];
        e.refs -= 1;
        if e.refs == 0 {
            debug_assert_eq!(e.count, 0, "a freed string still has a count");
            if let Some(text) = e.text.take() {
                self.map.remove(&text);
                self.text_bytes -= mem::arc_str(text.len());
            }
            e.count = 0;
            self.free.push(id);
        }
    }

    /// The text of a live id.
    pub(crate) fn text(&self, id: Id) -> &str {
        self.entries[id as usize]
            .text
            .as_deref()
            .unwrap_or_default()
    }

    /// Adds `delta` to the counter of `id`.
    pub(crate) fn add_count(&mut self, id: Id, delta: u32) {
        self.entries[id as usize].count += delta;
    }

    /// Subtracts `delta` from the counter of `id`.
    pub(crate) fn sub_count(&mut self, id: Id, delta: u32) {
        self.entries[id as usize].count -= delta;
    }

    /// Live entries with a non-zero counter, as `(id, text, count)`.
    pub(crate) fn counted(&self) -> impl Iterator<Item = (Id, &str, u32)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.text {
                Some(t) if e.count > 0 => Some((i as Id, &**t, e.count)),
                _ => None,
            })
    }

    /// Number of interned strings.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Gives memory back after a spike: all of it when empty, else the
    /// map's excess capacity.
    pub(crate) fn shrink(&mut self) {
        if self.map.is_empty() {
            *self = Self::default();
        } else if self.map.capacity() > 4 * self.map.len() + 64 {
            self.map.shrink_to(2 * self.map.len());
        }
    }

    /// Heap bytes: table, entries, free list and the texts.
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::hash_map::<Arc<str>, Id>(self.map.capacity())
            + mem::vec::<Entry>(self.entries.capacity())
            + mem::vec::<Id>(self.free.capacity())
            + self.text_bytes
    }
}
