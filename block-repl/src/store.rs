//! The local copy: the backing disk (file or block device) and its metadata, either in a
//! separate file (written with temp file, fsync, rename, directory fsync) or "internal"
//! at the end of the disk in two alternating slots (a torn write leaves the other slot).

use crate::config::MetaDisk;
use crate::meta::{Meta, MetaError};
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use thiserror::Error;

/// Block size of the device.
pub const BLOCK: u64 = 4096;
/// Writes at least this large start their writeback at once (buffered path only).
const EARLY_WRITEBACK: usize = 256 << 10;
/// Aligned reads and writes at least this large bypass the page cache (`O_DIRECT`).
pub const DIRECT_MIN: usize = 64 << 10;
/// Largest single `O_DIRECT` transfer (the size of a thread's bounce buffer).
const DIRECT_CHUNK: usize = 1 << 20;
const SLOT_MAGIC: &[u8; 8] = b"BRPSLOT1";
const SLOT_HEADER: usize = 8 + 8 + 4;

/// Local storage errors.
#[derive(Debug, Error)]
pub enum StoreError {
    /// I/O on a named file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Metadata unusable.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// No metadata yet.
    #[error("{0}: no block-repl metadata (run `block-repl create-md` first)")]
    NoMeta(PathBuf),
    /// The disk is too small.
    #[error("{path}: {size} bytes is too small for a device")]
    TooSmall {
        /// File.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

enum Loc {
    Internal { slots: [u64; 2], slot_len: u64 },
    External(PathBuf),
}

/// One node's local copy.
pub struct Store {
    file: File,
    /// The same disk opened O_DSYNC: a metadata slot write waits for that range only,
    /// not for every dirty data page of the disk (which `fdatasync` would flush).
    dsync: File,
    /// The same disk opened O_DIRECT, for large aligned transfers: they skip the page
    /// cache, whose copies and writeback cost more CPU than the transfer itself on our
    /// machines. `None` where the file system refuses O_DIRECT.
    direct: Option<File>,
    /// Cleared when an O_DIRECT transfer is refused (EINVAL): buffered from then on.
    direct_ok: AtomicBool,
    path: PathBuf,
    size: u64,
    loc: Loc,
    seq: AtomicU64,
}

fn slot_len(total: u64) -> u64 {
    // Header, fixed metadata, a bitmap for the whole disk, the largest activity log.
    (1024 + total / (BLOCK * 8) + 16 + 4 * 65_536).div_ceil(BLOCK) * BLOCK
}

impl Store {
    /// Opens the disk and works out the device size.
    pub fn open(disk: &Path, meta: &MetaDisk) -> Result<Store, StoreError> {
        let io = |source| StoreError::Io {
            path: disk.into(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(disk)
            .map_err(io)?;
        let total = file.seek(SeekFrom::End(0)).map_err(io)?;
        let dsync = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .open(disk)
            .map_err(io)?;
        let direct = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(disk)
            .ok();
        let (size, loc) = match meta {
            MetaDisk::External(p) => (total / BLOCK * BLOCK, Loc::External(p.clone())),
            MetaDisk::Internal => {
                let sl = slot_len(total);
                let size = total.saturating_sub(2 * sl) / BLOCK * BLOCK;
                (
                    size,
                    Loc::Internal {
                        slots: [total - 2 * sl, total - sl],
                        slot_len: sl,
                    },
                )
            }
        };
        if size < 16 * BLOCK {
            return Err(StoreError::TooSmall {
                path: disk.into(),
                size: total,
            });
        }
        Ok(Store {
            file,
            dsync,
            direct_ok: AtomicBool::new(direct.is_some()),
            direct,
            path: disk.into(),
            size,
            loc,
            seq: AtomicU64::new(0),
        })
    }

    /// Device size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The backing disk's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Loads the metadata.
    pub fn load_meta(&self) -> Result<Meta, StoreError> {
        match &self.loc {
            Loc::External(p) => {
                if !p.exists() {
                    return Err(StoreError::NoMeta(p.clone()));
                }
                Ok(Meta::load(p)?)
            }
            Loc::Internal { slots, slot_len } => {
                let mut best: Option<(u64, Meta)> = None;
                let mut last_err = None;
                for off in slots {
                    let mut b = vec![0u8; *slot_len as usize];
                    self.file
                        .read_exact_at(&mut b, *off)
                        .map_err(|e| self.io(e))?;
                    if &b[..8] != SLOT_MAGIC {
                        continue;
                    }
                    let seq = u64::from_le_bytes(b[8..16].try_into().expect("8"));
                    let len = u32::from_le_bytes(b[16..20].try_into().expect("4")) as usize;
                    if SLOT_HEADER + len > b.len() {
                        continue;
                    }
                    match Meta::decode(&self.path, &b[SLOT_HEADER..SLOT_HEADER + len]) {
                        Ok(m) if best.as_ref().is_none_or(|(s, _)| seq > *s) => {
                            best = Some((seq, m))
                        }
                        Ok(_) => {}
                        Err(e) => last_err = Some(e),
                    }
                }
                match (best, last_err) {
                    (Some((seq, m)), _) => {
                        self.seq.store(seq, Ordering::SeqCst);
                        Ok(m)
                    }
                    (None, Some(e)) => Err(e.into()),
                    (None, None) => Err(StoreError::NoMeta(self.path.clone())),
                }
            }
        }
    }

    /// Persists the metadata durably.
    pub fn save_meta(&self, m: &Meta) -> Result<(), StoreError> {
        match &self.loc {
            Loc::External(p) => Ok(m.store(p)?),
            Loc::Internal { slots, slot_len } => {
                let body = m.encode();
                let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
                let mut b = Vec::with_capacity(SLOT_HEADER + body.len());
                b.extend_from_slice(SLOT_MAGIC);
                b.extend_from_slice(&seq.to_le_bytes());
                b.extend_from_slice(&(body.len() as u32).to_le_bytes());
                b.extend_from_slice(&body);
                assert!(b.len() as u64 <= *slot_len, "metadata larger than its slot");
                self.dsync
                    .write_all_at(&b, slots[(seq % 2) as usize])
                    .map_err(|e| self.io(e))
            }
        }
    }

    /// True when valid metadata exists.
    pub fn has_meta(&self) -> bool {
        self.load_meta().is_ok()
    }

    /// True when a transfer of `len` bytes at `offset` bypasses the page cache (and so
    /// waits for the disk).
    pub fn is_direct(&self, len: usize, offset: u64) -> bool {
        self.direct.is_some()
            && len >= DIRECT_MIN
            && len.is_multiple_of(BLOCK as usize)
            && offset.is_multiple_of(BLOCK)
            && self.direct_ok.load(Ordering::Relaxed)
    }

    /// The O_DIRECT descriptor, when this transfer qualifies for it.
    fn direct_for(&self, len: usize, offset: u64) -> Option<&File> {
        self.direct.as_ref().filter(|_| self.is_direct(len, offset))
    }

    /// Runs an O_DIRECT transfer; on EINVAL (the file system or device refuses the
    /// alignment) it switches this store to buffered I/O for good and returns `None`,
    /// so the caller redoes the transfer buffered.
    fn try_direct(&self, r: std::io::Result<()>) -> Option<std::io::Result<()>> {
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(
                    "{}: O_DIRECT refused ({e}): using buffered I/O",
                    self.path.display()
                );
                self.direct_ok.store(false, Ordering::Relaxed);
                None
            }
            r => Some(r),
        }
    }

    /// Reads device bytes.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        if let Some(f) = self.direct_for(buf.len(), offset) {
            let r = with_bounce(|b| {
                for (i, part) in buf.chunks_mut(DIRECT_CHUNK).enumerate() {
                    let b = &mut b[..part.len()];
                    f.read_exact_at(b, offset + (i * DIRECT_CHUNK) as u64)?;
                    part.copy_from_slice(b);
                }
                Ok(())
            });
            if let Some(r) = self.try_direct(r) {
                return r;
            }
        }
        self.file.read_exact_at(buf, offset)
    }

    /// Writes device bytes: large aligned runs straight to the disk, the rest to the
    /// page cache. Either way they are stable only after [`Store::sync`].
    pub fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        if let Some(f) = self.direct_for(buf.len(), offset) {
            let r = if (buf.as_ptr() as usize).is_multiple_of(BLOCK as usize) {
                // Already aligned (a received frame's data): no bounce copy.
                f.write_all_at(buf, offset)
            } else {
                with_bounce(|b| {
                    for (i, part) in buf.chunks(DIRECT_CHUNK).enumerate() {
                        let b = &mut b[..part.len()];
                        b.copy_from_slice(part);
                        f.write_all_at(b, offset + (i * DIRECT_CHUNK) as u64)?;
                    }
                    Ok(())
                })
            };
            if let Some(r) = self.try_direct(r) {
                return r;
            }
        }
        self.file.write_all_at(buf, offset)?;
        if buf.len() >= EARLY_WRITEBACK {
            // Start writing large runs back now, so that the next flush finds little
            // left to do (streaming writes would otherwise pile up until the fsync).
            // SAFETY: plain syscall on an fd we own; a failure only loses the hint.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    offset as i64,
                    buf.len() as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        Ok(())
    }

    /// Discards (punches) or zeroes a range.
    pub fn discard(&self, offset: u64, len: u64, zero: bool) -> std::io::Result<()> {
        let mode = libc::FALLOC_FL_KEEP_SIZE
            | if zero {
                libc::FALLOC_FL_ZERO_RANGE
            } else {
                libc::FALLOC_FL_PUNCH_HOLE
            };
        // SAFETY: plain syscall on an fd we own.
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                mode,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(e);
        }
        // The backing store cannot punch: write zeroes (a discard reads back as zeroes).
        let zeros = vec![0u8; (1 << 20).min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Makes everything written so far stable.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// One aligned block of a bounce buffer.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; BLOCK as usize]);

thread_local! {
    /// This thread's bounce buffer for O_DIRECT transfers (the callers' buffers are
    /// not aligned). It is reused, so its memory stays mapped and warm.
    static BOUNCE: RefCell<Vec<Page>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's aligned bounce buffer of [`DIRECT_CHUNK`] bytes.
fn with_bounce<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    BOUNCE.with(|b| {
        let mut pages = b.borrow_mut();
        if pages.is_empty() {
            pages.resize(DIRECT_CHUNK / BLOCK as usize, Page([0; BLOCK as usize]));
        }
        let len = pages.len() * BLOCK as usize;
        // SAFETY: `Page` is plain bytes with no padding, so the vector's storage is
        // `len` initialised, contiguous bytes, borrowed mutably for the call only.
        let bytes = unsafe { std::slice::from_raw_parts_mut(pages.as_mut_ptr().cast(), len) };
        f(bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::DiskState;

    #[test]
    fn internal_metadata_survives_a_torn_slot() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk.img");
        std::fs::File::create(&p)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let s = Store::open(&p, &MetaDisk::Internal).unwrap();
        assert!(s.size() < 64 << 20 && s.size() > 60 << 20, "{}", s.size());
        assert!(matches!(s.load_meta(), Err(StoreError::NoMeta(_))));
        let mut m = Meta::new(s.size());
        s.save_meta(&m).unwrap();
        m.disk = DiskState::UpToDate;
        m.al = vec![1, 2, 3];
        s.save_meta(&m).unwrap();
        let s2 = Store::open(&p, &MetaDisk::Internal).unwrap();
        assert_eq!(s2.load_meta().unwrap(), m);
        // Tear the newest slot: the previous generation is used.
        let Loc::Internal { slots, .. } = &s2.loc else {
            panic!()
        };
        let newest = slots[(2 % 2) as usize];
        s2.file.write_all_at(&[0xff; 100], newest + 40).unwrap();
        let back = Store::open(&p, &MetaDisk::Internal)
            .unwrap()
            .load_meta()
            .unwrap();
        assert_eq!(back.disk, DiskState::Inconsistent);
        // Device data never overlaps the metadata.
        s2.write_at(&vec![7u8; 4096], s2.size() - 4096).unwrap();
        assert_eq!(
            Store::open(&p, &MetaDisk::Internal)
                .unwrap()
                .load_meta()
                .unwrap()
                .disk,
            DiskState::Inconsistent
        );
    }

    #[test]
    fn direct_and_buffered_transfers_see_each_other() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk.img");
        std::fs::File::create(&p)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let s = Store::open(&p, &MetaDisk::Internal).unwrap();
        let mut model = vec![0u8; s.size() as usize];
        let mut put = |off: usize, data: Vec<u8>| {
            s.write_at(&data, off as u64).unwrap();
            model[off..off + data.len()].copy_from_slice(&data);
        };
        let big = DIRECT_CHUNK + DIRECT_MIN; // two direct chunks
        assert!(s.direct.is_none() || s.is_direct(big, 4096));
        put(4096, (0..big).map(|i| (i % 251) as u8).collect());
        // Small and unaligned writes go through the page cache, over the direct ones.
        put(8192, vec![7u8; 4096]);
        put(100_001, vec![9u8; 333]);
        // A direct write over buffered data.
        put(4096 * 20, vec![3u8; DIRECT_MIN]);
        let mut back = vec![0u8; big + 8192];
        s.read_at(&mut back, 0).unwrap();
        assert!(back == model[..back.len()], "direct read");
        let mut small = vec![0u8; 500];
        s.read_at(&mut small, 100_000).unwrap();
        assert_eq!(small[..], model[100_000..100_500]);
        s.sync().unwrap();
        let file = std::fs::read(&p).unwrap();
        assert!(
            file[..model.len()] == model[..],
            "the file holds what was written"
        );
    }
}
