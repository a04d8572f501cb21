//! The chunk file a chunkserver keeps for every chunk copy.
//!
//! ```text
//! offset 0      "MFSC 1.0" chunkid:u64 version:u32 (big-endian), zero-padded to 4096
//! offset 4096   CRC table: 1024 × crc32:u32 BE, one per 64 KiB block
//! offset 8192   data blocks of 64 KiB; the file ends after the last block present
//! ```
//! File name: `chunk_<CHUNKID:016X>_<VERSION:08X>.mfs` in one of the 256 subfolders
//! `00`..`FF` of a disk. Old files with a 1024-byte header are still readable: the header
//! size is recognised from the file size. A block past the end of the file reads as zeros;
//! its CRC entry is `MFSCRCEMPTY` (or 0 in old files).

use crate::codes::{BLOCKS_IN_CHUNK, BLOCK_SIZE};
use crate::crc::EMPTY_BLOCK_CRC;
use thiserror::Error;

/// Header signature written by MooseFS 3.0.117 and by us.
pub const SIGNATURE: &[u8; 8] = b"MFSC 1.0";
/// Header size of current files.
pub const HDR_SIZE: u64 = 4096;
/// Header size of legacy files.
pub const OLD_HDR_SIZE: u64 = 1024;
/// Size of the CRC table.
pub const CRC_TABLE_SIZE: usize = 4 * BLOCKS_IN_CHUNK;
/// Bytes of the header that carry information (signature, id, version).
pub const HEADER_INFO_LEN: usize = 20;

/// A chunk file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkFileError {
    /// The header does not start with `MFSC 1.0` or `MFSC 1.1`.
    #[error("wrong chunk header signature")]
    BadSignature,
    /// The file is shorter than a header.
    #[error("chunk header truncated ({0} bytes)")]
    Truncated(usize),
    /// The file size fits neither header size and whole blocks.
    #[error("file size {0} is not a header plus whole 64 KiB blocks")]
    BadSize(u64),
}

/// The identity stored in a chunk file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Chunk id.
    pub chunkid: u64,
    /// Chunk version.
    pub version: u32,
}

impl ChunkHeader {
    /// The informative first bytes of a header (the rest of the 4096 bytes are zeros).
    pub fn encode(&self) -> [u8; HEADER_INFO_LEN] {
        let mut b = [0u8; HEADER_INFO_LEN];
        b[..8].copy_from_slice(SIGNATURE);
        b[8..16].copy_from_slice(&self.chunkid.to_be_bytes());
        b[16..20].copy_from_slice(&self.version.to_be_bytes());
        b
    }

    /// Decodes the first bytes of a chunk file.
    pub fn decode(b: &[u8]) -> Result<ChunkHeader, ChunkFileError> {
        if b.len() < HEADER_INFO_LEN {
            return Err(ChunkFileError::Truncated(b.len()));
        }
        if &b[..7] != b"MFSC 1." || (b[7] != b'0' && b[7] != b'1') {
            return Err(ChunkFileError::BadSignature);
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[8..16]);
        Ok(ChunkHeader {
            chunkid: u64::from_be_bytes(id),
            version: u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
        })
    }
}

/// Offset of the version field in the header (rewritten on a version change).
pub const VERSION_OFFSET: u64 = 16;

/// Where things are in a chunk file with a given header size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Header size: [`HDR_SIZE`] or [`OLD_HDR_SIZE`].
    pub hdr_size: u64,
}

impl Layout {
    /// The layout of files we create.
    pub const CURRENT: Layout = Layout { hdr_size: HDR_SIZE };

    /// Offset of the CRC table.
    pub fn crc_offset(&self) -> u64 {
        self.hdr_size
    }
    /// Offset of block `n`.
    pub fn block_offset(&self, n: u16) -> u64 {
        self.hdr_size + CRC_TABLE_SIZE as u64 + (n as u64) * BLOCK_SIZE as u64
    }
    /// File size of a chunk with `blocks` blocks.
    pub fn file_size(&self, blocks: u16) -> u64 {
        self.block_offset(blocks)
    }

    /// Recognises the layout and block count from a file's size.
    pub fn from_file_size(size: u64) -> Result<(Layout, u16), ChunkFileError> {
        for hdr in [HDR_SIZE, OLD_HDR_SIZE] {
            let l = Layout { hdr_size: hdr };
            let base = l.block_offset(0);
            if size >= base && (size - base).is_multiple_of(BLOCK_SIZE as u64) {
                let blocks = (size - base) / BLOCK_SIZE as u64;
                if blocks <= BLOCKS_IN_CHUNK as u64 {
                    return Ok((l, blocks as u16));
                }
            }
        }
        Err(ChunkFileError::BadSize(size))
    }
}

/// Decodes the on-disk CRC table.
pub fn decode_crc_table(b: &[u8; CRC_TABLE_SIZE]) -> Box<[u32; BLOCKS_IN_CHUNK]> {
    let mut t = Box::new([0u32; BLOCKS_IN_CHUNK]);
    for (i, c) in t.iter_mut().enumerate() {
        *c = u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    }
    t
}

/// Encodes a CRC table for disk.
pub fn encode_crc_table(t: &[u32; BLOCKS_IN_CHUNK]) -> Box<[u8; CRC_TABLE_SIZE]> {
    let mut b = Box::new([0u8; CRC_TABLE_SIZE]);
    for (i, c) in t.iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&c.to_be_bytes());
    }
    b
}

/// A CRC table for a chunk with no blocks.
pub fn empty_crc_table() -> Box<[u32; BLOCKS_IN_CHUNK]> {
    Box::new([EMPTY_BLOCK_CRC; BLOCKS_IN_CHUNK])
}

/// `chunk_<CHUNKID:016X>_<VERSION:08X>.mfs`.
pub fn file_name(chunkid: u64, version: u32) -> String {
    format!("chunk_{chunkid:016X}_{version:08X}.mfs")
}

/// Parses a chunk file name (upper-case hex only, as MooseFS writes them).
pub fn parse_file_name(name: &str) -> Option<(u64, u32)> {
    let b = name.as_bytes();
    if b.len() != 35 || !name.starts_with("chunk_") || b[22] != b'_' || !name.ends_with(".mfs") {
        return None;
    }
    let hex = |s: &[u8]| -> Option<u64> {
        let mut v = 0u64;
        for &c in s {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'A'..=b'F' => c - b'A' + 10,
                _ => return None,
            };
            v = (v << 4) | d as u64;
        }
        Some(v)
    };
    Some((hex(&b[6..22])?, hex(&b[23..31])? as u32))
}

/// Name of subfolder `i` (`00`..`FF`).
pub fn subdir_name(i: u8) -> String {
    format!("{i:02X}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_bytes() {
        let h = ChunkHeader {
            chunkid: 0x1234,
            version: 7,
        };
        let e = h.encode();
        assert_eq!(&e[..8], b"MFSC 1.0");
        assert_eq!(&e[8..20], &[0, 0, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 7]);
        assert_eq!(ChunkHeader::decode(&e).unwrap(), h);
        let mut v11 = e;
        v11[7] = b'1';
        assert_eq!(ChunkHeader::decode(&v11).unwrap(), h);
        v11[7] = b'2';
        assert_eq!(ChunkHeader::decode(&v11), Err(ChunkFileError::BadSignature));
        assert_eq!(
            ChunkHeader::decode(&e[..10]),
            Err(ChunkFileError::Truncated(10))
        );
    }

    #[test]
    fn names() {
        assert_eq!(file_name(0x0A, 1), "chunk_000000000000000A_00000001.mfs");
        assert_eq!(
            parse_file_name("chunk_000000000000000A_00000001.mfs"),
            Some((10, 1))
        );
        assert_eq!(parse_file_name("chunk_000000000000000a_00000001.mfs"), None);
        assert_eq!(
            parse_file_name("chunk_000000000000000A_00000001.mfs.tmp"),
            None
        );
        assert_eq!(subdir_name(0xAB), "AB");
    }

    #[test]
    fn layout_from_size() {
        assert_eq!(Layout::from_file_size(8192).unwrap(), (Layout::CURRENT, 0));
        assert_eq!(
            Layout::from_file_size(8192 + 3 * 65536).unwrap(),
            (Layout::CURRENT, 3)
        );
        assert_eq!(
            Layout::from_file_size(5120 + 65536).unwrap(),
            (Layout { hdr_size: 1024 }, 1)
        );
        assert!(Layout::from_file_size(8193).is_err());
        assert!(Layout::from_file_size(100).is_err());
        assert!(Layout::from_file_size(8192 + 1025 * 65536).is_err());
    }

    proptest! {
        #[test]
        fn name_roundtrip(id: u64, v: u32) {
            prop_assert_eq!(parse_file_name(&file_name(id, v)), Some((id, v)));
        }
        #[test]
        fn crc_table_roundtrip(seed: u32) {
            let mut t = empty_crc_table();
            for (i, c) in t.iter_mut().enumerate() { *c = seed.wrapping_mul(i as u32 + 1); }
            prop_assert_eq!(decode_crc_table(&encode_crc_table(&t)), t);
        }
        #[test]
        fn header_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = ChunkHeader::decode(&b);
        }
    }
}
