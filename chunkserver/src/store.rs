//! The chunk store: every chunk copy on every configured disk.
//!
//! Each chunk is one file in MooseFS's format (see [`antler_protocol::chunkfile`]).
//! The store keeps, per chunk, its version, block count and (while in use) its open
//! file and CRC table. Every block read verifies the block's CRC; a mismatch or an I/O
//! error marks the copy damaged and queues a report for the master. Writes verify the
//! sender's CRC, then update the block and its CRC entry (read-modify-write for partial
//! blocks). The CRC table goes back to disk when a write session ends.
//!
//! Concurrency: one mutex per chunk serialises its file operations; the chunk map is
//! behind a read-write lock held only for lookups and insertions.

use crate::hddcfg::{HddLine, Limit};
use antler_protocol::chunkfile::{self, ChunkHeader, Layout, CRC_TABLE_SIZE, VERSION_OFFSET};
use antler_protocol::codes::{status, BLOCKS_IN_CHUNK, BLOCK_SIZE, CHUNK_SIZE};
use antler_protocol::crc::{crc32, crc32_zeros, EMPTY_BLOCK_CRC};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// A MooseFS status code (`status::OK` or an `MFS_ERROR_*`).
pub type Status = u8;

/// One configured disk.
#[derive(Debug)]
pub struct Disk {
    /// Folder with the 256 subfolders.
    pub path: PathBuf,
    /// `*` in mfshdd.cfg: read-only, chunks are reported as "to be removed".
    pub marked_for_removal: bool,
    limit: Option<Limit>,
    leave_default: u64,
    next_subdir: AtomicUsize,
    /// Set after I/O errors that make the disk unusable for new chunks.
    pub failed: AtomicBool,
    /// Number of chunks on this disk.
    pub chunk_count: AtomicU64,
}

/// Space figures for one disk, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSpace {
    /// Used bytes.
    pub used: u64,
    /// Usable total bytes (after the leave-free reserve).
    pub total: u64,
}

impl Disk {
    fn chunk_path(&self, subdir: u8, chunkid: u64, version: u32) -> PathBuf {
        self.path
            .join(chunkfile::subdir_name(subdir))
            .join(chunkfile::file_name(chunkid, version))
    }

    /// Current space figures from statvfs and the configured limits.
    pub fn space(&self) -> io::Result<DiskSpace> {
        let (total, avail) = statvfs(&self.path)?;
        let used = total.saturating_sub(avail);
        Ok(match self.limit {
            Some(Limit::Max(m)) => DiskSpace {
                used: used.min(m),
                total: m.min(total),
            },
            Some(Limit::Leave(l)) => DiskSpace {
                used,
                total: total.saturating_sub(l),
            },
            None => DiskSpace {
                used,
                total: total.saturating_sub(self.leave_default),
            },
        })
    }

    fn free(&self) -> u64 {
        self.space()
            .map(|s| s.total.saturating_sub(s.used))
            .unwrap_or(0)
    }
}

fn statvfs(p: &Path) -> io::Result<(u64, u64)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `s` points to writable memory of the
    // right type; statvfs only writes into it.
    let r = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let s = unsafe { s.assume_init() };
    let frsize = s.f_frsize;
    Ok((s.f_blocks * frsize, s.f_bavail * frsize))
}

/// Mutable state of one chunk copy.
#[derive(Debug)]
struct Inner {
    version: u32,
    disk: usize,
    subdir: u8,
    layout: Layout,
    blocks: u16,
    file: Option<File>,
    crc: Option<Box<[u32; BLOCKS_IN_CHUNK]>>,
    crc_dirty: bool,
    damaged: bool,
    gone: bool,
    last_used: Option<Instant>,
}

/// One chunk copy.
#[derive(Debug)]
pub struct Chunk {
    /// Chunk id.
    pub id: u64,
    inner: Mutex<Inner>,
}

/// Reports waiting to be sent to the master.
#[derive(Debug, Default)]
pub struct Reports {
    /// Chunks found damaged.
    pub damaged: Vec<u64>,
    /// Chunks that disappeared.
    pub lost: Vec<u64>,
    /// Disk errors since the last report.
    pub errors: u32,
}

/// Options of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// HDD_LEAVE_SPACE_DEFAULT.
    pub leave_space_default: u64,
    /// HDD_FSYNC_BEFORE_CLOSE: fsync a chunk when a write session ends.
    pub fsync_before_close: bool,
}

/// All chunk copies of this chunkserver.
#[derive(Debug)]
pub struct Store {
    disks: Vec<Disk>,
    chunks: RwLock<HashMap<u64, Arc<Chunk>>>,
    reports: Mutex<Reports>,
    space_changed: AtomicBool,
    opts: StoreOptions,
}

/// Summary of a startup scan.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScanSummary {
    /// Chunk files found.
    pub chunks: usize,
    /// Files that look like chunks but could not be used.
    pub bad: usize,
}

fn io_status(e: &io::Error) -> Status {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        status::NOSPACE
    } else {
        status::IO
    }
}

impl Store {
    /// Builds a store over the configured disks, creating the 256 subfolders where
    /// missing. Nothing is scanned yet.
    pub fn new(lines: &[HddLine], opts: StoreOptions) -> io::Result<Store> {
        let mut disks = Vec::new();
        for l in lines {
            if !l.path.is_dir() {
                warn!(disk = %l.path.display(), "hdd folder does not exist or is not a directory; ignored");
                continue;
            }
            if !l.marked_for_removal {
                for i in 0..=255u8 {
                    let d = l.path.join(chunkfile::subdir_name(i));
                    if !d.is_dir() {
                        fs::create_dir(&d)?;
                    }
                }
            }
            disks.push(Disk {
                path: l.path.clone(),
                marked_for_removal: l.marked_for_removal,
                limit: l.limit,
                leave_default: opts.leave_space_default,
                next_subdir: AtomicUsize::new(0),
                failed: AtomicBool::new(false),
                chunk_count: AtomicU64::new(0),
            });
        }
        if disks.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no usable hdd folders",
            ));
        }
        Ok(Store {
            disks,
            chunks: RwLock::new(HashMap::new()),
            reports: Mutex::new(Reports::default()),
            space_changed: AtomicBool::new(true),
            opts,
        })
    }

    /// The configured disks.
    pub fn disks(&self) -> &[Disk] {
        &self.disks
    }

    /// Finds every chunk file on every disk. Progress is logged per disk.
    pub fn scan(&self) -> ScanSummary {
        let mut sum = ScanSummary::default();
        for (di, disk) in self.disks.iter().enumerate() {
            let mut found = 0usize;
            info!(disk = %disk.path.display(), "scanning folder");
            for sub in 0..=255u8 {
                let dir = disk.path.join(chunkfile::subdir_name(sub));
                let Ok(rd) = fs::read_dir(&dir) else { continue };
                for ent in rd.flatten() {
                    let name = ent.file_name();
                    let Some((id, ver)) = name.to_str().and_then(chunkfile::parse_file_name) else {
                        continue;
                    };
                    let size = match ent.metadata() {
                        Ok(m) if m.is_file() => m.len(),
                        _ => continue,
                    };
                    let (layout, blocks) = match Layout::from_file_size(size) {
                        Ok(x) => x,
                        Err(e) => {
                            warn!(file = %ent.path().display(), "chunk file ignored: {e}");
                            sum.bad += 1;
                            continue;
                        }
                    };
                    let inner = Inner {
                        version: ver,
                        disk: di,
                        subdir: sub,
                        layout,
                        blocks,
                        file: None,
                        crc: None,
                        crc_dirty: false,
                        damaged: false,
                        gone: false,
                        last_used: None,
                    };
                    let mut map = self.chunks.write().unwrap();
                    if let Some(old) = map.get(&id) {
                        let o = old.inner.lock().unwrap();
                        let keep_old = o.version >= ver;
                        warn!(
                            chunk = format_args!("{id:016X}"),
                            v1 = o.version,
                            v2 = ver,
                            "chunk found twice; using the newer version"
                        );
                        if keep_old {
                            continue;
                        }
                        self.disks[o.disk]
                            .chunk_count
                            .fetch_sub(1, Ordering::Relaxed);
                    }
                    map.insert(
                        id,
                        Arc::new(Chunk {
                            id,
                            inner: Mutex::new(inner),
                        }),
                    );
                    disk.chunk_count.fetch_add(1, Ordering::Relaxed);
                    found += 1;
                }
                if sub % 64 == 63 {
                    info!(disk = %disk.path.display(), "scanning folder: {}% ({found} chunks so far)", (sub as usize + 1) * 100 / 256);
                }
            }
            info!(disk = %disk.path.display(), chunks = found, "scanning folder: complete");
            sum.chunks += found;
        }
        self.space_changed.store(true, Ordering::Relaxed);
        sum
    }

    /// Looks a chunk up.
    pub fn get(&self, id: u64) -> Option<Arc<Chunk>> {
        self.chunks.read().unwrap().get(&id).cloned()
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.chunks.read().unwrap().len()
    }

    /// True when the store holds no chunk.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(chunkid, version)` of every chunk, for registration; the high bit of the version
    /// marks chunks on disks marked for removal.
    pub fn chunk_list(&self) -> Vec<(u64, u32)> {
        let map = self.chunks.read().unwrap();
        let mut v: Vec<(u64, u32)> = map
            .values()
            .filter_map(|c| {
                let i = c.inner.lock().unwrap();
                if i.gone {
                    return None;
                }
                let mark = if self.disks[i.disk].marked_for_removal {
                    0x8000_0000
                } else {
                    0
                };
                Some((c.id, i.version | mark))
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Space report: (normal disks, disks marked for removal) and chunk counts.
    pub fn space(&self) -> antler_protocol::cstoma::SpaceInfo {
        let mut s = antler_protocol::cstoma::SpaceInfo::default();
        for d in &self.disks {
            if d.failed.load(Ordering::Relaxed) {
                continue;
            }
            let sp = d.space().unwrap_or_default();
            let n = d.chunk_count.load(Ordering::Relaxed) as u32;
            if d.marked_for_removal {
                s.td_used += sp.used;
                s.td_total += sp.total;
                s.td_chunks += n;
            } else {
                s.used += sp.used;
                s.total += sp.total;
                s.chunks += n;
            }
        }
        s
    }

    /// True (once) when chunks were added or removed since the last call.
    pub fn take_space_changed(&self) -> bool {
        self.space_changed.swap(false, Ordering::Relaxed)
    }

    /// Takes the pending damaged/lost/error reports.
    pub fn take_reports(&self) -> Reports {
        std::mem::take(&mut *self.reports.lock().unwrap())
    }

    fn report_damaged(&self, id: u64, inner: &mut Inner) {
        inner.damaged = true;
        let mut r = self.reports.lock().unwrap();
        r.errors += 1;
        if !r.damaged.contains(&id) {
            r.damaged.push(id);
        }
    }

    fn report_lost(&self, id: u64, inner: &mut Inner) {
        inner.gone = true;
        self.chunks.write().unwrap().remove(&id);
        self.disks[inner.disk]
            .chunk_count
            .fetch_sub(1, Ordering::Relaxed);
        self.space_changed.store(true, Ordering::Relaxed);
        self.reports.lock().unwrap().lost.push(id);
    }

    fn pick_disk(&self) -> Option<usize> {
        self.disks
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.marked_for_removal && !d.failed.load(Ordering::Relaxed))
            .map(|(i, d)| (i, d.free()))
            .filter(|(_, free)| *free >= CHUNK_SIZE as u64)
            .max_by_key(|(_, free)| *free)
            .map(|(i, _)| i)
    }

    /// Opens the chunk's file and loads its CRC table if not done yet.
    fn open(&self, c: &Chunk, inner: &mut Inner) -> Result<(), Status> {
        if inner.gone {
            return Err(status::NOCHUNK);
        }
        if inner.file.is_none() {
            let disk = &self.disks[inner.disk];
            let path = disk.chunk_path(inner.subdir, c.id, inner.version);
            let f = match OpenOptions::new()
                .read(true)
                .write(!disk.marked_for_removal)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    warn!(file = %path.display(), "chunk file vanished; reporting it lost");
                    self.report_lost(c.id, inner);
                    return Err(status::NOCHUNK);
                }
                Err(e) => {
                    warn!(file = %path.display(), "open error: {e}");
                    self.report_damaged(c.id, inner);
                    return Err(io_status(&e));
                }
            };
            inner.file = Some(f);
        }
        if inner.crc.is_none() {
            let f = inner.file.as_ref().expect("opened above");
            let mut hdr = [0u8; chunkfile::HEADER_INFO_LEN];
            let mut tab = Box::new([0u8; CRC_TABLE_SIZE]);
            let r = f
                .read_exact_at(&mut hdr, 0)
                .and_then(|_| f.read_exact_at(&mut tab[..], inner.layout.crc_offset()));
            let path = || self.disks[inner.disk].chunk_path(inner.subdir, c.id, inner.version);
            if let Err(e) = r {
                warn!(file = %path().display(), "chunk header read error: {e}");
                self.report_damaged(c.id, inner);
                return Err(status::IO);
            }
            match ChunkHeader::decode(&hdr) {
                Ok(h) if h.chunkid == c.id && h.version == inner.version => {}
                Ok(h) => {
                    warn!(file = %path().display(), "wrong id/version in header ({:016X}_{:08X})", h.chunkid, h.version);
                    self.report_damaged(c.id, inner);
                    return Err(status::IO);
                }
                Err(e) => {
                    warn!(file = %path().display(), "{e}");
                    self.report_damaged(c.id, inner);
                    return Err(status::IO);
                }
            }
            let mut crc = chunkfile::decode_crc_table(&tab);
            // Slots past the last block mean nothing; MooseFS keeps MFSCRCEMPTY there
            // (new files start with zeros). Normalise so write-backs match its files.
            for x in &mut crc[inner.blocks as usize..] {
                *x = EMPTY_BLOCK_CRC;
            }
            inner.crc = Some(crc);
        }
        Ok(())
    }

    /// Writes the CRC table back if it changed (optionally fsyncing) and closes the file.
    fn close(&self, c: &Chunk, inner: &mut Inner) -> Result<(), Status> {
        let result = self.flush(c, inner);
        inner.file = None;
        inner.crc = None;
        inner.last_used = None;
        result
    }

    /// Writes the CRC table back if it changed, optionally fsyncs; the file stays open.
    fn flush(&self, c: &Chunk, inner: &mut Inner) -> Result<(), Status> {
        let mut result = Ok(());
        if inner.crc_dirty {
            if let (Some(f), Some(crc)) = (&inner.file, &inner.crc) {
                if let Err(e) = f.write_all_at(
                    &chunkfile::encode_crc_table(crc)[..],
                    inner.layout.crc_offset(),
                ) {
                    warn!(
                        chunk = format_args!("{:016X}", c.id),
                        "CRC table write error: {e}"
                    );
                    result = Err(io_status(&e));
                } else if self.opts.fsync_before_close {
                    if let Err(e) = f.sync_data() {
                        warn!(chunk = format_args!("{:016X}", c.id), "fsync error: {e}");
                        result = Err(status::IO);
                    }
                }
            }
            inner.crc_dirty = false;
        }
        if result.is_err() {
            self.report_damaged(c.id, inner);
        }
        result
    }

    /// Closes the files of chunks unused for `idle` (writing back their CRC tables).
    /// Open files and CRC tables are kept between requests so that small random reads do
    /// not reopen the file and reload the table each time.
    pub fn close_idle(&self, idle: Duration) -> usize {
        let chunks: Vec<Arc<Chunk>> = self.chunks.read().unwrap().values().cloned().collect();
        let mut closed = 0;
        for c in chunks {
            let Ok(mut i) = c.inner.try_lock() else {
                continue;
            };
            if i.file.is_some() && i.last_used.is_none_or(|t| t.elapsed() >= idle) {
                let _ = self.close(&c, &mut i);
                closed += 1;
            }
        }
        closed
    }

    fn check_version(inner: &Inner, version: u32) -> Result<(), Status> {
        if inner.gone {
            Err(status::NOCHUNK)
        } else if version != 0 && inner.version != version {
            Err(status::WRONGVERSION)
        } else {
            Ok(())
        }
    }

    fn lookup(&self, id: u64) -> Result<Arc<Chunk>, Status> {
        self.get(id).ok_or(status::NOCHUNK)
    }

    /// Creates an empty chunk (`MATOCS_CREATE`).
    pub fn create(&self, id: u64, version: u32) -> Result<(), Status> {
        if self.get(id).is_some() {
            return Err(status::CHUNKEXIST);
        }
        let di = self.pick_disk().ok_or(status::NOSPACE)?;
        let disk = &self.disks[di];
        let subdir = (disk.next_subdir.fetch_add(1, Ordering::Relaxed) % 256) as u8;
        let path = disk.chunk_path(subdir, id, version);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&path)
            .map_err(|e| {
                warn!(file = %path.display(), "create error: {e}");
                io_status(&e)
            })?;
        let mut hdr = vec![0u8; (chunkfile::HDR_SIZE as usize) + CRC_TABLE_SIZE];
        hdr[..chunkfile::HEADER_INFO_LEN].copy_from_slice(
            &ChunkHeader {
                chunkid: id,
                version,
            }
            .encode(),
        );
        if let Err(e) = f.write_all_at(&hdr, 0) {
            warn!(file = %path.display(), "create write error: {e}");
            let _ = fs::remove_file(&path);
            return Err(io_status(&e));
        }
        let inner = Inner {
            version,
            disk: di,
            subdir,
            layout: Layout::CURRENT,
            blocks: 0,
            file: None,
            crc: None,
            crc_dirty: false,
            damaged: false,
            gone: false,
            last_used: None,
        };
        let mut map = self.chunks.write().unwrap();
        if map.contains_key(&id) {
            drop(map);
            let _ = fs::remove_file(&path);
            return Err(status::CHUNKEXIST);
        }
        map.insert(
            id,
            Arc::new(Chunk {
                id,
                inner: Mutex::new(inner),
            }),
        );
        disk.chunk_count.fetch_add(1, Ordering::Relaxed);
        self.space_changed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes a chunk (`MATOCS_DELETE`); version 0 = any.
    pub fn delete(&self, id: u64, version: u32) -> Result<(), Status> {
        let c = self.lookup(id)?;
        let mut i = c.inner.lock().unwrap();
        Self::check_version(&i, version)?;
        i.file = None;
        i.crc = None;
        let path = self.disks[i.disk].chunk_path(i.subdir, id, i.version);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                warn!(file = %path.display(), "chunk already deleted")
            }
            Err(e) => {
                warn!(file = %path.display(), "unlink error: {e}");
                return Err(status::IO);
            }
        }
        i.gone = true;
        self.disks[i.disk]
            .chunk_count
            .fetch_sub(1, Ordering::Relaxed);
        self.chunks.write().unwrap().remove(&id);
        self.space_changed.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn set_version_locked(&self, c: &Chunk, i: &mut Inner, new_version: u32) -> Result<(), Status> {
        let disk = &self.disks[i.disk];
        let old = disk.chunk_path(i.subdir, c.id, i.version);
        let new = disk.chunk_path(i.subdir, c.id, new_version);
        fs::rename(&old, &new).map_err(|e| {
            warn!(file = %old.display(), "rename error: {e}");
            status::IO
        })?;
        let old_version = i.version;
        i.version = new_version;
        let r = match &i.file {
            Some(f) => f.write_all_at(&new_version.to_be_bytes(), VERSION_OFFSET),
            None => OpenOptions::new()
                .write(true)
                .open(&new)
                .and_then(|f| f.write_all_at(&new_version.to_be_bytes(), VERSION_OFFSET)),
        };
        if let Err(e) = r {
            warn!(file = %new.display(), "version write error: {e}");
            if fs::rename(&new, &old).is_ok() {
                i.version = old_version;
            }
            return Err(status::IO);
        }
        Ok(())
    }

    /// Changes a chunk's version (`MATOCS_SET_VERSION`).
    pub fn set_version(&self, id: u64, version: u32, new_version: u32) -> Result<(), Status> {
        let c = self.lookup(id)?;
        let mut i = c.inner.lock().unwrap();
        Self::check_version(&i, version)?;
        self.set_version_locked(&c, &mut i, new_version)
    }

    fn truncate_locked(&self, c: &Chunk, i: &mut Inner, length: u32) -> Result<(), Status> {
        if length > CHUNK_SIZE {
            return Err(status::WRONGSIZE);
        }
        self.open(c, i)?;
        let blocks = length.div_ceil(BLOCK_SIZE as u32) as u16;
        let f = i.file.as_ref().expect("opened");
        let crc = i.crc.as_mut().expect("opened");
        let io = |e: io::Error| {
            warn!(chunk = format_args!("{:016X}", c.id), "truncate error: {e}");
            status::IO
        };
        if blocks > i.blocks {
            f.set_len(i.layout.file_size(blocks)).map_err(io)?;
            for x in &mut crc[i.blocks as usize..blocks as usize] {
                *x = EMPTY_BLOCK_CRC;
            }
        } else {
            let base = i.layout.block_offset(0);
            f.set_len(base + length as u64).map_err(io)?;
            let tail = length as usize % BLOCK_SIZE;
            let mut first_clear = blocks as usize;
            if tail > 0 {
                f.set_len(i.layout.file_size(blocks)).map_err(io)?;
                let last = blocks - 1;
                let mut buf = vec![0u8; BLOCK_SIZE];
                f.read_exact_at(&mut buf[..tail], i.layout.block_offset(last))
                    .map_err(io)?;
                crc[last as usize] = crc32(&buf);
                first_clear = blocks as usize;
            }
            for x in &mut crc[first_clear..] {
                *x = EMPTY_BLOCK_CRC;
            }
        }
        i.blocks = blocks;
        i.crc_dirty = true;
        self.space_changed.store(true, Ordering::Relaxed);
        self.close(c, i)
    }

    /// Sets a new version and truncates to `length` bytes (`MATOCS_TRUNCATE`).
    pub fn truncate(
        &self,
        id: u64,
        version: u32,
        new_version: u32,
        length: u32,
    ) -> Result<(), Status> {
        let c = self.lookup(id)?;
        let mut i = c.inner.lock().unwrap();
        Self::check_version(&i, version)?;
        if length > CHUNK_SIZE {
            return Err(status::WRONGSIZE);
        }
        self.set_version_locked(&c, &mut i, new_version)?;
        self.truncate_locked(&c, &mut i, length)
    }

    /// Copies `src` into a new chunk `dst` with version `dst_version`, optionally
    /// truncated (`MATOCS_DUPLICATE`, `MATOCS_DUPTRUNC`).
    pub fn duplicate(
        &self,
        src: u64,
        src_version: u32,
        dst: u64,
        dst_version: u32,
        length: Option<u32>,
    ) -> Result<(), Status> {
        if let Some(l) = length {
            if l > CHUNK_SIZE {
                return Err(status::WRONGSIZE);
            }
        }
        let sc = self.lookup(src)?;
        let mut si = sc.inner.lock().unwrap();
        Self::check_version(&si, src_version)?;
        self.open(&sc, &mut si)?;
        self.create(dst, dst_version)?;
        let dc = self.lookup(dst)?;
        let mut di = dc.inner.lock().unwrap();
        let r = (|| {
            self.open(&dc, &mut di)?;
            let mut buf = vec![0u8; BLOCK_SIZE];
            let sf = si.file.as_ref().expect("opened");
            let df = di.file.as_ref().expect("opened");
            for b in 0..si.blocks {
                sf.read_exact_at(&mut buf, si.layout.block_offset(b))
                    .map_err(|_| status::IO)?;
                df.write_all_at(&buf, di.layout.block_offset(b))
                    .map_err(|e| io_status(&e))?;
            }
            let blocks = si.blocks;
            let table = si.crc.as_ref().expect("opened").clone();
            di.blocks = blocks;
            di.crc = Some(table);
            di.crc_dirty = true;
            match length {
                Some(l) => self.truncate_locked(&dc, &mut di, l),
                None => self.close(&dc, &mut di),
            }
        })();
        let _ = self.close(&sc, &mut si);
        if r.is_err() {
            drop(di);
            let _ = self.delete(dst, 0);
        }
        r
    }

    /// Reads a whole chunk and checks every block CRC (`CHUNKOP` test, HDD_TEST_FREQ).
    pub fn test(&self, id: u64, version: u32) -> Result<(), Status> {
        let c = self.lookup(id)?;
        let mut i = c.inner.lock().unwrap();
        Self::check_version(&i, version)?;
        self.open(&c, &mut i)?;
        let mut buf = vec![0u8; BLOCK_SIZE];
        let mut result = Ok(());
        for b in 0..i.blocks {
            let f = i.file.as_ref().expect("opened");
            let r = f.read_exact_at(&mut buf, i.layout.block_offset(b));
            let want = i.crc.as_ref().expect("opened")[b as usize];
            if r.is_err() || crc32(&buf) != want {
                let path = self.disks[i.disk].chunk_path(i.subdir, id, i.version);
                warn!(file = %path.display(), block = b, "chunk test: crc error");
                self.report_damaged(id, &mut i);
                result = Err(status::CRC);
                break;
            }
        }
        let _ = self.close(&c, &mut i);
        result
    }

    /// Block count of a chunk.
    pub fn blocks(&self, id: u64, version: u32) -> Result<u16, Status> {
        let c = self.lookup(id)?;
        let i = c.inner.lock().unwrap();
        Self::check_version(&i, version)?;
        Ok(i.blocks)
    }

    /// The chunk's CRC table as stored on disk (1024 × u32 BE).
    pub fn crc_table(&self, id: u64, version: u32) -> Result<Box<[u8; CRC_TABLE_SIZE]>, Status> {
        let c = self.lookup(id)?;
        let mut i = c.inner.lock().unwrap();
        Self::check_version(&i, version)?;
        self.open(&c, &mut i)?;
        let t = chunkfile::encode_crc_table(i.crc.as_ref().expect("opened"));
        let _ = self.close(&c, &mut i);
        Ok(t)
    }

    /// Begins a read or write session on a chunk: checks the version and opens the file.
    pub fn session(self: &Arc<Self>, id: u64, version: u32) -> Result<Session, Status> {
        let c = self.lookup(id)?;
        {
            let mut i = c.inner.lock().unwrap();
            Self::check_version(&i, version)?;
            if i.damaged {
                return Err(status::CRC);
            }
            self.open(&c, &mut i)?;
        }
        Ok(Session {
            store: Arc::clone(self),
            chunk: c,
            version,
        })
    }

    /// Ids of all chunks (for background testing).
    pub fn ids(&self) -> Vec<u64> {
        self.chunks.read().unwrap().keys().copied().collect()
    }

    /// Version of a chunk, if present.
    pub fn version_of(&self, id: u64) -> Option<u32> {
        self.get(id).map(|c| c.inner.lock().unwrap().version)
    }
}

/// An open chunk used by one read or write request. Writes the CRC table back and
/// closes the file when dropped.
#[derive(Debug)]
pub struct Session {
    store: Arc<Store>,
    chunk: Arc<Chunk>,
    version: u32,
}

impl Session {
    fn with<T>(
        &self,
        f: impl FnOnce(&Store, &Chunk, &mut Inner) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let mut i = self.chunk.inner.lock().unwrap();
        Store::check_version(&i, self.version)?;
        self.store.open(&self.chunk, &mut i)?;
        i.last_used = Some(Instant::now());
        f(&self.store, &self.chunk, &mut i)
    }

    /// Reads `out.len()` bytes at `offset` inside block `blocknum` into `out`, checking the
    /// block CRC, and returns the CRC-32 of the bytes read.
    pub fn read(
        &self,
        blocknum: u16,
        offset: u32,
        out: &mut [u8],
        scratch: &mut Vec<u8>,
    ) -> Result<u32, Status> {
        let size = out.len();
        if blocknum as usize >= BLOCKS_IN_CHUNK {
            return Err(status::BNUMTOOBIG);
        }
        if size > BLOCK_SIZE || offset as usize >= BLOCK_SIZE || offset as usize + size > BLOCK_SIZE
        {
            return Err(status::WRONGOFFSET);
        }
        self.with(|store, c, i| {
            if blocknum >= i.blocks {
                out.fill(0);
                return Ok(crc32_zeros(size));
            }
            let f = i.file.as_ref().expect("opened");
            let want = i.crc.as_ref().expect("opened")[blocknum as usize];
            let full = size == BLOCK_SIZE;
            let r = if full {
                f.read_exact_at(out, i.layout.block_offset(blocknum))
            } else {
                scratch.resize(BLOCK_SIZE, 0);
                f.read_exact_at(scratch, i.layout.block_offset(blocknum))
            };
            let path = || store.disks[i.disk].chunk_path(i.subdir, c.id, i.version);
            if let Err(e) = r {
                warn!(file = %path().display(), block = blocknum, "read error: {e}");
                store.report_damaged(c.id, i);
                return Err(status::IO);
            }
            let block_crc = if full { crc32(out) } else { crc32(scratch) };
            if block_crc != want {
                warn!(file = %path().display(), block = blocknum, "crc error (data crc: {block_crc:08X}; check crc: {want:08X})");
                store.report_damaged(c.id, i);
                return Err(status::CRC);
            }
            if full {
                Ok(block_crc)
            } else {
                out.copy_from_slice(&scratch[offset as usize..offset as usize + size]);
                Ok(crc32(out))
            }
        })
    }

    /// Writes `data` at `offset` inside block `blocknum`; `crc` is the sender's CRC-32 of
    /// `data` and is checked first.
    pub fn write(
        &self,
        blocknum: u16,
        offset: u32,
        data: &[u8],
        crc: u32,
        scratch: &mut Vec<u8>,
    ) -> Result<(), Status> {
        let size = data.len();
        if blocknum as usize >= BLOCKS_IN_CHUNK {
            return Err(status::BNUMTOOBIG);
        }
        if size > BLOCK_SIZE || offset as usize >= BLOCK_SIZE || offset as usize + size > BLOCK_SIZE
        {
            return Err(status::WRONGOFFSET);
        }
        if crc32(data) != crc {
            return Err(status::CRC);
        }
        self.with(|store, c, i| {
            if store.disks[i.disk].marked_for_removal {
                return Err(status::EPERM);
            }
            let layout = i.layout;
            let bn = blocknum as usize;
            let path = || store.disks[i.disk].chunk_path(i.subdir, c.id, i.version);
            let new_crc;
            let mut extend_to = None;
            if size == BLOCK_SIZE {
                new_crc = crc;
            } else if blocknum < i.blocks {
                scratch.resize(BLOCK_SIZE, 0);
                let f = i.file.as_ref().expect("opened");
                if let Err(e) = f.read_exact_at(scratch, layout.block_offset(blocknum)) {
                    warn!(file = %path().display(), block = blocknum, "read error before write: {e}");
                    store.report_damaged(c.id, i);
                    return Err(status::IO);
                }
                let old = i.crc.as_ref().expect("opened")[bn];
                if crc32(scratch) != old {
                    warn!(file = %path().display(), block = blocknum, "crc error in block being overwritten");
                    store.report_damaged(c.id, i);
                    return Err(status::CRC);
                }
                scratch[offset as usize..offset as usize + size].copy_from_slice(data);
                new_crc = crc32(scratch);
            } else {
                scratch.clear();
                scratch.resize(BLOCK_SIZE, 0);
                scratch[offset as usize..offset as usize + size].copy_from_slice(data);
                new_crc = crc32(scratch);
                if offset as usize + size < BLOCK_SIZE {
                    extend_to = Some(layout.file_size(blocknum + 1));
                }
            }
            let f = i.file.as_ref().expect("opened");
            let r = f
                .write_all_at(data, layout.block_offset(blocknum) + offset as u64)
                .and_then(|_| match extend_to {
                    Some(len) if f.metadata()?.len() < len => f.set_len(len),
                    _ => Ok(()),
                });
            if let Err(e) = r {
                warn!(file = %path().display(), block = blocknum, "write error: {e}");
                let st = io_status(&e);
                if st != status::NOSPACE {
                    store.report_damaged(c.id, i);
                }
                return Err(st);
            }
            let crcs = i.crc.as_mut().expect("opened");
            if blocknum >= i.blocks {
                for x in &mut crcs[i.blocks as usize..bn] {
                    *x = EMPTY_BLOCK_CRC;
                }
                i.blocks = blocknum + 1;
                store.space_changed.store(true, Ordering::Relaxed);
            }
            crcs[bn] = new_crc;
            i.crc_dirty = true;
            Ok(())
        })
    }

    /// Reads `n` whole blocks starting at `first` with one `preadv`, each into
    /// `buf[at + k*stride .. at + k*stride + 64 KiB]`, checks every block's CRC and returns
    /// the CRCs. Blocks past the end of the chunk read as zeros.
    pub fn read_blocks(
        &self,
        first: u16,
        n: u16,
        buf: &mut [u8],
        at: usize,
        stride: usize,
    ) -> Result<Vec<u32>, Status> {
        use std::os::fd::AsRawFd;
        if first as usize + n as usize > BLOCKS_IN_CHUNK {
            return Err(status::BNUMTOOBIG);
        }
        assert!(
            at + (n as usize).saturating_sub(1) * stride + BLOCK_SIZE <= buf.len(),
            "buffer too small"
        );
        self.with(|store, c, i| {
            let present = n.min(i.blocks.saturating_sub(first));
            if present > 0 {
                let base = buf.as_mut_ptr();
                let iov: Vec<libc::iovec> = (0..present as usize)
                    .map(|k| libc::iovec {
                        // SAFETY: the assertion above keeps every slot inside `buf`.
                        iov_base: unsafe { base.add(at + k * stride) } as *mut libc::c_void,
                        iov_len: BLOCK_SIZE,
                    })
                    .collect();
                let f = i.file.as_ref().expect("opened");
                let want = present as usize * BLOCK_SIZE;
                let off = i.layout.block_offset(first);
                // SAFETY: the iovecs point at disjoint, writable slots of `buf`, which
                // outlives the call.
                let r = unsafe { libc::preadv(f.as_raw_fd(), iov.as_ptr(), iov.len() as i32, off as libc::off_t) };
                if r < 0 || r as usize != want {
                    let e = if r < 0 { io::Error::last_os_error().to_string() } else { format!("short read {r}/{want}") };
                    let path = store.disks[i.disk].chunk_path(i.subdir, c.id, i.version);
                    warn!(file = %path.display(), block = first, "read error: {e}");
                    store.report_damaged(c.id, i);
                    return Err(status::IO);
                }
            }
            let crcs = i.crc.as_ref().expect("opened");
            let mut out = Vec::with_capacity(n as usize);
            for k in 0..n as usize {
                let slot = &mut buf[at + k * stride..at + k * stride + BLOCK_SIZE];
                if k >= present as usize {
                    slot.fill(0);
                    out.push(EMPTY_BLOCK_CRC);
                    continue;
                }
                let got = crc32(slot);
                let want = crcs[first as usize + k];
                if got != want {
                    let path = store.disks[i.disk].chunk_path(i.subdir, c.id, i.version);
                    warn!(file = %path.display(), block = first as usize + k, "crc error (data crc: {got:08X}; check crc: {want:08X})");
                    store.report_damaged(c.id, i);
                    return Err(status::CRC);
                }
                out.push(got);
            }
            Ok(out)
        })
    }

    /// Tells the kernel the byte range `offset..offset+size` of the chunk's data will be
    /// read soon (POSIX_FADV_WILLNEED), so a long read streams from disk.
    pub fn precache(&self, offset: u32, size: u32) {
        use std::os::fd::AsRawFd;
        let i = self.chunk.inner.lock().unwrap();
        if let Some(f) = &i.file {
            let start = i.layout.block_offset(0) + offset as u64;
            // SAFETY: plain advisory call on a descriptor we own; no memory is passed.
            unsafe {
                libc::posix_fadvise(
                    f.as_raw_fd(),
                    start as libc::off_t,
                    size as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                );
            }
        }
    }

    /// Number of blocks the chunk has now.
    pub fn blocks(&self) -> u16 {
        self.chunk.inner.lock().unwrap().blocks
    }

    /// Ends the session: writes the CRC table back (and fsyncs if configured).
    pub fn finish(self) -> Result<(), Status> {
        let mut i = self.chunk.inner.lock().unwrap();
        if i.gone {
            return Ok(());
        }
        i.last_used = Some(Instant::now());
        self.store.flush(&self.chunk, &mut i)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(mut i) = self.chunk.inner.lock() {
            if !i.gone {
                i.last_used = Some(Instant::now());
                if i.crc_dirty {
                    let _ = self.store.flush(&self.chunk, &mut i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hddcfg::HddLine;

    fn store(dir: &Path) -> Arc<Store> {
        let lines = vec![HddLine {
            path: dir.to_path_buf(),
            marked_for_removal: false,
            limit: Some(Limit::Max(1 << 40)),
            line: 1,
        }];
        Arc::new(
            Store::new(
                &lines,
                StoreOptions {
                    leave_space_default: 0,
                    fsync_before_close: false,
                },
            )
            .unwrap(),
        )
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn write_read_roundtrip_and_file_format() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        s.create(0x10, 1).unwrap();
        let data = pattern(BLOCK_SIZE, 1);
        let mut scratch = Vec::new();
        let sess = s.session(0x10, 1).unwrap();
        sess.write(0, 0, &data, crc32(&data), &mut scratch).unwrap();
        let small = b"hello world";
        sess.write(2, 100, small, crc32(small), &mut scratch)
            .unwrap();
        assert_eq!(sess.blocks(), 3);
        sess.finish().unwrap();

        // On disk: header, CRC table, 3 blocks.
        let path = d
            .path()
            .join("00")
            .join("chunk_0000000000000010_00000001.mfs");
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 8192 + 3 * BLOCK_SIZE);
        assert_eq!(&bytes[..8], b"MFSC 1.0");
        let crc_at =
            |n: usize| u32::from_be_bytes(bytes[4096 + 4 * n..4100 + 4 * n].try_into().unwrap());
        assert_eq!(crc_at(0), crc32(&data));
        assert_eq!(crc_at(1), EMPTY_BLOCK_CRC);
        assert_eq!(crc_at(2), crc32(&bytes[8192 + 2 * BLOCK_SIZE..]));

        let sess = s.session(0x10, 1).unwrap();
        let mut out = vec![0u8; 11];
        let c = sess.read(2, 100, &mut out, &mut scratch).unwrap();
        assert_eq!(&out, small);
        assert_eq!(c, crc32(small));
        let mut out = vec![0u8; 10];
        assert_eq!(
            sess.read(1, 5, &mut out, &mut scratch).unwrap(),
            crc32(&[0u8; 10])
        );
        assert_eq!(out, vec![0u8; 10]);
        assert_eq!(s.session(0x10, 2).unwrap_err(), status::WRONGVERSION);
        assert_eq!(
            sess.write(0, 0, b"x", 0, &mut scratch).unwrap_err(),
            status::CRC
        );
    }

    #[test]
    fn corruption_is_detected_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        s.create(7, 1).unwrap();
        let data = pattern(BLOCK_SIZE, 9);
        let mut scratch = Vec::new();
        let sess = s.session(7, 1).unwrap();
        sess.write(0, 0, &data, crc32(&data), &mut scratch).unwrap();
        sess.finish().unwrap();
        let path = d.path().join("00").join(chunkfile::file_name(7, 1));
        let mut bytes = fs::read(&path).unwrap();
        bytes[8192 + 1234] ^= 0xFF;
        fs::write(&path, &bytes).unwrap();
        let sess = s.session(7, 1).unwrap();
        let mut out = vec![0u8; 100];
        assert_eq!(
            sess.read(0, 0, &mut out, &mut scratch).unwrap_err(),
            status::CRC
        );
        drop(sess);
        assert_eq!(s.take_reports().damaged, vec![7]);
        assert_eq!(s.test(7, 1).unwrap_err(), status::CRC);
    }

    #[test]
    fn version_truncate_duplicate_delete_and_rescan() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        s.create(1, 1).unwrap();
        let data = pattern(3 * BLOCK_SIZE, 3);
        let mut scratch = Vec::new();
        let sess = s.session(1, 1).unwrap();
        for b in 0..3 {
            let piece = &data[b * BLOCK_SIZE..(b + 1) * BLOCK_SIZE];
            sess.write(b as u16, 0, piece, crc32(piece), &mut scratch)
                .unwrap();
        }
        sess.finish().unwrap();
        s.set_version(1, 1, 5).unwrap();
        assert_eq!(s.set_version(1, 1, 6).unwrap_err(), status::WRONGVERSION);
        s.duplicate(1, 5, 2, 1, None).unwrap();
        s.truncate(1, 5, 6, 70_000).unwrap();
        assert_eq!(s.blocks(1, 6).unwrap(), 2);
        s.test(1, 6).unwrap();
        let sess = s.session(1, 6).unwrap();
        let mut out = vec![0u8; BLOCK_SIZE];
        sess.read(1, 0, &mut out, &mut scratch).unwrap();
        assert_eq!(&out[..70_000 - BLOCK_SIZE], &data[BLOCK_SIZE..70_000]);
        assert!(out[70_000 - BLOCK_SIZE..].iter().all(|&b| b == 0));
        drop(sess);
        s.test(2, 1).unwrap();
        s.duplicate(2, 1, 3, 1, Some(10)).unwrap();
        assert_eq!(s.blocks(3, 1).unwrap(), 1);
        s.delete(3, 1).unwrap();
        assert_eq!(s.delete(3, 1).unwrap_err(), status::NOCHUNK);

        // A fresh store over the same folder finds the same chunks and versions.
        let s2 = store(d.path());
        let sum = s2.scan();
        assert_eq!(sum.chunks, 2);
        assert_eq!(s2.chunk_list(), vec![(1, 6), (2, 1)]);
        s2.test(1, 6).unwrap();
        s2.test(2, 1).unwrap();
    }
}
