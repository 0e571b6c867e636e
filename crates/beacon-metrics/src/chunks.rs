//! A growable array in fixed-size chunks.
//!
//! A `Vec` doubles its capacity when full, so at 100k elements up to half of
//! what it holds can be reserved but unused (31% at exactly 100k), and each
//! growth copies everything under the caller's lock. Chunks never move and
//! waste at most one chunk, for one more (L1-resident) pointer load per
//! access.

use std::ops::{Index, IndexMut};

use crate::mem;

/// Elements per chunk (a power of two).
const CHUNK: usize = 256;
const SHIFT: u32 = CHUNK.trailing_zeros();

/// Elements `0..len`, stored in chunks of [`CHUNK`].
///
/// Invariant: every chunk but the last is full, and each chunk's capacity
/// is exactly `CHUNK`.
#[derive(Debug)]
pub(crate) struct ChunkVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkVec<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ChunkVec<T> {
    /// True when empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `value`; returns its index.
    pub(crate) fn push(&mut self, value: T) -> usize {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let i = self.len;
        if let Some(last) = self.chunks.last_mut() {
            last.push(value);
        }
        self.len += 1;
        i
    }

    /// The elements in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    /// Heap bytes: the chunks and the chunk table.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.chunks.len() * mem::vec::<T>(CHUNK) + mem::vec::<Vec<T>>(self.chunks.capacity())
    }
}

impl<T> Index<usize> for ChunkVec<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> SHIFT][i & (CHUNK - 1)]
    }
}

impl<T> IndexMut<usize> for ChunkVec<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> SHIFT][i & (CHUNK - 1)]
    }
}
