//! Per-session state, the timer wheel that evicts it, and the incremental
//! active-user, per-url and per-referrer visitor counts.

use hashbrown::HashTable;

use crate::chunks::ChunkVec;
use crate::event::{truncate, LiveEvent, KIND_SESSION_END};
use crate::hash::StrHasher;
use crate::intern::{self, Id, Interner};
use crate::mem;
use crate::time::second_key;

/// Index of a session slot.
type Idx = u32;
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

/// What one session needs for `active_users`, `top_pages` and `top_referrers`
/// (80 bytes).
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
    url: Id,
    referrer: Id,
    /// Next session on the same wheel list.
    next: Idx,
    /// Some activity and no `session_end` at or after it. (Whether that
    /// activity is inside the window is the wheel's job: a session still in
    /// the table after `expire` has its retention key in it.)
    active: bool,
}

impl Session {
    /// The second at which the session leaves the table: that of its latest
    /// event of any kind.
    fn retention_key(&self) -> i64 {
        second_key(self.latest)
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
/// the number of live slots with `active`; a url's (referrer's) interner
/// count is the number of active sessions at it, and its reference count
/// the number of live sessions at it.
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
    urls: Interner,
    referrers: Interner,
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
            urls: Interner::default(),
            referrers: Interner::default(),
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
    pub(crate) fn touch(
        &mut self,
        ev: &LiveEvent<'_>,
        ts: i64,
        max_sessions: usize,
        max_url: usize,
    ) -> Touch {
        let token = ev.session.as_bytes();
        let hash = self.hasher.hash_bytes(token);
        let slots = &self.slots;
        let (idx, new) = match self
            .table
            .find(hash, |&i| slots[i as usize].token.as_bytes() == token)
        {
            Some(&i) => (i, false),
            None => {
                if self.tracked >= max_sessions {
                    return Touch::Full;
                }
                (self.insert(ev.session, hash), true)
            }
        };
        let s = &mut self.slots[idx as usize];
        let was_active = s.active;
        let (old_url, old_ref) = (s.url, s.referrer);

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
        let mut new_url = old_url;
        if let Some(u) = ev.url.filter(|u| !u.is_empty()) {
            if at > s.url_at {
                s.url_at = at;
                let u = truncate(u, max_url);
                if old_url == intern::NONE || self.urls.text(old_url) != u {
                    new_url = self.urls.acquire(u);
                }
            }
        }
        let mut new_ref = old_ref;
        if let Some(r) = ev.referrer.filter(|r| !r.is_empty()) {
            if at < s.referrer_at {
                s.referrer_at = at;
                let r = truncate(r, max_url);
                if old_ref == intern::NONE || self.referrers.text(old_ref) != r {
                    new_ref = self.referrers.acquire(r);
                }
            }
        }
        s.url = new_url;
        s.referrer = new_ref;
        let now_active = s.active;

        if was_active != now_active || old_url != new_url || old_ref != new_ref {
            if was_active {
                self.active -= 1;
                sub_visitor(&mut self.urls, old_url);
                sub_visitor(&mut self.referrers, old_ref);
            }
            if now_active {
                self.active += 1;
                add_visitor(&mut self.urls, new_url);
                add_visitor(&mut self.referrers, new_ref);
            }
            if old_url != new_url && old_url != intern::NONE {
                self.urls.release(old_url);
            }
            if old_ref != new_ref && old_ref != intern::NONE {
                self.referrers.release(old_ref);
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
            url: intern::NONE,
            referrer: intern::NONE,
            next: NIL,
            active: false,
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
        let (url, referrer, active) = (s.url, s.referrer, s.active);
        s.url = intern::NONE;
        s.referrer = intern::NONE;
        s.latest = i64::MIN;
        s.active = false;
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
            sub_visitor(&mut self.urls, url);
            sub_visitor(&mut self.referrers, referrer);
        }
        if url != intern::NONE {
            self.urls.release(url);
        }
        if referrer != intern::NONE {
            self.referrers.release(referrer);
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
        self.urls.shrink();
        self.referrers.shrink();
    }

    /// Sessions counted in `active_users`.
    pub(crate) fn active(&self) -> usize {
        self.active
    }

    /// Sessions in the table, active or ended but still inside the window.
    pub(crate) fn tracked(&self) -> usize {
        self.tracked
    }

    /// `(distinct urls, distinct referrers)` held by tracked sessions.
    pub(crate) fn interned(&self) -> (usize, usize) {
        (self.urls.len(), self.referrers.len())
    }

    /// Top `n` urls by active visitors.
    pub(crate) fn top_pages(&self, n: usize) -> Vec<(&str, u64)> {
        top(&self.urls, n)
    }

    /// Top `n` referrers by active visitors.
    pub(crate) fn top_referrers(&self, n: usize) -> Vec<(&str, u64)> {
        top(&self.referrers, n)
    }

    /// Heap bytes: table, slots, wheel, tokens, urls and referrers.
    pub(crate) fn memory_bytes(&self) -> usize {
        mem::hash_table::<Idx>(self.table.capacity())
            + self.slots.memory_bytes()
            + mem::vec::<Idx>(self.free.capacity())
            + mem::vec::<Idx>(self.wheel.capacity())
            + self.token_bytes
            + self.urls.memory_bytes()
            + self.referrers.memory_bytes()
    }
}

fn top(table: &Interner, n: usize) -> Vec<(&str, u64)> {
    crate::topk::top_k(table.counted().map(|(_, text, c)| (text, u64::from(c))), n)
}

fn add_visitor(table: &mut Interner, id: Id) {
    if id != intern::NONE {
        table.add_count(id, 1);
    }
}

fn sub_visitor(table: &mut Interner, id: Id) {
    if id != intern::NONE {
        table.sub_count(id, 1);
    }
}
