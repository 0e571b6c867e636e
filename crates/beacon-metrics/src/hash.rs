//! Hashers: foldhash for the strings clients send, a multiplicative hash
//! for the crate's own integer ids.
//!
//! Session tokens, urls, referrers and click labels are hashed with
//! [foldhash](https://docs.rs/foldhash) (the hasher behind hashbrown's own
//! default, maintained alongside it), seeded at random per table. It hashes
//! a short token several times faster than std's SipHash-1-3, whose cost
//! was a sizeable share of the per-event budget (docs/benchmarks.md, "Live
//! aggregation"). The trade-off: foldhash
//! is only *minimally* DoS-resistant. A per-table random seed means no fixed
//! list of inputs collides in every process (the flooding attack against
//! unseeded hashes), but an attacker who could infer the seed (say, through
//! timing) could build collisions; SipHash resists that too. We accept it
//! here: the tables are bounded (`max_sessions`, `max_labels`, sessions on
//! urls), entries leave with the active window, hash values are never
//! exposed, and the server validates tokens before they reach the
//! aggregator. Should that change, only [`StrHasher`] needs to go back to
//! `std::hash::RandomState`.

use std::hash::{BuildHasher, Hasher};

/// A randomly seeded hasher for client-controlled strings (see the module
/// documentation for the choice of foldhash).
#[derive(Debug, Clone, Default)]
pub(crate) struct StrHasher(foldhash::fast::RandomState);

impl StrHasher {
    /// Hash of `s`; equal strings hash equal under the same `StrHasher`.
    pub(crate) fn hash_str(&self, s: &str) -> u64 {
        self.hash_bytes(s.as_bytes())
    }

    /// Hash of `b`.
    pub(crate) fn hash_bytes(&self, b: &[u8]) -> u64 {
        let mut h = self.0.build_hasher();
        h.write(b);
        h.finish()
    }
}

/// Fibonacci hashing of integer ids.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A randomly seeded hasher for visitor ids, which another service may take
/// from its clients (the server's are keyed hashes nobody can choose):
/// foldhash, for the reasons given above.
#[derive(Debug, Clone, Default)]
pub(crate) struct VisitorHasher(foldhash::fast::RandomState);

impl VisitorHasher {
    /// Hash of a visitor id.
    pub(crate) fn visitor(&self, visitor: i64) -> u64 {
        let mut h = self.0.build_hasher();
        h.write_i64(visitor);
        h.finish()
    }
}
