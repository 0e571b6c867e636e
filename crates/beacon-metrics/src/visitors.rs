//! Distinct visitors per value of a session dimension (url, referrer,
//! country, device type) among the active sessions, kept incrementally.
//!
//! A value's interner count is the number of distinct visitors among the
//! active sessions at it, where a session without a visitor id is a visitor
//! of its own. Most visitors have one active session at a time, so a
//! visitor is held as one 16-byte entry that points at its session: the
//! counts of that session's values already include it. Only when a visitor
//! has a second active session does it switch to *paired* mode: it gets a
//! small list of its own, `(dimension, value) -> its active sessions
//! there`, which says whether it is already counted at a value. The list
//! is contiguous and short (a person's tabs share a country and a device,
//! and sit on a few pages), so counting a paired visitor costs one more
//! cache line, not one per dimension. A paired visitor stays paired until
//! its last active session leaves; then its list is emptied for reuse.

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

/// Index of a session slot (as in `sessions.rs`); below [`PAIRED`].
pub(crate) type Idx = u32;

/// Flag of `Visitor::at` for a visitor in paired mode (the rest is its
/// group's index). Session indices stay below it: `max_sessions` is capped
/// under `2^31`.
pub(crate) const PAIRED: u32 = 1 << 31;

/// A visitor with active sessions (16 bytes).
#[derive(Debug)]
struct Visitor {
    visitor: i64,
    /// Its active sessions.
    active: u32,
    /// Its one active session, or [`PAIRED`] with the index of its group.
    at: u32,
}

/// A paired visitor at one value of one dimension (12 bytes).
#[derive(Debug, Clone, Copy)]
struct Pair {
    id: Id,
    sessions: u32,
    dim: u8,
}

/// The visitors of the active sessions.
///
/// Invariants (after every call of `Sessions`): `visitors` holds exactly the
/// visitor ids with an active session, each with their number; one in
/// single mode points at its one active session; one in paired mode owns a
/// group that has, for each value at which it has active sessions, one pair
/// with their number. A group not owned by a visitor is empty and on
/// `free`.
#[derive(Debug, Default)]
pub(crate) struct Visitors {
    visitors: HashTable<Visitor>,
    groups: Vec<Vec<Pair>>,
    free: Vec<u32>,
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

/// One more active session of a paired visitor at `id` of `dim`; true when
/// it is the first.
fn pair_add(group: &mut Vec<Pair>, dim: usize, id: Id) -> bool {
    if id == intern::NONE {
        return false;
    }
    let dim = dim as u8;
    if let Some(p) = group.iter_mut().find(|p| p.id == id && p.dim == dim) {
        p.sessions += 1;
        return false;
    }
    group.push(Pair {
        id,
        sessions: 1,
        dim,
    });
    true
}

/// One active session of a paired visitor fewer at `id` of `dim`; true when
/// it was the last.
fn pair_sub(group: &mut Vec<Pair>, dim: usize, id: Id) -> bool {
    if id == intern::NONE {
        return false;
    }
    let dim = dim as u8;
    let Some(at) = group.iter().position(|p| p.id == id && p.dim == dim) else {
        debug_assert!(false, "a paired visitor's value is not counted");
        return false;
    };
    group[at].sessions -= 1;
    if group[at].sessions > 0 {
        return false;
    }
    group.swap_remove(at);
    true
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
            groups,
            free,
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
                    at: idx,
                });
                for (table, &id) in values.iter_mut().zip(dims) {
                    add_count(table, id);
                }
                return;
            }
            Entry::Occupied(o) => o,
        };
        let e = occupied.get_mut();
        if e.at & PAIRED == 0 {
            // The other session is counted already: its pairs say so.
            let other = dims_of(e.at);
            let g = match free.pop() {
                Some(g) => g,
                None => {
                    groups.push(Vec::new());
                    (groups.len() - 1) as u32
                }
            };
            let group = &mut groups[g as usize];
            for (d, &id) in other.iter().enumerate() {
                pair_add(group, d, id);
            }
            e.at = PAIRED | g;
        }
        e.active += 1;
        let group = &mut groups[(e.at & !PAIRED) as usize];
        for (d, &id) in dims.iter().enumerate() {
            if pair_add(group, d, id) {
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
        let Ok(mut found) = self
            .visitors
            .find_entry(self.hasher.visitor(v), |e| e.visitor == v)
        else {
            debug_assert!(false, "an active session's visitor is not counted");
            return;
        };
        let e = found.get_mut();
        if e.at & PAIRED == 0 {
            debug_assert_eq!(e.at, idx, "a single visitor's session");
            found.remove();
            for (table, &id) in values.iter_mut().zip(dims) {
                sub_count(table, id);
            }
            return;
        }
        let g = e.at & !PAIRED;
        e.active -= 1;
        let last = e.active == 0;
        if last {
            found.remove();
        }
        let group = &mut self.groups[g as usize];
        for (d, &id) in dims.iter().enumerate() {
            if pair_sub(group, d, id) {
                sub_count(&mut values[d], id);
            }
        }
        if last {
            debug_assert!(group.is_empty(), "a gone visitor's pairs");
            if group.capacity() > 16 {
                *group = Vec::new();
            }
            self.free.push(g);
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
        let group = visitor.and_then(|v| {
            self.visitors
                .find(self.hasher.visitor(v), |e| e.visitor == v)
                .filter(|e| e.at & PAIRED != 0)
                .map(|e| (e.at & !PAIRED) as usize)
        });
        match group {
            None => {
                for d in changed {
                    sub_count(&mut values[d], old[d]);
                    add_count(&mut values[d], new[d]);
                }
            }
            Some(g) => {
                let group = &mut self.groups[g];
                for d in changed {
                    if pair_sub(group, d, old[d]) {
                        sub_count(&mut values[d], old[d]);
                    }
                    if pair_add(group, d, new[d]) {
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
        if self.visitors.is_empty() {
            if self.visitors.capacity() > 0 || !self.groups.is_empty() {
                let hasher = std::mem::take(&mut self.hasher);
                *self = Self {
                    hasher,
                    ..Self::default()
                };
            }
        } else if self.visitors.capacity() > 4 * self.visitors.len() + 64 {
            let (len, hasher) = (self.visitors.len(), &self.hasher);
            self.visitors
                .shrink_to(2 * len, |e| hasher.visitor(e.visitor));
        }
    }

    /// Heap bytes of the table and the groups.
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::hash_table::<Visitor>(self.visitors.capacity())
            + mem::vec::<Vec<Pair>>(self.groups.capacity())
            + self
                .groups
                .iter()
                .map(|g| mem::vec::<Pair>(g.capacity()))
                .sum::<usize>()
            + mem::vec::<u32>(self.free.capacity())
    }
}
