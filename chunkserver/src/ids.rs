//! The identity a chunkserver keeps between runs, as real MooseFS chunkservers do:
//! `DATA_PATH/chunkserverid.mfs` (`csid:u16 metaid:u64`, big-endian) and a `.metaid`
//! file (`metaid:u64`) on every disk. Once a master has accepted us, its metadata id is
//! pinned: a master of another file system instance is refused, and a disk that belongs
//! to another instance is not used.

use std::fs;
use std::io;
use std::path::Path;
use thiserror::Error;

/// Name of the identity file in DATA_PATH.
pub const CSID_FILE: &str = "chunkserverid.mfs";
/// Name of the per-disk metaid file.
pub const DISK_METAID_FILE: &str = ".metaid";

/// What we remember about ourselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity {
    /// Chunkserver id given by the master (0 = none yet).
    pub csid: u16,
    /// Metadata id of the master's instance (0 = none yet).
    pub metaid: u64,
}

/// Reads `chunkserverid.mfs`; a missing or short file gives zeros, as MooseFS does.
pub fn load_identity(data_path: &Path) -> Identity {
    let Ok(b) = fs::read(data_path.join(CSID_FILE)) else {
        return Identity::default();
    };
    let mut id = Identity::default();
    if b.len() >= 2 {
        id.csid = u16::from_be_bytes([b[0], b[1]]);
    }
    if b.len() >= 10 {
        id.metaid = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
    }
    id
}

pub use antler_common::durable::write_durably;

/// Stores `chunkserverid.mfs`.
pub fn save_identity(data_path: &Path, id: Identity) -> io::Result<()> {
    let mut b = Vec::with_capacity(10);
    b.extend_from_slice(&id.csid.to_be_bytes());
    b.extend_from_slice(&id.metaid.to_be_bytes());
    write_durably(&data_path.join(CSID_FILE), &b)
}

/// Reads a disk's `.metaid` (None when absent or unreadable).
pub fn load_disk_metaid(disk: &Path) -> Option<u64> {
    let b = fs::read(disk.join(DISK_METAID_FILE)).ok()?;
    (b.len() >= 8).then(|| u64::from_be_bytes(b[..8].try_into().expect("8 bytes")))
}

/// Writes a disk's `.metaid`.
pub fn save_disk_metaid(disk: &Path, metaid: u64) -> io::Result<()> {
    write_durably(&disk.join(DISK_METAID_FILE), &metaid.to_be_bytes())
}

/// A master we must not serve.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetaidMismatch {
    /// `chunkserverid.mfs` names another instance.
    #[error("wrong meta data id (file chunkserverid.mfs: {ours:016X}; received from master: {master:016X}); this chunkserver belongs to another MooseFS instance")]
    Identity {
        /// Ours.
        ours: u64,
        /// The master's.
        master: u64,
    },
    /// The disks' `.metaid` files name another instance.
    #[error("wrong meta data id (files .metaid: {disks:016X}; received from master: {master:016X}); these disks belong to another MooseFS instance")]
    Disks {
        /// From the disks.
        disks: u64,
        /// The master's.
        master: u64,
    },
}

/// Decides whether the master's metaid is acceptable given what we remember.
pub fn check_master_metaid(
    master: u64,
    ours: u64,
    disks: Option<u64>,
) -> Result<(), MetaidMismatch> {
    if master == 0 {
        return Ok(());
    }
    if ours != 0 && ours != master {
        return Err(MetaidMismatch::Identity { ours, master });
    }
    if ours == 0 {
        if let Some(d) = disks.filter(|d| *d != 0 && *d != master) {
            return Err(MetaidMismatch::Disks { disks: d, master });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_roundtrip_and_format() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load_identity(d.path()), Identity::default());
        save_identity(
            d.path(),
            Identity {
                csid: 3,
                metaid: 0x0102030405060708,
            },
        )
        .unwrap();
        assert_eq!(
            fs::read(d.path().join(CSID_FILE)).unwrap(),
            vec![0, 3, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(
            load_identity(d.path()),
            Identity {
                csid: 3,
                metaid: 0x0102030405060708
            }
        );
        save_disk_metaid(d.path(), 9).unwrap();
        assert_eq!(load_disk_metaid(d.path()), Some(9));
    }

    #[test]
    fn metaid_rules() {
        assert!(check_master_metaid(5, 0, None).is_ok());
        assert!(check_master_metaid(5, 5, Some(7)).is_ok());
        assert!(matches!(
            check_master_metaid(5, 6, None),
            Err(MetaidMismatch::Identity { .. })
        ));
        assert!(matches!(
            check_master_metaid(5, 0, Some(6)),
            Err(MetaidMismatch::Disks { .. })
        ));
        assert!(check_master_metaid(0, 6, Some(7)).is_ok());
    }
}
