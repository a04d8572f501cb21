//! The dirty-block bitmap: one bit per 4 KiB block, set while the peer is not in sync.
//!
//! On reconnect the two nodes OR their bitmaps and the sync source sends exactly the set
//! blocks; bits are cleared as blocks are acknowledged, so an interrupted resync resumes
//! where it stopped. The on-disk form is the raw little-endian u64 words followed by a
//! CRC-32 of them.

use thiserror::Error;

/// Bytes per bitmap bit.
pub const BLOCK: u64 = 4096;

/// A stored bitmap that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BitmapError {
    /// Wrong size for the device.
    #[error("bitmap has {got} bytes, expected {want} for this device")]
    Size {
        /// Bytes found.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// CRC mismatch.
    #[error("bitmap checksum mismatch")]
    Crc,
}

/// A dirty-block bitmap for a device of a given size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    blocks: u64,
    words: Vec<u64>,
}

impl Bitmap {
    /// An all-clean bitmap for `device_bytes`.
    pub fn new(device_bytes: u64) -> Bitmap {
        let blocks = device_bytes.div_ceil(BLOCK);
        Bitmap {
            blocks,
            words: vec![0; blocks.div_ceil(64) as usize],
        }
    }

    /// Number of blocks covered.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Marks the blocks touched by `len` bytes at `offset` dirty.
    pub fn set_range(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = offset / BLOCK;
        let last = ((offset + len - 1) / BLOCK).min(self.blocks.saturating_sub(1));
        for b in first..=last {
            self.words[(b / 64) as usize] |= 1 << (b % 64);
        }
    }

    /// Marks every block dirty (full sync).
    pub fn set_all(&mut self) {
        self.set_range(0, self.blocks * BLOCK);
    }

    /// Clears one block.
    pub fn clear(&mut self, block: u64) {
        if block < self.blocks {
            self.words[(block / 64) as usize] &= !(1 << (block % 64));
        }
    }

    /// Whether a block is dirty.
    pub fn get(&self, block: u64) -> bool {
        block < self.blocks && self.words[(block / 64) as usize] & (1 << (block % 64)) != 0
    }

    /// Number of dirty blocks.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// ORs the peer's bitmap into ours (both sides resync the union).
    pub fn merge(&mut self, other: &Bitmap) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
    }

    /// The raw words (bit `b % 64` of word `b / 64` is block `b`).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// ORs raw words received from the peer into ours (extra words and bits beyond the
    /// device are ignored).
    pub fn merge_words(&mut self, other: &[u64]) {
        for (a, b) in self.words.iter_mut().zip(other) {
            *a |= *b;
        }
        let tail = self.blocks % 64;
        if tail != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << tail) - 1;
            }
        }
    }

    /// The next dirty block at or after `from`.
    pub fn next_dirty(&self, from: u64) -> Option<u64> {
        let mut b = from;
        while b < self.blocks {
            let w = self.words[(b / 64) as usize] >> (b % 64);
            if w != 0 {
                let found = b + w.trailing_zeros() as u64;
                return (found < self.blocks).then_some(found);
            }
            b = (b / 64 + 1) * 64;
        }
        None
    }

    /// On-disk bytes: the words little-endian, then a CRC-32 of them.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.words.len() * 8 + 4);
        for w in &self.words {
            v.extend_from_slice(&w.to_le_bytes());
        }
        let crc = crc32fast::hash(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    /// Reads the on-disk form for a device of `device_bytes`.
    pub fn decode(device_bytes: u64, b: &[u8]) -> Result<Bitmap, BitmapError> {
        let mut bm = Bitmap::new(device_bytes);
        let want = bm.words.len() * 8 + 4;
        if b.len() != want {
            return Err(BitmapError::Size { got: b.len(), want });
        }
        let (body, crc) = b.split_at(want - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(BitmapError::Crc);
        }
        for (w, c) in bm.words.iter_mut().zip(body.chunks_exact(8)) {
            *w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        }
        Ok(bm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_and_iteration() {
        let mut b = Bitmap::new(1 << 20); // 256 blocks
        b.set_range(4095, 2); // blocks 0 and 1
        b.set_range(100 * 4096, 4096); // block 100
        assert_eq!(b.count(), 3);
        assert_eq!(b.next_dirty(0), Some(0));
        assert_eq!(b.next_dirty(2), Some(100));
        assert_eq!(b.next_dirty(101), None);
        b.clear(0);
        assert!(!b.get(0) && b.get(1));
        let mut c = Bitmap::new(1 << 20);
        c.set_range(255 * 4096, 10 << 20); // clipped to the device
        b.merge(&c);
        assert_eq!(b.count(), 3);
        assert_eq!(Bitmap::decode(1 << 20, &b.encode()).unwrap(), b);
        let mut bad = b.encode();
        bad[0] ^= 1;
        assert_eq!(Bitmap::decode(1 << 20, &bad), Err(BitmapError::Crc));
        assert!(matches!(
            Bitmap::decode(2 << 20, &b.encode()),
            Err(BitmapError::Size { .. })
        ));
    }

    proptest! {
        #[test]
        fn set_ranges_match_a_model(ops in proptest::collection::vec((0u64..3_000_000, 0u64..100_000), 0..30)) {
            let size = 3_000_000u64;
            let mut b = Bitmap::new(size);
            let mut model = vec![false; size.div_ceil(BLOCK) as usize];
            for (off, len) in ops {
                b.set_range(off, len);
                if len > 0 {
                    for blk in off / BLOCK..=((off + len - 1) / BLOCK).min(model.len() as u64 - 1) {
                        model[blk as usize] = true;
                    }
                }
            }
            prop_assert_eq!(b.count(), model.iter().filter(|x| **x).count() as u64);
            let mut it = Vec::new();
            let mut at = 0;
            while let Some(d) = b.next_dirty(at) { it.push(d); at = d + 1; }
            let want: Vec<u64> = model.iter().enumerate().filter(|(_, x)| **x).map(|(i, _)| i as u64).collect();
            prop_assert_eq!(it, want);
            prop_assert_eq!(Bitmap::decode(size, &b.encode()).unwrap(), b);
        }
    }
}
