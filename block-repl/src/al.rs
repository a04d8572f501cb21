//! The activity log: the set of "hot" extents (4 MiB each) a primary may have writes in
//! flight to. An extent enters the log (and the log is persisted) before the first write
//! to it; when a crashed primary comes back, only the extents in its log are marked out
//! of sync, not the whole device.

use std::collections::VecDeque;

/// Extent size.
pub const EXTENT: u64 = 4 << 20;

/// The hot extents, least recently used first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityLog {
    cap: usize,
    lru: VecDeque<u32>,
    ahead: u32,
    limit: u32,
}

/// Extents `[offset, offset+len)` touches.
pub fn extents(offset: u64, len: u64) -> std::ops::RangeInclusive<u32> {
    let first = (offset / EXTENT) as u32;
    let last = ((offset + len.max(1) - 1) / EXTENT) as u32;
    first..=last
}

impl ActivityLog {
    /// An empty log holding at most `cap` extents.
    pub fn new(cap: usize) -> ActivityLog {
        ActivityLog {
            cap: cap.max(1),
            lru: VecDeque::new(),
            ahead: 0,
            limit: u32::MAX,
        }
    }

    /// On a miss, also take in the next `ahead` extents (below `limit`), so that a
    /// streaming writer changes (and persists) the log once per `ahead + 1` extents
    /// instead of once per extent. Extra extents only widen a post-crash resync.
    pub fn with_read_ahead(mut self, ahead: u32, limit: u32) -> ActivityLog {
        self.ahead = ahead.min(self.cap.saturating_sub(1) as u32 / 2);
        self.limit = limit;
        self
    }

    fn add(&mut self, e: u32) {
        self.lru.push_back(e);
        if self.lru.len() > self.cap {
            self.lru.pop_front();
        }
    }

    /// A log restored from the metadata (oldest first).
    pub fn restore(cap: usize, extents: &[u32]) -> ActivityLog {
        let mut al = ActivityLog::new(cap);
        for e in extents {
            al.lru.push_back(*e);
        }
        while al.lru.len() > al.cap {
            al.lru.pop_front();
        }
        al
    }

    /// Records a write to `[offset, offset+len)`. Returns true when the set of extents
    /// changed, i.e. the log must be persisted before the write is issued. Evicted
    /// extents leave the log (their dirty bits must be persisted by the caller with it).
    pub fn touch(&mut self, offset: u64, len: u64) -> bool {
        let mut changed = false;
        for e in extents(offset, len) {
            if let Some(i) = self.lru.iter().position(|x| *x == e) {
                // Move to the back without changing the set.
                if i + 1 != self.lru.len() {
                    let x = self.lru.remove(i).expect("present");
                    self.lru.push_back(x);
                }
            } else {
                self.add(e);
                changed = true;
                for n in e.saturating_add(1)..=e.saturating_add(self.ahead).min(self.limit - 1) {
                    if !self.lru.contains(&n) {
                        self.add(n);
                    }
                }
            }
        }
        changed
    }

    /// The extents, oldest first.
    pub fn extents(&self) -> Vec<u32> {
        self.lru.iter().copied().collect()
    }

    /// Forgets everything (a clean demotion or shutdown).
    pub fn clear(&mut self) {
        self.lru.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_extents_change_the_log_hot_ones_do_not() {
        let mut al = ActivityLog::new(2);
        assert!(al.touch(0, 4096));
        assert!(!al.touch(4096, 4096));
        assert!(al.touch(EXTENT - 4096, 8192)); // spans extents 0 and 1: 1 is new
        assert_eq!(al.extents(), vec![0, 1]);
        assert!(!al.touch(0, 1));
        assert_eq!(al.extents(), vec![1, 0]);
        assert!(al.touch(5 * EXTENT, 4096));
        assert_eq!(al.extents(), vec![0, 5]); // 1 evicted
        let r = ActivityLog::restore(1, &[7, 8, 9]);
        assert_eq!(r.extents(), vec![9]);
        assert_eq!(extents(0, 0), 0..=0);
        assert_eq!(extents(EXTENT, EXTENT), 1..=1);
    }

    #[test]
    fn read_ahead_takes_in_following_extents_within_the_device() {
        let mut al = ActivityLog::new(100).with_read_ahead(3, 6);
        assert!(al.touch(0, 4096));
        assert_eq!(al.extents(), vec![0, 1, 2, 3]);
        for e in 1..4 {
            assert!(!al.touch(e * EXTENT, EXTENT), "extent {e} was read ahead");
        }
        assert!(al.touch(4 * EXTENT, 4096));
        // 6 is past the device.
        assert_eq!(al.extents(), vec![0, 1, 2, 3, 4, 5]);
        // A small log never reads ahead more than half of itself.
        let mut small = ActivityLog::new(3).with_read_ahead(8, 100);
        small.touch(0, 1);
        assert_eq!(small.extents(), vec![0, 1]);
    }
}
