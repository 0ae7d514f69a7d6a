//! Counters split per worker thread, so that two cores counting checks never
//! write the same cache line.
//!
//! A [`Sharded`] block holds a few `u64` slots for each of [`SHARDS`] shards,
//! each shard on cache lines of its own. A thread adds to the shard it was
//! given the first time it counted (threads are numbered in that order, so
//! the runtime's worker threads, the only ones on the request path, get
//! distinct shards); reading sums the shards. An add is one uncontended
//! atomic add: no lock, no allocation, no line bouncing between cores.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per block: threads beyond this many share shards (still correct,
/// just contended again).
pub const SHARDS: usize = 8;

/// `u64` slots in 128 bytes: two cache lines, since the adjacent-line
/// prefetcher moves lines in pairs.
const LINE_SLOTS: usize = 16;

/// `slots` counters, each split into [`SHARDS`] shards.
#[derive(Debug)]
pub struct Sharded {
    /// Slots per shard, rounded up to whole line pairs, plus one pair of
    /// padding so that no two shards share a line whatever the allocation's
    /// alignment.
    stride: usize,
    slots: usize,
    cells: Box<[AtomicU64]>,
}

impl Sharded {
    /// A block of `slots` counters at zero.
    pub fn new(slots: usize) -> Sharded {
        let stride = slots.div_ceil(LINE_SLOTS) * LINE_SLOTS + LINE_SLOTS;
        Sharded {
            stride,
            slots,
            cells: (0..stride * SHARDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Adds `n` to counter `slot` (out of range: ignored).
    #[inline]
    pub fn add(&self, slot: usize, n: u64) {
        if slot < self.slots {
            if let Some(c) = self.cells.get(shard() * self.stride + slot) {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The total of counter `slot` over every shard.
    pub fn sum(&self, slot: usize) -> u64 {
        if slot >= self.slots {
            return 0;
        }
        (0..SHARDS)
            .filter_map(|s| self.cells.get(s * self.stride + slot))
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

/// This thread's shard.
#[inline]
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(i);
        }
        i
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_adds_from_many_threads() {
        let s = std::sync::Arc::new(Sharded::new(3));
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.add(0, 1);
                        s.add(2, 2);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.sum(0), 12_000);
        assert_eq!(s.sum(1), 0);
        assert_eq!(s.sum(2), 24_000);
        s.add(3, 1);
        assert_eq!(s.sum(3), 0, "out of range slots are ignored");
    }

    #[test]
    fn shards_do_not_share_lines() {
        for slots in [1, 6, 16, 17, 19] {
            let s = Sharded::new(slots);
            assert!(s.stride >= slots + LINE_SLOTS && s.stride % LINE_SLOTS == 0);
        }
    }
}
