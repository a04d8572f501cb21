//! CRC-32 as MooseFS uses it: zlib's CRC-32 (polynomial 0xEDB88320) over each 64 KiB
//! block, with a precomputed value for an all-zero block.

use crate::codes::BLOCK_SIZE;

/// CRC-32 of a 64 KiB block of zeros (`MFSCRCEMPTY`).
pub const EMPTY_BLOCK_CRC: u32 = 0xD797_8EEB;

/// CRC-32 of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// CRC-32 of `len` zero bytes (fast path for the full block).
pub fn crc32_zeros(len: usize) -> u32 {
    if len == BLOCK_SIZE {
        return EMPTY_BLOCK_CRC;
    }
    static ZEROS: [u8; 4096] = [0u8; 4096];
    let mut h = crc32fast::Hasher::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len());
        h.update(&ZEROS[..n]);
        left -= n;
    }
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_block_constant_matches_zlib() {
        assert_eq!(crc32(&vec![0u8; BLOCK_SIZE]), EMPTY_BLOCK_CRC);
        assert_eq!(crc32_zeros(1000), crc32(&[0u8; 1000]));
        assert_eq!(crc32_zeros(0), 0);
    }
}
