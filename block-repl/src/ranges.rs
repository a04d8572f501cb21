//! Range locks: the byte ranges of the device that a thread is writing (or reading for
//! a resync) right now. Two operations on overlapping ranges run one after the other;
//! operations on disjoint ranges run at the same time. Waiters are not served in any
//! fixed order. This is what keeps both copies identical while many writes are in
//! flight: on the primary an operation holds its range from its local write until its
//! frame is queued, so overlapping writes are queued in the order they were applied;
//! on the secondary a single thread (the reader) takes the locks, in arrival order, so
//! overlapping frames are applied in the order they arrive.

use std::sync::{Condvar, Mutex, MutexGuard};

/// The ranges in use.
pub struct RangeLocks {
    held: Mutex<Held>,
    cv: Condvar,
    /// Most ranges held at once (a bound on the work in flight); 0 = no bound.
    max: usize,
}

#[derive(Default)]
struct Held {
    next_id: u64,
    /// (id, start, end), end exclusive.
    ranges: Vec<(u64, u64, u64)>,
}

impl Held {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        start < end && self.ranges.iter().any(|&(_, s, e)| s < end && start < e)
    }
}

/// A held range; dropping it releases the range.
#[must_use = "the range is released when the guard is dropped"]
pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    id: u64,
}

impl RangeLocks {
    /// No range held; at most `max` at once (0: no bound).
    pub fn new(max: usize) -> RangeLocks {
        RangeLocks {
            held: Mutex::new(Held::default()),
            cv: Condvar::new(),
            max,
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until nothing held overlaps `[offset, offset + len)` (and there is room),
    /// then holds that range. An empty range still counts towards the bound but
    /// overlaps nothing.
    pub fn lock(&self, offset: u64, len: u64) -> RangeGuard<'_> {
        let end = offset.saturating_add(len);
        let mut h = self.held();
        while h.overlaps(offset, end) || (self.max > 0 && h.ranges.len() >= self.max) {
            h = self.cv.wait(h).unwrap_or_else(|p| p.into_inner());
        }
        h.next_id += 1;
        let id = h.next_id;
        h.ranges.push((id, offset, end));
        RangeGuard { locks: self, id }
    }

    /// Waits until no range is held (every operation started so far has finished).
    pub fn wait_idle(&self) {
        let mut h = self.held();
        while !h.ranges.is_empty() {
            h = self.cv.wait(h).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Number of ranges held now.
    pub fn held_count(&self) -> usize {
        self.held().ranges.len()
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let mut h = self.locks.held();
        h.ranges.retain(|&(id, _, _)| id != self.id);
        drop(h);
        self.locks.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[test]
    fn disjoint_ranges_are_held_together() {
        let l = RangeLocks::new(0);
        let a = l.lock(0, 4096);
        let b = l.lock(4096, 4096);
        // An empty range never waits, not even inside a held one.
        let c = l.lock(100, 0);
        assert_eq!(l.held_count(), 3);
        drop((a, b, c));
        assert_eq!(l.held_count(), 0);
        l.wait_idle();
    }

    #[test]
    fn an_overlapping_range_waits_for_the_holder() {
        let l = RangeLocks::new(0);
        let step = AtomicU32::new(0);
        std::thread::scope(|s| {
            let g = l.lock(4096, 8192);
            s.spawn(|| {
                let _g = l.lock(8191, 2);
                // Only after the first holder let go.
                assert_eq!(step.load(Ordering::SeqCst), 1);
                step.store(2, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(step.load(Ordering::SeqCst), 0);
            step.store(1, Ordering::SeqCst);
            drop(g);
        });
        assert_eq!(step.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_bound_limits_ranges_in_flight_and_idle_waits_for_all() {
        let l = RangeLocks::new(2);
        let released = AtomicU32::new(0);
        std::thread::scope(|s| {
            let a = l.lock(0, 1);
            let b = l.lock(10, 1);
            s.spawn(|| {
                let _c = l.lock(20, 1);
                assert!(released.load(Ordering::SeqCst) >= 1);
            });
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(l.held_count(), 2);
            released.store(1, Ordering::SeqCst);
            drop((a, b));
            l.wait_idle();
        });
        assert_eq!(l.held_count(), 0);
    }
}
