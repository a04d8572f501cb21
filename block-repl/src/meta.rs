//! The metadata block-repl keeps next to (or inside) the replicated disk: generation
//! identifiers, disk state, role history and the dirty-block bitmap, with a CRC, written
//! durably (temp file, fsync, rename, directory fsync).
//!
//! ```text
//! "BRPMETA1" size:u64 current:u64 bitmap:u64 hist0:u64 hist1:u64 disk:u8 flags:u8
//! bitmap_len:u32 bitmap bytes (see bitmap::Bitmap::encode)
//! al_count:u32 al extents:u32... crc32:u32                              (all little-endian)
//! ```

use crate::bitmap::{Bitmap, BitmapError};
use crate::frame::DiskState;
use crate::gi::Gi;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

const MAGIC: &[u8; 8] = b"BRPMETA1";
const FIXED: usize = 8 + 8 * 5 + 2 + 4;

/// Metadata of one node's copy of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Device size in bytes.
    pub size: u64,
    /// Generation identifiers.
    pub gi: Gi,
    /// Disk state.
    pub disk: DiskState,
    /// This node was primary when it last stopped (a crashed primary resyncs its
    /// activity-log extents).
    pub was_primary: bool,
    /// We marked the peer Outdated (fencing) and have not resynced it since.
    pub peer_outdated: bool,
    /// Blocks that differ from the peer.
    pub bitmap: Bitmap,
    /// Activity log: the extents (4 MiB each) a primary may have writes in flight to.
    pub al: Vec<u32>,
}

/// Metadata that cannot be used.
#[derive(Debug, Error)]
pub enum MetaError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not block-repl metadata, or damaged.
    #[error("{path}: {what}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl Meta {
    /// Metadata of a freshly created device (`create-md`): Inconsistent, never synced.
    pub fn new(size: u64) -> Meta {
        Meta {
            size,
            gi: Gi::new(),
            disk: DiskState::Inconsistent,
            was_primary: false,
            peer_outdated: false,
            bitmap: Bitmap::new(size),
            al: Vec::new(),
        }
    }

    /// Encodes the metadata.
    pub fn encode(&self) -> Vec<u8> {
        let bm = self.bitmap.encode();
        let mut v = Vec::with_capacity(FIXED + bm.len() + 4);
        v.extend_from_slice(MAGIC);
        for x in [
            self.size,
            self.gi.current,
            self.gi.bitmap,
            self.gi.history[0],
            self.gi.history[1],
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.push(match self.disk {
            DiskState::Inconsistent => 0,
            DiskState::Outdated => 1,
            DiskState::Consistent => 2,
            DiskState::UpToDate => 3,
        });
        v.push(self.was_primary as u8 | (self.peer_outdated as u8) << 1);
        v.extend_from_slice(&(bm.len() as u32).to_le_bytes());
        v.extend_from_slice(&bm);
        v.extend_from_slice(&(self.al.len() as u32).to_le_bytes());
        for e in &self.al {
            v.extend_from_slice(&e.to_le_bytes());
        }
        let crc = crc32fast::hash(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    /// Decodes metadata; `path` names the file in errors.
    pub fn decode(path: &Path, b: &[u8]) -> Result<Meta, MetaError> {
        let bad = |what: &str| MetaError::Corrupt {
            path: path.into(),
            what: what.into(),
        };
        if b.len() < FIXED + 4 || &b[..8] != MAGIC {
            return Err(bad("not block-repl metadata (wrong magic or too short)"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(bad("checksum mismatch"));
        }
        let u64at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().expect("8"));
        let size = u64at(8);
        let gi = Gi {
            current: u64at(16),
            bitmap: u64at(24),
            history: [u64at(32), u64at(40)],
        };
        let disk = match body[48] {
            0 => DiskState::Inconsistent,
            1 => DiskState::Outdated,
            2 => DiskState::Consistent,
            3 => DiskState::UpToDate,
            _ => return Err(bad("bad disk state")),
        };
        let flags = body[49];
        let bm_len = u32::from_le_bytes(body[50..54].try_into().expect("4")) as usize;
        if FIXED + bm_len + 4 > body.len() {
            return Err(bad("bitmap length does not match the file"));
        }
        let bitmap = Bitmap::decode(size, &body[FIXED..FIXED + bm_len])
            .map_err(|e: BitmapError| bad(&e.to_string()))?;
        let rest = &body[FIXED + bm_len..];
        let al_n = u32::from_le_bytes(rest[..4].try_into().expect("4")) as usize;
        if rest.len() != 4 + 4 * al_n {
            return Err(bad("activity log length does not match the file"));
        }
        let al = rest[4..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
            .collect();
        Ok(Meta {
            size,
            gi,
            disk,
            was_primary: flags & 1 != 0,
            peer_outdated: flags & 2 != 0,
            bitmap,
            al,
        })
    }

    /// Reads metadata from a file.
    pub fn load(path: &Path) -> Result<Meta, MetaError> {
        let b = std::fs::read(path).map_err(|source| MetaError::Io {
            path: path.into(),
            source,
        })?;
        Self::decode(path, &b)
    }

    /// Writes metadata durably: temp file, fsync, rename, fsync of the directory.
    pub fn store(&self, path: &Path) -> Result<(), MetaError> {
        let io = |source| MetaError::Io {
            path: path.into(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&self.encode()).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io)?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)
    }

    /// Why this copy must not be promoted without `--force`, if it must not.
    pub fn promotion_refusal(&self) -> Option<String> {
        match self.disk {
            DiskState::Inconsistent => Some(
                "the local disk is Inconsistent (never synced, or a resync did not finish)".into(),
            ),
            DiskState::Outdated => {
                Some("the local disk is Outdated: the peer has newer data (it fenced us)".into())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_durable_store_and_corruption() {
        let d = std::env::temp_dir().join(format!("brp-meta-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("mfs.meta");
        let mut m = Meta::new(64 << 20);
        assert!(m.promotion_refusal().is_some());
        m.gi.new_generation(0x1234_5678, true);
        m.disk = DiskState::UpToDate;
        m.was_primary = true;
        m.bitmap.set_range(5 << 20, 10_000);
        m.al = vec![3, 17];
        m.store(&p).unwrap();
        let back = Meta::load(&p).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.promotion_refusal(), None);
        let mut raw = std::fs::read(&p).unwrap();
        raw[20] ^= 1;
        let e = Meta::decode(&p, &raw).unwrap_err().to_string();
        assert!(e.ends_with("checksum mismatch"), "{e}");
        assert!(Meta::decode(&p, b"garbage").is_err());
        let mut o = m.clone();
        o.disk = DiskState::Outdated;
        assert!(o.promotion_refusal().unwrap().contains("Outdated"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
