//! The secondary's acknowledgements. Requests (writes, discards, flushes) arrive in
//! sequence order but several are applied at once, so they finish out of order. An ack
//! is cumulative: acknowledging `seq` says every request up to `seq` is done. So an ack
//! may only name a request when every request that arrived before it has finished.
//! A failed request is reported at once, with its status, when its turn comes.
//!
//! Pure bookkeeping; the caller sends what [`Acks::finished`] returns.

use std::collections::BTreeMap;

/// Requests in progress, in arrival order, and what is owed to the peer.
#[derive(Debug)]
pub struct Acks {
    /// Arrived requests not yet acknowledged: `None` while running, else the status.
    open: BTreeMap<u64, Option<u32>>,
    /// The newest success finished in turn and not acknowledged yet.
    held: Option<u64>,
    /// Successes finished in turn since the last ack sent.
    unsent: u32,
    /// Most held-back successes before an ack goes out anyway.
    batch: u32,
}

impl Acks {
    /// While held back, one ack per `batch` finished requests.
    pub fn new(batch: u32) -> Acks {
        Acks {
            open: BTreeMap::new(),
            held: None,
            unsent: 0,
            batch: batch.max(1),
        }
    }

    /// Request `seq` arrived (sequence numbers arrive in increasing order).
    pub fn arrived(&mut self, seq: u64) {
        self.open.insert(seq, None);
    }

    /// Request `seq` finished with `status` (0 = success). Returns the acks to send now,
    /// in order: (sequence, status). Every success that completes the requests before
    /// it is acknowledged at once, unless `hold` (the caller has more requests at hand
    /// and will call [`Acks::flush`] before it waits for input): then only once a batch
    /// is full.
    pub fn finished(&mut self, seq: u64, status: u32, hold: bool) -> Vec<(u64, u32)> {
        if let Some(s) = self.open.get_mut(&seq) {
            *s = Some(status);
        }
        let mut out = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let Some(status) = *entry.get() else { break };
            let seq = *entry.key();
            entry.remove();
            if status != 0 {
                // Also acknowledges everything before it.
                out.push((seq, status));
                self.held = None;
                self.unsent = 0;
            } else {
                self.held = Some(seq);
                self.unsent += 1;
            }
        }
        if !hold || self.unsent >= self.batch {
            out.extend(self.flush());
        }
        out
    }

    /// The ack for successes finished but not acknowledged yet, if any.
    pub fn flush(&mut self) -> Option<(u64, u32)> {
        self.unsent = 0;
        self.held.take().map(|seq| (seq, 0))
    }

    /// Requests arrived and not yet acknowledged.
    pub fn open(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_request_is_acknowledged_at_once() {
        let mut a = Acks::new(8);
        a.arrived(7);
        assert_eq!(a.finished(7, 0, false), vec![(7, 0)]);
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn out_of_order_finishes_wait_for_the_earlier_request() {
        let mut a = Acks::new(8);
        for s in 1..=3 {
            a.arrived(s);
        }
        assert_eq!(a.finished(3, 0, false), vec![]);
        assert_eq!(a.finished(1, 0, false), vec![(1, 0)]);
        assert_eq!(a.finished(2, 0, false), vec![(3, 0)]);
    }

    #[test]
    fn a_failure_is_reported_with_its_status_in_turn() {
        let mut a = Acks::new(8);
        for s in 10..=13 {
            a.arrived(s);
        }
        assert_eq!(a.finished(11, 5, false), vec![]);
        assert_eq!(a.finished(12, 0, false), vec![]);
        assert_eq!(a.finished(10, 0, false), vec![(11, 5), (12, 0)]);
        assert_eq!(a.finished(13, 0, false), vec![(13, 0)]);
    }

    #[test]
    fn busy_streams_are_acknowledged_every_batch_while_held() {
        let mut a = Acks::new(4);
        let mut sent = Vec::new();
        a.arrived(1);
        for s in 1..=20u64 {
            // One more request always arrives before the previous one finishes.
            a.arrived(s + 1);
            sent.extend(a.finished(s, 0, true));
        }
        assert_eq!(sent, vec![(4, 0), (8, 0), (12, 0), (16, 0), (20, 0)]);
        assert_eq!(a.finished(21, 0, false), vec![(21, 0)]);
    }

    #[test]
    fn held_successes_go_out_on_flush_or_with_a_full_batch() {
        let mut a = Acks::new(3);
        for s in 1..=4 {
            a.arrived(s);
            let out = a.finished(s, 0, true);
            assert_eq!(out, if s == 3 { vec![(3, 0)] } else { vec![] }, "{s}");
        }
        assert_eq!(a.flush(), Some((4, 0)));
        assert_eq!(a.flush(), None);
        // An error is never held back.
        a.arrived(5);
        assert_eq!(a.finished(5, 28, true), vec![(5, 28)]);
        assert_eq!(a.flush(), None);
    }

    #[test]
    fn every_finished_request_is_eventually_acknowledged() {
        // Whatever the finishing order, once all finished the last ack covers all.
        let seqs: Vec<u64> = (100..132).collect();
        for rot in 0..seqs.len() {
            let mut a = Acks::new(5);
            for s in &seqs {
                a.arrived(*s);
            }
            let mut order = seqs.clone();
            order.rotate_left(rot);
            let mut last = 0;
            for s in order {
                for (seq, st) in a.finished(s, 0, false) {
                    assert_eq!(st, 0);
                    assert!(seq > last);
                    last = seq;
                }
            }
            assert_eq!(last, 131);
            assert_eq!(a.open(), 0);
        }
    }
}
