//! Per-session state, the timer wheel that evicts it, and the incremental
//! active-user, per-url and per-referrer visitor counts.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use crate::event::{truncate, LiveEvent, KIND_SESSION_END};
use crate::intern::{self, Id, Interner};
use crate::mem;
use crate::time::second_key;

/// Index of a session slot.
type Idx = u32;
/// End of a wheel list.
const NIL: Idx = u32::MAX;

/// A session token, inline when short (pixel tokens are ~20 bytes) so that
/// finding a session touches its slot only, not one more heap block.
#[derive(Debug)]
enum Token {
    Inline { len: u8, bytes: [u8; 30] },
    Heap(Box<[u8]>),
}

impl Token {
    fn new(s: &str) -> Self {
        let b = s.as_bytes();
        if b.len() <= 30 {
            let mut bytes = [0u8; 30];
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
    bytes: [0; 30],
};

/// The session table is keyed by a keyed 64-bit SipHash of the token; the
/// hash is already uniform, so the table itself hashes it as the identity.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// What one session needs for `active_users`, `top_pages` and `top_referrers`.
#[derive(Debug)]
struct Session {
    token: Token,
    /// Keyed hash of the token: its key in the table.
    hash: u64,
    /// Next session with the same hash (a 64-bit collision: practically never).
    chain: Idx,
    /// Latest timestamp (ms) of a non-`session_end` event, `i64::MIN` if none.
    last_seen: i64,
    /// Latest timestamp (ms) of a `session_end` event, `i64::MIN` if none.
    ended: i64,
    /// `(timestamp ms, id)` of the event that gave `url`: the latest one.
    url_at: (i64, i64),
    /// `(timestamp ms, id)` of the event that gave `referrer`: the earliest one.
    referrer_at: (i64, i64),
    url: Id,
    referrer: Id,
}

/// A session's neighbours on its wheel list. Kept apart from the slots, in a
/// dense array, so that relinking a session touches 8-byte cells of its
/// neighbours instead of their whole slots (cache misses dominate `record`).
#[derive(Debug, Clone, Copy)]
struct Link {
    prev: Idx,
    next: Idx,
}

impl Session {
    /// Active: some activity and no `session_end` at or after it. (Whether
    /// that activity is inside the window is the wheel's job: a session
    /// still in the table after `expire` has its retention key in it.)
    fn active(&self) -> bool {
        self.last_seen > self.ended
    }

    /// The second at which the session leaves the table: that of its latest
    /// event of any kind.
    fn retention_key(&self) -> i64 {
        second_key(self.last_seen.max(self.ended))
    }
}

/// The session table.
///
/// Invariants (after every public call): every live slot is reachable
/// from `map[hash]` through `chain`, and `tracked` counts them; every live slot is on the wheel list of `retention_key mod len`;
/// `active` is the number of live slots with `active()`; a url's (referrer's)
/// interner count is the number of active sessions at it, and its reference
/// count the number of live sessions at it.
#[derive(Debug)]
pub(crate) struct Sessions {
    /// Token hash -> first session with that hash.
    map: HashMap<u64, Idx, BuildHasherDefault<PassThrough>>,
    hasher: RandomState,
    slots: Vec<Session>,
    /// `links[i]` is slot `i`'s place on its wheel list.
    links: Vec<Link>,
    free: Vec<Idx>,
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
    /// An empty table whose wheel has `wheel_len` one-second slots.
    pub(crate) fn new(wheel_len: usize) -> Self {
        Self {
            map: HashMap::default(),
            hasher: RandomState::new(),
            slots: Vec::new(),
            links: Vec::new(),
            free: Vec::new(),
            wheel: vec![NIL; wheel_len.max(1)],
            walked: None,
            tracked: 0,
            active: 0,
            token_bytes: 0,
            urls: Interner::default(),
            referrers: Interner::default(),
        }
    }

    fn wheel_index(&self, key: i64) -> usize {
        key.rem_euclid(self.wheel.len() as i64) as usize
    }

    fn link(&mut self, idx: Idx) {
        let w = self.wheel_index(self.slots[idx as usize].retention_key());
        let head = self.wheel[w];
        self.links[idx as usize] = Link {
            prev: NIL,
            next: head,
        };
        if head != NIL {
            self.links[head as usize].prev = idx;
        }
        self.wheel[w] = idx;
    }

    fn unlink(&mut self, idx: Idx, key: i64) {
        let Link { prev, next } = self.links[idx as usize];
        if prev == NIL {
            let w = self.wheel_index(key);
            self.wheel[w] = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
        }
    }

    /// Applies one event to its session, creating the session if needed.
    pub(crate) fn touch(
        &mut self,
        ev: &LiveEvent,
        ts: i64,
        max_sessions: usize,
        max_url: usize,
    ) -> Touch {
        let hash = self.hasher.hash_one(ev.session.as_bytes());
        let idx = match self.find(hash, ev.session.as_bytes()) {
            Some(i) => i,
            None => {
                if self.tracked >= max_sessions {
                    return Touch::Full;
                }
                self.insert(&ev.session, hash)
            }
        };
        let s = &mut self.slots[idx as usize];
        let was_active = s.active();
        let old_key = s.retention_key();
        let (old_url, old_ref) = (s.url, s.referrer);

        if ev.kind == KIND_SESSION_END {
            s.ended = s.ended.max(ts);
        } else {
            s.last_seen = s.last_seen.max(ts);
        }
        let at = (ts, ev.id);
        let mut new_url = old_url;
        if let Some(u) = ev.url.as_deref().filter(|u| !u.is_empty()) {
            if at > s.url_at {
                s.url_at = at;
                let u = truncate(u, max_url);
                if old_url == intern::NONE || self.urls.text(old_url) != u {
                    new_url = self.urls.acquire(u);
                }
            }
        }
        let mut new_ref = old_ref;
        if let Some(r) = ev.referrer.as_deref().filter(|r| !r.is_empty()) {
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
        let now_active = s.active();
        let new_key = s.retention_key();

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
        if old_key != new_key {
            self.unlink(idx, old_key);
            self.link(idx);
        }
        Touch::Done
    }

    fn find(&self, hash: u64, token: &[u8]) -> Option<Idx> {
        let mut cur = *self.map.get(&hash)?;
        while cur != NIL {
            let s = &self.slots[cur as usize];
            if s.token.as_bytes() == token {
                return Some(cur);
            }
            cur = s.chain;
        }
        None
    }

    fn insert(&mut self, token: &str, hash: u64) -> Idx {
        let token = Token::new(token);
        self.token_bytes += token.heap_bytes();
        self.tracked += 1;
        let session = Session {
            token,
            hash,
            chain: NIL,
            last_seen: i64::MIN,
            ended: i64::MIN,
            url_at: (i64::MIN, i64::MIN),
            referrer_at: (i64::MAX, i64::MAX),
            url: intern::NONE,
            referrer: intern::NONE,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = session;
                i
            }
            None => {
                // `max_sessions` is capped below u32::MAX by the caller.
                let i = Idx::try_from(self.slots.len()).unwrap_or(NIL - 1);
                self.slots.push(session);
                self.links.push(Link {
                    prev: NIL,
                    next: NIL,
                });
                i
            }
        };
        if let Some(head) = self.map.insert(hash, idx) {
            self.slots[idx as usize].chain = head;
        }
        self.link(idx);
        idx
    }

    fn remove(&mut self, idx: Idx) {
        let key = self.slots[idx as usize].retention_key();
        self.unlink(idx, key);
        let s = &mut self.slots[idx as usize];
        let (url, referrer, active) = (s.url, s.referrer, s.active());
        s.url = intern::NONE;
        s.referrer = intern::NONE;
        s.last_seen = i64::MIN;
        s.ended = i64::MIN;
        let (hash, chain) = (s.hash, s.chain);
        let token = std::mem::replace(&mut s.token, FREE_TOKEN);
        self.token_bytes -= token.heap_bytes();
        self.tracked -= 1;
        match self.map.get(&hash).copied() {
            Some(head) if head == idx => {
                if chain == NIL {
                    self.map.remove(&hash);
                } else {
                    self.map.insert(hash, chain);
                }
            }
            Some(head) => {
                let mut cur = head;
                while cur != NIL {
                    let next = self.slots[cur as usize].chain;
                    if next == idx {
                        self.slots[cur as usize].chain = chain;
                        break;
                    }
                    cur = next;
                }
            }
            None => {}
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

    fn expire_slot(&mut self, w: usize, cutoff: i64, purge_after: Option<i64>) {
        let mut cur = self.wheel[w];
        while cur != NIL {
            let next = self.links[cur as usize].next;
            let key = self.slots[cur as usize].retention_key();
            if key <= cutoff || purge_after.is_some_and(|p| key > p) {
                self.remove(cur);
            }
            cur = next;
        }
    }

    fn shrink(&mut self) {
        if self.tracked == 0 && !self.slots.is_empty() {
            self.map = HashMap::default();
            self.slots = Vec::new();
            self.links = Vec::new();
            self.free = Vec::new();
        } else if self.map.capacity() > 4 * self.map.len() + 64 {
            self.map.shrink_to(2 * self.map.len());
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
        mem::hash_map::<u64, Idx>(self.map.capacity())
            + mem::vec::<Session>(self.slots.capacity())
            + mem::vec::<Link>(self.links.capacity())
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
