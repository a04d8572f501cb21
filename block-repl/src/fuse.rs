//! The thin FUSE adapter: one file, `disk`, whose reads, writes, flushes and fallocates
//! go to [`Node`]. A loop device on top of it is the block device the file system uses.

use crate::node::{Done, Node};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, WriteFlags,
};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file's name inside the mount.
pub const FILE: &str = "disk";
const DISK_INO: INodeNo = INodeNo(2);
const TTL: Duration = Duration::from_secs(3600);

/// Milliseconds since the epoch, for the watchdog's view of request ages.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Start times of requests in progress (0 = free slot), read by the watchdog.
pub struct InFlight {
    slots: Vec<AtomicU64>,
}

impl InFlight {
    /// Room for `n` concurrent requests.
    pub fn new(n: usize) -> InFlight {
        InFlight {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn enter(&self) -> Option<usize> {
        let now = now_ms().max(1);
        self.slots.iter().position(|s| {
            s.compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
    }

    fn leave(&self, i: Option<usize>) {
        if let Some(i) = i {
            self.slots[i].store(0, Ordering::Release);
        }
    }

    /// Start time of the oldest request in progress.
    pub fn oldest(&self) -> Option<u64> {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .filter(|v| *v != 0)
            .min()
    }
}

/// The file system.
pub struct BlockFs {
    node: Arc<Node>,
    inflight: Arc<InFlight>,
}

impl BlockFs {
    /// Serves `node`'s device.
    pub fn new(node: Arc<Node>, inflight: Arc<InFlight>) -> BlockFs {
        BlockFs { node, inflight }
    }

    fn attr(&self, ino: INodeNo) -> FileAttr {
        let t = UNIX_EPOCH;
        let (kind, perm, size, nlink) = if ino == DISK_INO {
            (FileType::RegularFile, 0o600, self.node.size(), 1)
        } else {
            (FileType::Directory, 0o700, 0, 2)
        };
        FileAttr {
            ino,
            size,
            blocks: size / 512,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn track<T>(&self, f: impl FnOnce() -> T) -> T {
        let slot = self.inflight.enter();
        let r = f();
        self.inflight.leave(slot);
        r
    }

    /// A completion that answers the kernel and leaves the watchdog's in-flight slot
    /// taken now: the request counts as in progress until the node completes it.
    fn completion(&self, answer: impl FnOnce(std::io::Result<()>) + Send + 'static) -> Done {
        let slot = self.inflight.enter();
        let inflight = Arc::clone(&self.inflight);
        Box::new(move |r| {
            inflight.leave(slot);
            answer(r)
        })
    }

    /// A completion for requests answered with an empty reply.
    fn empty(&self, reply: ReplyEmpty) -> Done {
        self.completion(move |r| match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        })
    }
}

fn errno(e: std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

impl Filesystem for BlockFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Loop's asynchronous direct I/O reaches us as concurrent requests only with this.
        let _ = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO);
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == FILE {
            reply.entry(&TTL, &self.attr(DISK_INO), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == DISK_INO || ino == INodeNo::ROOT {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == DISK_INO {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            reply.error(Errno::EISDIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let end = (offset + size as u64).min(self.node.size());
        let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
        match self.track(|| self.node.read(offset, &mut buf)) {
            Ok(()) => reply.data(&buf),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let len = data.len() as u32;
        let done = self.completion(move |r| match r {
            Ok(()) => reply.written(len),
            Err(e) => reply.error(errno(e)),
        });
        self.node.write(offset, data, done);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.node.flush(self.empty(reply));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        if mode & libc::FALLOC_FL_PUNCH_HOLE != 0 && keep {
            self.node.discard(offset, length, false, self.empty(reply))
        } else if mode & libc::FALLOC_FL_ZERO_RANGE != 0 && keep {
            self.node.discard(offset, length, true, self.empty(reply))
        } else if mode == 0 && offset.saturating_add(length) <= self.node.size() {
            reply.ok() // preallocation inside a fixed-size device: nothing to do
        } else {
            reply.error(Errno::EOPNOTSUPP)
        }
    }

    // No getxattr / listxattr: the default ENOSYS makes the kernel stop asking (with
    // ENODATA it would ask for `security.capability` before every single write).

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (DISK_INO, FileType::RegularFile, FILE),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
