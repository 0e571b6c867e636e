//! Distinct visitors per value of a session dimension (url, referrer,
//! country, device type) among the active sessions, kept incrementally.
//!
//! A value's interner count is the number of distinct visitors among the
//! active sessions at it, where a session without a visitor id is a visitor
//! of its own. Most visitors have one active session at a time, so a
//! visitor is held as one 16-byte entry that points at its session: the
//! counts of that session's values already include it. Only when a visitor
//! has a second active session does it switch to *paired* mode, where a
//! `(value, visitor) -> active sessions` entry per dimension says whether
//! the visitor is already counted at a value. A paired visitor stays
//! paired until its last active session leaves, when its pairs are gone
//! too.

use hashbrown::hash_table::{Entry, HashTable};

use crate::hash::VisitorHasher;
use crate::intern::{self, Id, Interner};
use crate::mem;

/// Index of the url in [`Dims`].
pub(crate) const URL: usize = 0;
/// Index of the referrer in [`Dims`].
pub(crate) const REFERRER: usize = 1;
/// Index of the country in [`Dims`].
pub(crate) const COUNTRY: usize = 2;
/// Index of the device type in [`Dims`].
pub(crate) const DEVICE: usize = 3;
/// Number of dimensions.
pub(crate) const DIMS: usize = 4;

/// The interned values of a session, one per dimension (`intern::NONE`: none).
pub(crate) type Dims = [Id; DIMS];

/// The values' string tables, one per dimension.
pub(crate) type Values = [Interner; DIMS];

/// Index of a session slot (as in `sessions.rs`).
pub(crate) type Idx = u32;

/// `Visitor::single` of a visitor in paired mode.
const PAIRED: Idx = u32::MAX;

/// A visitor with active sessions (16 bytes).
#[derive(Debug)]
struct Visitor {
    visitor: i64,
    /// Its active sessions.
    active: u32,
    /// Its one active session, or [`PAIRED`].
    single: Idx,
}

/// A paired visitor at one value of one dimension (16 bytes).
#[derive(Debug)]
struct Pair {
    visitor: i64,
    id: Id,
    /// The visitor's active sessions at this value (at least 1).
    sessions: u32,
}

/// The visitors of the active sessions.
///
/// Invariants (after every call of `Sessions`): `visitors` holds exactly the
/// visitor ids with an active session, each with their number; one in
/// single mode points at its one active session; one in paired mode has,
/// per dimension, a pair for each value at which it has active sessions,
/// with their number.
#[derive(Debug, Default)]
pub(crate) struct Visitors {
    visitors: HashTable<Visitor>,
    pairs: [HashTable<Pair>; DIMS],
    hasher: VisitorHasher,
}

fn add_count(values: &mut Interner, id: Id) {
    if id != intern::NONE {
        values.add_count(id, 1);
    }
}

fn sub_count(values: &mut Interner, id: Id) {
    if id != intern::NONE {
        values.sub_count(id, 1);
    }
}

impl Visitors {
    /// Counts the active session `idx`, at `dims`, of `visitor` (`None`: a
    /// visitor of its own). `dims_of` gives the values of another active
    /// session (those it is counted at).
    pub(crate) fn add(
        &mut self,
        idx: Idx,
        visitor: Option<i64>,
        dims: &Dims,
        values: &mut Values,
        dims_of: impl Fn(Idx) -> Dims,
    ) {
        let Some(v) = visitor else {
            for (table, &id) in values.iter_mut().zip(dims) {
                add_count(table, id);
            }
            return;
        };
        let Self {
            visitors,
            pairs,
            hasher,
        } = self;
        let entry = visitors.entry(
            hasher.visitor(v),
            |e| e.visitor == v,
            |e| hasher.visitor(e.visitor),
        );
        let mut occupied = match entry {
            Entry::Vacant(vacant) => {
                vacant.insert(Visitor {
                    visitor: v,
                    active: 1,
                    single: idx,
                });
                for (table, &id) in values.iter_mut().zip(dims) {
                    add_count(table, id);
                }
                return;
            }
            Entry::Occupied(o) => o,
        };
        let e = occupied.get_mut();
        if e.single != PAIRED {
            // The other session is counted already: its pairs say so.
            let other = dims_of(e.single);
            e.single = PAIRED;
            for (d, &id) in other.iter().enumerate() {
                pair_add(&mut pairs[d], hasher, v, id);
            }
        }
        e.active += 1;
        for (d, &id) in dims.iter().enumerate() {
            if pair_add(&mut pairs[d], hasher, v, id) {
                add_count(&mut values[d], id);
            }
        }
    }

    /// Uncounts the active session `idx`, as [`add`](Self::add) counted it.
    pub(crate) fn sub(&mut self, idx: Idx, visitor: Option<i64>, dims: &Dims, values: &mut Values) {
        let Some(v) = visitor else {
            for (table, &id) in values.iter_mut().zip(dims) {
                sub_count(table, id);
            }
            return;
        };
        let Self {
            visitors,
            pairs,
            hasher,
        } = self;
        let Ok(mut found) = visitors.find_entry(hasher.visitor(v), |e| e.visitor == v) else {
            debug_assert!(false, "an active session's visitor is not counted");
            return;
        };
        let e = found.get_mut();
        if e.single != PAIRED {
            debug_assert_eq!(e.single, idx, "a single visitor's session");
            found.remove();
            for (table, &id) in values.iter_mut().zip(dims) {
                sub_count(table, id);
            }
            return;
        }
        e.active -= 1;
        if e.active == 0 {
            found.remove();
        }
        for (d, &id) in dims.iter().enumerate() {
            if pair_sub(&mut pairs[d], hasher, v, id) {
                sub_count(&mut values[d], id);
            }
        }
    }

    /// Moves the active session of `visitor` from the values `old` to
    /// `new` (same visitor, still active): only the dimensions that changed
    /// are touched.
    pub(crate) fn moved(
        &mut self,
        visitor: Option<i64>,
        old: &Dims,
        new: &Dims,
        values: &mut Values,
    ) {
        let changed = (0..DIMS).filter(|&d| old[d] != new[d]);
        let paired = visitor.filter(|&v| {
            self.visitors
                .find(self.hasher.visitor(v), |e| e.visitor == v)
                .is_some_and(|e| e.single == PAIRED)
        });
        match paired {
            None => {
                for d in changed {
                    sub_count(&mut values[d], old[d]);
                    add_count(&mut values[d], new[d]);
                }
            }
            Some(v) => {
                for d in changed {
                    if pair_sub(&mut self.pairs[d], &self.hasher, v, old[d]) {
                        sub_count(&mut values[d], old[d]);
                    }
                    if pair_add(&mut self.pairs[d], &self.hasher, v, new[d]) {
                        add_count(&mut values[d], new[d]);
                    }
                }
            }
        }
    }

    /// Distinct visitor ids with an active session.
    pub(crate) fn len(&self) -> usize {
        self.visitors.len()
    }

    /// Gives memory back after a spike.
    pub(crate) fn shrink(&mut self) {
        let hasher = &self.hasher;
        if self.visitors.is_empty() {
            if self.visitors.capacity() > 0 {
                self.visitors = HashTable::new();
            }
        } else if self.visitors.capacity() > 4 * self.visitors.len() + 64 {
            let len = self.visitors.len();
            self.visitors
                .shrink_to(2 * len, |e| hasher.visitor(e.visitor));
        }
        for table in &mut self.pairs {
            if table.is_empty() {
                if table.capacity() > 0 {
                    *table = HashTable::new();
                }
            } else if table.capacity() > 4 * table.len() + 64 {
                let len = table.len();
                table.shrink_to(2 * len, |p| hasher.pair(p.visitor, p.id));
            }
        }
    }

    /// Heap bytes of the tables.
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::hash_table::<Visitor>(self.visitors.capacity())
            + self
                .pairs
                .iter()
                .map(|t| mem::hash_table::<Pair>(t.capacity()))
                .sum::<usize>()
    }
}

/// One more active session of `v` at `id`; true when it is the first.
fn pair_add(table: &mut HashTable<Pair>, hasher: &VisitorHasher, v: i64, id: Id) -> bool {
    if id == intern::NONE {
        return false;
    }
    match table.entry(
        hasher.pair(v, id),
        |p| p.visitor == v && p.id == id,
        |p| hasher.pair(p.visitor, p.id),
    ) {
        Entry::Occupied(mut o) => {
            o.get_mut().sessions += 1;
            false
        }
        Entry::Vacant(vacant) => {
            vacant.insert(Pair {
                visitor: v,
                id,
                sessions: 1,
            });
            true
        }
    }
}

/// One active session of `v` fewer at `id`; true when it was the last.
fn pair_sub(table: &mut HashTable<Pair>, hasher: &VisitorHasher, v: i64, id: Id) -> bool {
    if id == intern::NONE {
        return false;
    }
    let Ok(mut found) = table.find_entry(hasher.pair(v, id), |p| p.visitor == v && p.id == id)
    else {
        debug_assert!(false, "a paired visitor's value is not counted");
        return false;
    };
    let p = found.get_mut();
    p.sessions -= 1;
    if p.sessions == 0 {
        found.remove();
        true
    } else {
        false
    }
}
