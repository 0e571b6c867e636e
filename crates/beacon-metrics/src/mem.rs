//! Memory accounting helpers for `approx_memory_bytes`.
//!
//! The figures model glibc malloc on 64-bit Linux (8-byte chunk header,
//! 16-byte alignment, 32-byte minimum chunk) and hashbrown, the table behind
//! `std::collections::HashMap` (one control byte per bucket plus a 16-byte
//! group, buckets a power of two, at most 7/8 full).

use std::mem::size_of;

/// Bytes malloc really takes for a request of `n` bytes.
pub(crate) fn heap(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// Heap bytes of a `HashMap<K, V>` with the given `capacity()`.
pub(crate) fn hash_map<K, V>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    heap(buckets * (size_of::<(K, V)>() + 1) + 16)
}

/// Heap bytes of a `hashbrown::HashTable<T>` with the given `capacity()`
/// (same layout as a map of `T` to `()`).
pub(crate) fn hash_table<T>(capacity: usize) -> usize {
    hash_map::<T, ()>(capacity)
}

/// Heap bytes of a `Vec<T>` (or `VecDeque<T>`) with the given capacity.
pub(crate) fn vec<T>(capacity: usize) -> usize {
    heap(capacity * size_of::<T>())
}
