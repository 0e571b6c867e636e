//! A refcounted string table: each distinct text is stored once.

use hashbrown::hash_table::{Entry as Slot, HashTable};

use crate::chunks::ChunkVec;
use crate::hash::StrHasher;
use crate::mem;

/// Id of an interned string.
pub(crate) type Id = u32;
/// "No string".
pub(crate) const NONE: Id = u32::MAX;

#[derive(Debug)]
struct Entry {
    /// `None` while the slot is on the free list.
    text: Option<Box<str>>,
    /// Holders of this id (sessions, click buckets); at zero it is freed.
    refs: u32,
    /// A counter owned by the caller (visitors, clicks).
    count: u32,
}

/// Strings interned with a reference count and one caller counter each.
///
/// The table holds ids only (4 bytes a bucket) and compares through
/// `entries`, so each text is stored once, in a plain `Box<str>` (no `Arc`
/// header).
///
/// Invariant: `table` holds exactly the ids whose entry's `text` is `Some`,
/// each under the hash of its text, and an entry is freed as soon as `refs`
/// drops to zero.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    table: HashTable<Id>,
    hasher: StrHasher,
    entries: ChunkVec<Entry>,
    free: Vec<Id>,
    text_bytes: usize,
}

impl Interner {
    /// Id of `s`, if interned.
    pub(crate) fn lookup(&self, s: &str) -> Option<Id> {
        let entries = &self.entries;
        self.table
            .find(self.hasher.hash_str(s), |&id| {
                entries[id as usize].text.as_deref() == Some(s)
            })
            .copied()
    }

    /// Id of `s`, interning it with no reference when new. Hashes `s` once.
    pub(crate) fn intern(&mut self, s: &str) -> Id {
        let Self {
            table,
            hasher,
            entries,
            free,
            text_bytes,
        } = self;
        let found = table.entry(
            hasher.hash_str(s),
            |&id| entries[id as usize].text.as_deref() == Some(s),
            |&id| hasher.hash_str(entries[id as usize].text.as_deref().unwrap_or_default()),
        );
        let vacant = match found {
            Slot::Occupied(o) => return *o.get(),
            Slot::Vacant(v) => v,
        };
        *text_bytes += mem::heap(s.len());
        let entry = Entry {
            text: Some(Box::from(s)),
            refs: 0,
            count: 0,
        };
        let id = match free.pop() {
            Some(id) => {
                entries[id as usize] = entry;
                id
            }
            // Ids stay below NONE: callers cap the number of holders far lower.
            None => Id::try_from(entries.push(entry)).unwrap_or(NONE - 1),
        };
        vacant.insert(id);
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
                let hash = self.hasher.hash_str(&text);
                if let Ok(found) = self.table.find_entry(hash, |&other| other == id) {
                    found.remove();
                }
                self.text_bytes -= mem::heap(text.len());
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
        self.table.len()
    }

    /// Gives memory back after a spike: all of it when empty, else the
    /// map's excess capacity.
    pub(crate) fn shrink(&mut self) {
        if self.table.is_empty() {
            if !self.entries.is_empty() {
                *self = Self::default();
            }
        } else if self.table.capacity() > 4 * self.table.len() + 64 {
            let Self {
                table,
                hasher,
                entries,
                ..
            } = self;
            table.shrink_to(2 * table.len(), |&id| {
                hasher.hash_str(entries[id as usize].text.as_deref().unwrap_or_default())
            });
        }
    }

    /// Heap bytes: table, entries, free list and the texts.
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::hash_table::<Id>(self.table.capacity())
            + self.entries.memory_bytes()
            + mem::vec::<Id>(self.free.capacity())
            + self.text_bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::Interner;

    #[test]
    fn ids_texts_and_lookups_survive_frees_and_reuse() {
        let mut t = Interner::default();
        let ids: Vec<_> = (0..1_000)
            .map(|i| t.acquire(&format!("https://site.example/é/{i}")))
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            if i % 10 != 0 {
                t.release(id);
            }
        }
        assert_eq!(t.len(), 100);
        for (i, &id) in ids.iter().enumerate().step_by(10) {
            let text = format!("https://site.example/é/{i}");
            assert_eq!(t.text(id), text, "text of {i}");
            assert_eq!(t.lookup(&text), Some(id), "lookup of {i}");
        }
        assert_eq!(t.lookup("https://site.example/é/1"), None);
        // A freed id is reused, with its new text.
        let again = t.acquire("");
        assert!(ids.contains(&again));
        assert_eq!(t.text(again), "");
        assert_eq!(t.lookup(""), Some(again));
        for &id in ids.iter().step_by(10) {
            t.release(id);
        }
        t.release(again);
        assert_eq!(t.len(), 0);
        t.shrink();
        assert_eq!(t.memory_bytes(), 0);
    }
}
