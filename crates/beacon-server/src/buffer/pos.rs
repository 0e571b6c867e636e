//! Stream entry ids (`<milliseconds>-<sequence>`) as numbers, to compare
//! and to take the smallest of.

use std::fmt;

/// A position in the stream: an entry id.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamPos {
    /// Milliseconds part: when Redis appended the entry (its clock).
    pub ms: u64,
    /// Sequence within that millisecond.
    pub seq: u64,
}

impl StreamPos {
    /// Before every entry (`0-0`).
    pub const START: Self = Self { ms: 0, seq: 0 };

    /// Parses `ms-seq` (or a bare `ms`); `None` for anything else.
    pub fn parse(id: &str) -> Option<Self> {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        Some(Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The position right after this one.
    pub fn next(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => Self { ms: self.ms, seq },
            None => Self {
                ms: self.ms + 1,
                seq: 0,
            },
        }
    }

    /// A number for this position that orders like it (the live view's
    /// tie-breaker between events of one timestamp).
    pub fn as_i64(self) -> i64 {
        i64::try_from((self.ms << 20) | (self.seq & 0xF_FFFF)).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for StreamPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_compare_and_print_as_redis_writes_them() {
        let a = StreamPos::parse("1764496800000-0");
        let b = StreamPos::parse("1764496800000-12");
        assert!(a.is_some() && b.is_some());
        assert!(a < b);
        assert_eq!(
            b.map(|b| b.to_string()).as_deref(),
            Some("1764496800000-12")
        );
        assert_eq!(a.map(StreamPos::next), StreamPos::parse("1764496800000-1"));
        assert_eq!(StreamPos::parse("5"), Some(StreamPos { ms: 5, seq: 0 }));
        for bad in ["", "x-1", "1-", "-1", "1-2-3"] {
            assert_eq!(StreamPos::parse(bad), None, "{bad:?}");
        }
        assert!(a.map(StreamPos::as_i64) < b.map(StreamPos::as_i64));
    }
}
