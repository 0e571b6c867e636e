//! Per-session state, the timer wheel that evicts it, and the incremental
//! active-user count and per-url, -referrer, -country and -device visitor
//! counts (distinct visitors: `visitors.rs`).

use hashbrown::HashTable;

use crate::chunks::ChunkVec;
use crate::config::LiveConfig;
use crate::event::{truncate, LiveEvent, KIND_SESSION_END};
use crate::hash::StrHasher;
use crate::intern::{self, Interner};
use crate::mem;
use crate::time::second_key;
use crate::visitors::{Dims, Idx, Values, Visitors, COUNTRY, DEVICE, DIMS, REFERRER, URL};

/// End of a wheel list.
const NIL: Idx = u32::MAX;
/// Longest token kept inside the slot.
const INLINE: usize = 22;

/// A session token, inline when short (pixel tokens are 20 bytes) so that
/// finding a session touches its slot only, not one more heap block.
/// 24 bytes either way.
#[derive(Debug)]
enum Token {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Token {
    fn new(s: &str) -> Self {
        let b = s.as_bytes();
        if b.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..b.len()].copy_from_slice(b);
            Token::Inline {
                len: b.len() as u8,
                bytes,
            }
        } else {
            Token::Heap(b.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Token::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Token::Heap(b) => b,
        }
    }

    /// Heap bytes beyond the slot.
    fn heap_bytes(&self) -> usize {
        match self {
            Token::Inline { .. } => 0,
            Token::Heap(b) => mem::heap(b.len()),
        }
    }
}

const FREE_TOKEN: Token = Token::Inline {
    len: 0,
    bytes: [0; INLINE],
};

/// What one session needs for `active_users` and the top lists (96 bytes).
///
/// `latest` and `active` encode what the README defines with two
/// timestamps, the latest non-`session_end` event `L` and the latest
/// `session_end` `E`: `latest = max(L, E)` and `active = L > E`. An event at
/// `t` updates them as `L = max(L, t)` (or `E`) would: a non-end event
/// activates the session when `t > latest`; an end deactivates it when
/// `t >= latest`; anything older changes neither.
#[derive(Debug)]
struct Session {
    token: Token,
    /// Latest timestamp (ms) of any event, `i64::MIN` if none.
    latest: i64,
    /// `(timestamp ms, id)` of the event that gave `url`: the latest one.
    url_at: (i64, i64),
    /// `(timestamp ms, id)` of the event that gave `referrer`: the earliest one.
    referrer_at: (i64, i64),
    /// Url, referrer, country and device type (see `visitors.rs`).
    dims: Dims,
    /// The visitor, when `has_visitor`.
    visitor: i64,
    /// Next session on the same wheel list.
    next: Idx,
    /// Some activity and no `session_end` at or after it. (Whether that
    /// activity is inside the window is the wheel's job: a session still in
    /// the table after `expire` has its retention key in it.)
    active: bool,
    /// Whether an event gave the session a visitor id (else it is a
    /// visitor of its own).
    has_visitor: bool,
}

impl Session {
    /// The second at which the session leaves the table: that of its latest
    /// event of any kind.
    fn retention_key(&self) -> i64 {
        second_key(self.latest)
    }

    fn visitor(&self) -> Option<i64> {
        self.has_visitor.then_some(self.visitor)
    }
}

/// The session table.
///
/// The wheel is lazy: a session is linked once, under the retention key it
/// had then, and not moved when later events push that key forward. When
/// `expire` walks a wheel slot it evicts the sessions whose key has passed
/// and moves the others to the slot of their current key. So `record`
/// never touches another session's slot, and each session is moved at most
/// once per window length it stays.
///
/// Invariants (after every public call): every live slot is in `table`
/// under the hash of its token, and `tracked` counts them; every live slot
/// is on exactly one wheel list, that of a key `k` with
/// `walked < k <= retention_key` taken mod the wheel length; `active` is
/// the number of live slots with `active`; a value's (url, referrer,
/// country, device) interner count is the number of distinct visitors among
/// the active sessions at it (`visitors.rs`), and its reference count the
/// number of live sessions at it.
#[derive(Debug)]
pub(crate) struct Sessions {
    /// Slot indices, found by the hash of their token.
    table: HashTable<Idx>,
    hasher: StrHasher,
    slots: ChunkVec<Session>,
    free: Vec<Idx>,
    /// Heads of the wheel lists; the length is a power of two.
    wheel: Vec<Idx>,
    /// Every session with a retention key `<= walked` has been evicted.
    walked: Option<i64>,
    /// Live slots.
    tracked: usize,
    active: usize,
    token_bytes: usize,
    values: Values,
    visitors: Visitors,
}

/// Outcome of [`Sessions::touch`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Touch {
    /// Recorded.
    Done,
    /// New session refused: the table is full.
    Full,
}

impl Sessions {
    /// An empty table whose wheel has at least `wheel_len` one-second slots.
    pub(crate) fn new(wheel_len: usize) -> Self {
        Self {
            table: HashTable::new(),
            hasher: StrHasher::default(),
            slots: ChunkVec::default(),
            free: Vec::new(),
            wheel: vec![NIL; wheel_len.max(1).next_power_of_two()],
            walked: None,
            tracked: 0,
            active: 0,
            token_bytes: 0,
            values: Default::default(),
            visitors: Visitors::default(),
        }
    }

    fn wheel_index(&self, key: i64) -> usize {
        // The length is a power of two: the mask is `rem_euclid`.
        (key & (self.wheel.len() as i64 - 1)) as usize
    }

    /// Puts `idx` on the wheel list of its retention key.
    fn link(&mut self, idx: Idx) {
        let w = self.wheel_index(self.slots[idx as usize].retention_key());
        self.slots[idx as usize].next = self.wheel[w];
        self.wheel[w] = idx;
    }

    /// Applies one event to its session, creating the session if needed.
    pub(crate) fn touch(&mut self, ev: &LiveEvent<'_>, ts: i64, config: &LiveConfig) -> Touch {
        let token = ev.session.as_bytes();
        let hash = self.hasher.hash_bytes(token);
        let slots = &self.slots;
        let (idx, new) = match self
            .table
            .find(hash, |&i| slots[i as usize].token.as_bytes() == token)
        {
            Some(&i) => (i, false),
            None => {
                if self.tracked >= config.max_sessions {
                    return Touch::Full;
                }
                (self.insert(ev.session, hash), true)
            }
        };
        let s = &mut self.slots[idx as usize];
        let was_active = s.active;
        let old_visitor = s.visitor();
        let old = s.dims;

        if ev.kind == KIND_SESSION_END {
            if ts >= s.latest {
                s.latest = ts;
                s.active = false;
            }
        } else if ts > s.latest {
            s.latest = ts;
            s.active = true;
        }
        let at = (ts, ev.id);
        let mut dims = old;
        let values = &mut self.values;
        if let Some(u) = ev.url.filter(|u| !u.is_empty()) {
            if at > s.url_at {
                s.url_at = at;
                set(&mut values[URL], &mut dims[URL], u, config.max_url_bytes);
            }
        }
        if let Some(r) = ev.referrer.filter(|r| !r.is_empty()) {
            if at < s.referrer_at {
                s.referrer_at = at;
                set(
                    &mut values[REFERRER],
                    &mut dims[REFERRER],
                    r,
                    config.max_url_bytes,
                );
            }
        }
        // Attributes of the session: the first event that has one sets it.
        let tag = config.max_tag_bytes;
        for (d, value) in [(COUNTRY, ev.country), (DEVICE, ev.device)] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                if dims[d] == intern::NONE {
                    set(&mut values[d], &mut dims[d], v, tag);
                }
            }
        }
        if let (false, Some(v)) = (s.has_visitor, ev.visitor) {
            s.visitor = v;
            s.has_visitor = true;
        }
        s.dims = dims;
        let now_active = s.active;
        let visitor = s.visitor();

        let Self {
            slots,
            values,
            visitors,
            active,
            ..
        } = self;
        if was_active != now_active || old_visitor != visitor {
            if was_active {
                *active -= 1;
                visitors.sub(idx, old_visitor, &old, values);
            }
            if now_active {
                *active += 1;
                visitors.add(idx, visitor, &dims, values, |i| slots[i as usize].dims);
            }
        } else if now_active && old != dims {
            // The common change of an active session: a new page.
            visitors.moved(visitor, &old, &dims, values);
        }
        if old != dims {
            for d in 0..DIMS {
                if old[d] != dims[d] && old[d] != intern::NONE {
                    values[d].release(old[d]);
                }
            }
        }
        if new {
            // Linked once its first event gave it a retention key; later
            // events leave it where it is (see the wheel above).
            self.link(idx);
        }
        Touch::Done
    }

    /// A new, unlinked session for `token`, in the table under `hash`.
    fn insert(&mut self, token: &str, hash: u64) -> Idx {
        let token = Token::new(token);
        self.token_bytes += token.heap_bytes();
        self.tracked += 1;
        let session = Session {
            token,
            latest: i64::MIN,
            url_at: (i64::MIN, i64::MIN),
            referrer_at: (i64::MAX, i64::MAX),
            dims: [intern::NONE; DIMS],
            visitor: 0,
            next: NIL,
            active: false,
            has_visitor: false,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = session;
                i
            }
            // `max_sessions` is capped below u32::MAX by the caller.
            None => Idx::try_from(self.slots.push(session)).unwrap_or(NIL - 1),
        };
        let Self {
            table,
            hasher,
            slots,
            ..
        } = self;
        table.insert_unique(hash, idx, |&i| {
            hasher.hash_bytes(slots[i as usize].token.as_bytes())
        });
        idx
    }

    /// Frees a session already taken off its wheel list.
    fn remove(&mut self, idx: Idx) {
        let s = &mut self.slots[idx as usize];
        let (dims, active, visitor) = (s.dims, s.active, s.visitor());
        s.dims = [intern::NONE; DIMS];
        s.latest = i64::MIN;
        s.active = false;
        s.has_visitor = false;
        s.next = NIL;
        let token = std::mem::replace(&mut s.token, FREE_TOKEN);
        self.token_bytes -= token.heap_bytes();
        self.tracked -= 1;
        let hash = self.hasher.hash_bytes(token.as_bytes());
        if let Ok(found) = self.table.find_entry(hash, |&i| i == idx) {
            found.remove();
        }
        if active {
            self.active -= 1;
            self.visitors.sub(idx, visitor, &dims, &mut self.values);
        }
        for (values, id) in self.values.iter_mut().zip(dims) {
            if id != intern::NONE {
                values.release(id);
            }
        }
        self.free.push(idx);
    }

    /// Evicts every session whose latest event is at second `<= cutoff`
    /// and, when `purge_after` is given, every one with a later event than
    /// that second. Walks only the wheel slots of the seconds that passed
    /// since the last call (all of them on the first call or a long jump).
    pub(crate) fn expire(&mut self, cutoff: i64, purge_after: Option<i64>) {
        let len = self.wheel.len() as i64;
        let all = match (purge_after, self.walked) {
            (Some(_), _) | (_, None) => true,
            (None, Some(w)) if cutoff <= w => return,
            (None, Some(w)) => cutoff - w >= len,
        };
        if all {
            for w in 0..self.wheel.len() {
                self.expire_slot(w, cutoff, purge_after);
            }
        } else if let Some(w) = self.walked {
            for key in w + 1..=cutoff {
                let slot = self.wheel_index(key);
                self.expire_slot(slot, cutoff, None);
            }
        }
        self.walked = Some(self.walked.map_or(cutoff, |w| w.max(cutoff)));
        self.shrink();
    }

    /// Empties wheel slot `w`: evicts its sessions that are due and links
    /// the others under their current retention key (possibly `w` again,
    /// for a later turn of the wheel).
    fn expire_slot(&mut self, w: usize, cutoff: i64, purge_after: Option<i64>) {
        let mut cur = std::mem::replace(&mut self.wheel[w], NIL);
        while cur != NIL {
            let s = &self.slots[cur as usize];
            let next = s.next;
            let key = s.retention_key();
            if key <= cutoff || purge_after.is_some_and(|p| key > p) {
                self.remove(cur);
            } else {
                self.link(cur);
            }
            cur = next;
        }
    }

    fn shrink(&mut self) {
        if self.tracked == 0 && !self.slots.is_empty() {
            self.table = HashTable::new();
            self.slots = ChunkVec::default();
            self.free = Vec::new();
        } else if self.table.capacity() > 4 * self.table.len() + 64 {
            let Self {
                table,
                hasher,
                slots,
                ..
            } = self;
            table.shrink_to(2 * table.len(), |&i| {
                hasher.hash_bytes(slots[i as usize].token.as_bytes())
            });
        }
        for values in &mut self.values {
            values.shrink();
        }
        self.visitors.shrink();
    }

    /// Sessions counted in `active_users`.
    pub(crate) fn active(&self) -> usize {
        self.active
    }

    /// Sessions in the table, active or ended but still inside the window.
    pub(crate) fn tracked(&self) -> usize {
        self.tracked
    }

    /// Distinct values per dimension held by tracked sessions.
    pub(crate) fn interned(&self) -> [usize; DIMS] {
        [0, 1, 2, 3].map(|d| self.values[d].len())
    }

    /// Distinct visitor ids with an active session.
    pub(crate) fn visitor_ids(&self) -> usize {
        self.visitors.len()
    }

    /// Top `n` values of dimension `dim` by distinct active visitors.
    pub(crate) fn top(&self, dim: usize, n: usize) -> Vec<(&str, u64)> {
        crate::topk::top_k(
            self.values[dim]
                .counted()
                .map(|(_, text, c)| (text, u64::from(c))),
            n,
        )
    }

    /// Heap bytes: table, slots, wheel, tokens, urls and referrers.
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::hash_table::<Idx>(self.table.capacity())
            + self.slots.memory_bytes()
            + mem::vec::<Idx>(self.free.capacity())
            + mem::vec::<Idx>(self.wheel.capacity())
            + self.token_bytes
            + self
                .values
                .iter()
                .map(Interner::memory_bytes)
                .sum::<usize>()
            + self.visitors.memory_bytes()
    }
}

/// Points `id` at the interned `text` cut to `max` bytes, taking a
/// reference on it, unless it is there already (the caller releases the
/// old one).
fn set(values: &mut Interner, id: &mut intern::Id, text: &str, max: usize) {
    let text = truncate(text, max);
    if *id == intern::NONE || values.text(*id) != text {
        *id = values.acquire(text);
    }
}
