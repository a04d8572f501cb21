//! The in-memory namespace: nodes, directories, attributes, permissions and the
//! recursive statistics MooseFS keeps per directory.
//!
//! Pure code: no sockets, no clock (every mutating call takes `now`). Operations return
//! MooseFS status codes (`Err(status)`), exactly what the client protocol sends back.
//! Chunk ids referenced by files live here (`File::chunks`); the chunk registry is told
//! about dropped references through [`Fs::take_released`].

use antler_protocol::changelog::escape;
use antler_protocol::cltoma::{
    dir_size_encode, node_type as T, Attr, SetAttr, MATTR_ALLOWDATACACHE, MATTR_NOACACHE,
    MATTR_NOXATTR, SET_ATIME, SET_ATIME_NOW, SET_GID, SET_MODE, SET_MTIME, SET_MTIME_NOW, SET_UID,
    SET_WINATTR,
};
use antler_protocol::codes::status as st;
use std::collections::{BTreeMap, HashMap};

/// Result of a namespace operation: a MooseFS status on failure.
pub type FsResult<T> = Result<T, u8>;

/// Inode number of the file system root.
pub const ROOT: u32 = 1;
/// First inode the mount handles itself; never handed out.
pub const MAX_INODE: u32 = 0x7FFF_FFEF;
/// Chunk size.
pub const CHUNK_SIZE: u64 = 1 << 26;
/// Chunk header size MooseFS counts in file sizes (`MFSHDRSIZE`).
pub const HDR_SIZE: u64 = 0x2000;
/// Default trash time (seconds).
pub const DEFAULT_TRASHTIME: u32 = 86_400;
/// Default goal of a new file system's root.
pub const DEFAULT_GOAL: u8 = 2;
/// Most hard links a node may have (`MAX_ALLOWED_HARD_LINKS`).
pub const MAX_LINKS: usize = 32767;

/// eattr bits.
pub mod eattr {
    /// Everybody is the owner.
    pub const NOOWNER: u8 = 0x01;
    /// No attribute cache.
    pub const NOACACHE: u8 = 0x02;
    /// No entry cache (directories).
    pub const NOECACHE: u8 = 0x04;
    /// No data cache.
    pub const NODATACACHE: u8 = 0x08;
    /// Snapshot marker.
    pub const SNAPSHOT: u8 = 0x10;
    /// Cannot be deleted.
    pub const UNDELETABLE: u8 = 0x20;
    /// Append only.
    pub const APPENDONLY: u8 = 0x40;
    /// Immutable.
    pub const IMMUTABLE: u8 = 0x80;
}

/// Session flag bits used by permission checks.
pub mod sesflag {
    /// Read-only export.
    pub const READONLY: u8 = 0x01;
    /// Ignore the group list for non-owners.
    pub const IGNOREGID: u8 = 0x04;
    /// Administrative session.
    pub const ADMIN: u8 = 0x08;
    /// mapall export.
    pub const MAPALL: u8 = 0x10;
}

/// Recursive statistics of a subtree (what `mfsdirinfo` prints).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Inodes.
    pub inodes: u32,
    /// Directories.
    pub dirs: u32,
    /// Files.
    pub files: u32,
    /// Chunks.
    pub chunks: u32,
    /// Sum of file lengths.
    pub length: u64,
    /// Sum of chunk sizes on disk (one copy).
    pub size: u64,
    /// Size times goal.
    pub realsize: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.inodes = self.inodes.wrapping_add(o.inodes);
        self.dirs = self.dirs.wrapping_add(o.dirs);
        self.files = self.files.wrapping_add(o.files);
        self.chunks = self.chunks.wrapping_add(o.chunks);
        self.length = self.length.wrapping_add(o.length);
        self.size = self.size.wrapping_add(o.size);
        self.realsize = self.realsize.wrapping_add(o.realsize);
    }
    fn sub(&mut self, o: &Stats) {
        self.inodes = self.inodes.wrapping_sub(o.inodes);
        self.dirs = self.dirs.wrapping_sub(o.dirs);
        self.files = self.files.wrapping_sub(o.files);
        self.chunks = self.chunks.wrapping_sub(o.chunks);
        self.length = self.length.wrapping_sub(o.length);
        self.size = self.size.wrapping_sub(o.size);
        self.realsize = self.realsize.wrapping_sub(o.realsize);
    }
}

/// A directory's contents.
#[derive(Debug, Default)]
pub struct Dir {
    /// Name → inode.
    pub entries: HashMap<Box<[u8]>, u32>,
    /// Number of subdirectories (for nlink).
    pub nsubdirs: u32,
    /// Sum of the children's statistics.
    pub stats: Stats,
}

/// Type-specific node data.
#[derive(Debug)]
pub enum Kind {
    /// Directory.
    Dir(Box<Dir>),
    /// Regular file: length and chunk table (0 = hole).
    File {
        /// Length in bytes.
        length: u64,
        /// Chunk ids by index.
        chunks: Vec<u64>,
    },
    /// Symbolic link target.
    Symlink(Box<[u8]>),
    /// Block or character device number.
    Dev(u32),
    /// FIFO or socket.
    Other,
}

/// One inode.
#[derive(Debug)]
pub struct Node {
    /// Wire type (`node_type::*`).
    pub ntype: u8,
    /// Mode bits (07777).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access time.
    pub atime: u32,
    /// Modification time.
    pub mtime: u32,
    /// Change time.
    pub ctime: u32,
    /// Goal (storage classes 1..9 are "N copies").
    pub goal: u8,
    /// Trash time in hours.
    pub trash_hours: u16,
    /// Extra attributes (`eattr::*`).
    pub eattr: u8,
    /// Windows attributes.
    pub winattr: u8,
    /// Parent directories, one entry per link.
    pub parents: Parents,
    /// Extended attributes.
    pub xattrs: Option<Box<BTreeMap<Vec<u8>, Vec<u8>>>>,
    /// Type-specific data.
    pub kind: Kind,
}

/// The directories holding a node's links (one entry per link): the first inline, hard
/// links beyond it on the heap, so the common single-link node costs 16 bytes here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parents {
    first: u32,
    // Boxed on purpose: 8 bytes in every node instead of a 24-byte Vec.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<u32>>>,
}

impl Parents {
    /// No parent.
    pub fn new() -> Parents {
        Parents::default()
    }
    /// The first parent (the one `..` and path walks use).
    pub fn first(&self) -> Option<u32> {
        (self.first != 0).then_some(self.first)
    }
    /// Number of links.
    pub fn len(&self) -> usize {
        (self.first != 0) as usize + self.more.as_ref().map_or(0, |m| m.len())
    }
    /// No link at all.
    pub fn is_empty(&self) -> bool {
        self.first == 0
    }
    /// Adds a link from `p`.
    pub fn push(&mut self, p: u32) {
        if self.first == 0 {
            self.first = p;
        } else {
            self.more.get_or_insert_with(Default::default).push(p);
        }
    }
    /// Removes one link from `p`; false when there is none.
    pub fn remove_one(&mut self, p: u32) -> bool {
        if let Some(m) = self.more.as_mut() {
            if let Some(i) = m.iter().position(|&x| x == p) {
                m.swap_remove(i);
            } else if self.first == p {
                self.first = m.swap_remove(0);
            } else {
                return false;
            }
            if m.is_empty() {
                self.more = None;
            }
            return true;
        }
        if self.first == p && p != 0 {
            self.first = 0;
            return true;
        }
        false
    }
    /// Whether `p` holds one of the links.
    pub fn contains(&self, p: u32) -> bool {
        p != 0 && (self.first == p || self.more.as_ref().is_some_and(|m| m.contains(&p)))
    }
    /// All parents, one per link.
    pub fn to_vec(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.first().into_iter().collect();
        v.extend(self.more.iter().flat_map(|m| m.iter().copied()));
        v
    }
}

/// The caller of an operation, after maproot/mapall.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// Effective uid.
    pub uid: u32,
    /// Effective groups (first = primary).
    pub gids: Vec<u32>,
    /// Session flags.
    pub sesflags: u8,
    /// Export umask.
    pub umask: u16,
}

impl Ctx {
    /// A root caller with no session restrictions.
    pub fn root() -> Ctx {
        Ctx {
            uid: 0,
            gids: vec![0],
            sesflags: 0,
            umask: 0,
        }
    }
    fn gid0(&self) -> u32 {
        self.gids.first().copied().unwrap_or(0)
    }
    fn readonly(&self) -> FsResult<()> {
        if self.sesflags & sesflag::READONLY != 0 {
            Err(st::EROFS)
        } else {
            Ok(())
        }
    }
}

/// Access mask bits.
pub const MODE_R: u8 = 4;
/// Write.
pub const MODE_W: u8 = 2;
/// Execute / search.
pub const MODE_X: u8 = 1;
const MODE_TO_ACCMODE: [u8; 8] = [0x01, 0x03, 0x05, 0x0F, 0x11, 0x33, 0x55, 0xFF];

/// What a successful create-like operation returns.
#[derive(Debug, Clone, Copy)]
pub struct Created {
    /// New inode.
    pub inode: u32,
    /// Its attributes.
    pub attr: Attr,
}

/// One readdir entry.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Name.
    pub name: Vec<u8>,
    /// Inode (already the one to send, i.e. not yet mapped for the session root).
    pub inode: u32,
}

/// The namespace.
#[derive(Debug)]
pub struct Fs {
    pub(crate) nodes: Vec<Option<Node>>,
    pub(crate) free: std::collections::VecDeque<(u32, u32)>,
    released: Vec<u64>,
    /// Chunks that gained a file reference (snapshots, appends), with the file's goal.
    referenced: Vec<(u64, u8)>,
    goal_changes: Vec<(u64, u8)>,
    /// Number of live nodes.
    pub node_count: u32,
    pub(crate) open: HashMap<u32, u32>,
    /// Sustained files (deleted while a session holds them open): inode → the path they had.
    pub(crate) detached: HashMap<u32, Box<[u8]>>,
    /// Deleted files kept in the trash: inode → the path it had. They keep their chunks.
    pub(crate) trash: Trash,
    /// Delay before a freed inode number is reused (`INODE_REUSE_DELAY`).
    pub inode_reuse_delay: u32,
    /// Changes not yet written to the changelog: (time, `OP(args)[:result]`).
    journal: Vec<(u32, String)>,
    /// Whether changes are journaled (off while replaying a changelog).
    pub journaling: bool,
    /// Bumped whenever a directory leaves a parent (moved or removed).
    dir_gen: u64,
    /// The last directory path computed for a trash entry: (dir, `dir_gen`, path).
    dir_path_cache: Option<(u32, u64, Vec<u8>)>,
}

#[path = "fs_snapshot.rs"]
mod snapshot;
pub use snapshot::{smode, SnapCounts};

/// Highest chunk index in a file (MooseFS's `MAX_INDEX`).
pub const MAX_CHUNK_INDEX: u64 = 0x7FFF_FFFF;

/// Buckets of the meta mount's trash directory (MooseFS's `TRASH_BUCKETS`).
pub const TRASH_BUCKETS: u32 = 4096;

/// A trash or sustained entry's listed name: its path with `/` shown as `|`; a path
/// longer than 240 bytes becomes `(...)` and its last 235 bytes, as MooseFS sends it.
pub fn detached_name(path: &[u8]) -> Vec<u8> {
    let tail = if path.len() > 240 {
        &path[path.len() - 235..]
    } else {
        path
    };
    let mut v = Vec::with_capacity(240);
    if path.len() > 240 {
        v.extend_from_slice(b"(...)");
    }
    v.extend(tail.iter().map(|&c| if c == b'/' { b'|' } else { c }));
    v
}

/// The trash: inode → the path it is restored to, with an index by meta-mount bucket
/// (`inode % TRASH_BUCKETS`) so listing one bucket does not scan the whole trash.
#[derive(Debug, Default)]
pub struct Trash {
    paths: BTreeMap<u32, Box<[u8]>>,
    buckets: HashMap<u32, std::collections::BTreeSet<u32>>,
}

impl Trash {
    /// Adds (or renames) an entry.
    pub fn insert(&mut self, ino: u32, path: Box<[u8]>) -> Option<Box<[u8]>> {
        self.buckets
            .entry(ino % TRASH_BUCKETS)
            .or_default()
            .insert(ino);
        self.paths.insert(ino, path)
    }

    /// Removes an entry, returning its path.
    pub fn remove(&mut self, ino: &u32) -> Option<Box<[u8]>> {
        let p = self.paths.remove(ino)?;
        let b = ino % TRASH_BUCKETS;
        if let Some(set) = self.buckets.get_mut(&b) {
            set.remove(ino);
            if set.is_empty() {
                self.buckets.remove(&b);
            }
        }
        Some(p)
    }

    /// The path of an entry.
    pub fn get(&self, ino: &u32) -> Option<&[u8]> {
        self.paths.get(ino).map(|p| &p[..])
    }

    /// The path of an entry, to change it.
    pub fn get_mut(&mut self, ino: &u32) -> Option<&mut Box<[u8]>> {
        self.paths.get_mut(ino)
    }

    /// Whether `ino` is in the trash.
    pub fn contains_key(&self, ino: &u32) -> bool {
        self.paths.contains_key(ino)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the trash is empty.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Inodes in inode order.
    pub fn keys(&self) -> std::collections::btree_map::Keys<'_, u32, Box<[u8]>> {
        self.paths.keys()
    }

    /// The inodes of one bucket, in inode order.
    pub fn bucket(&self, b: u32) -> impl Iterator<Item = u32> + '_ {
        self.buckets.get(&b).into_iter().flatten().copied()
    }
}

impl<'a> IntoIterator for &'a Trash {
    type Item = (&'a u32, &'a Box<[u8]>);
    type IntoIter = std::collections::btree_map::Iter<'a, u32, Box<[u8]>>;
    fn into_iter(self) -> Self::IntoIter {
        self.paths.iter()
    }
}

/// Checks a file name as MooseFS does.
pub fn name_ok(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != b"."
        && name != b".."
        && !name.iter().any(|&c| c == 0 || c == b'/')
}

fn file_stats(length: u64, chunks: &[u64], goal: u8) -> Stats {
    let (lastchunk, lastsize) = if length > 0 {
        let l = length - 1;
        (
            l >> 26,
            (((l & (CHUNK_SIZE - 1)) + 0x10000) & !0xFFFF) + HDR_SIZE,
        )
    } else {
        (0, HDR_SIZE)
    };
    let mut s = Stats {
        inodes: 1,
        files: 1,
        length,
        ..Stats::default()
    };
    for (i, &c) in chunks.iter().enumerate() {
        if c != 0 {
            let i = i as u64;
            if i < lastchunk {
                s.size += CHUNK_SIZE + HDR_SIZE;
            } else if i == lastchunk {
                s.size += lastsize;
            }
            s.chunks += 1;
        }
    }
    s.realsize = s.size * goal as u64;
    s
}

impl Fs {
    /// A new, empty file system (what `MFSM NEW` loads as).
    pub fn new(now: u32) -> Fs {
        let mut fs = Fs {
            nodes: vec![None, None],
            free: Default::default(),
            released: Vec::new(),
            goal_changes: Vec::new(),
            node_count: 1,
            open: HashMap::new(),
            detached: HashMap::new(),
            trash: Trash::default(),
            referenced: Vec::new(),
            inode_reuse_delay: 86_400,
            journal: Vec::new(),
            journaling: true,
            dir_gen: 0,
            dir_path_cache: None,
        };
        fs.nodes[1] = Some(Node {
            ntype: T::DIRECTORY,
            mode: 0o777,
            uid: 0,
            gid: 0,
            atime: now,
            mtime: now,
            ctime: now,
            goal: DEFAULT_GOAL,
            trash_hours: (DEFAULT_TRASHTIME / 3600) as u16,
            eattr: 0,
            winattr: 0,
            parents: Parents::new(),
            xattrs: None,
            kind: Kind::Dir(Box::default()),
        });
        fs
    }

    /// A node by inode.
    pub fn node(&self, ino: u32) -> Option<&Node> {
        self.nodes.get(ino as usize).and_then(|n| n.as_ref())
    }
    fn node_mut(&mut self, ino: u32) -> Option<&mut Node> {
        self.nodes.get_mut(ino as usize).and_then(|n| n.as_mut())
    }
    fn get(&self, ino: u32) -> FsResult<&Node> {
        self.node(ino).ok_or(st::ENOENT)
    }
    fn get_mut(&mut self, ino: u32) -> FsResult<&mut Node> {
        self.node_mut(ino).ok_or(st::ENOENT)
    }
    fn dir_mut(&mut self, ino: u32) -> FsResult<&mut Dir> {
        match &mut self.get_mut(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(st::ENOTDIR),
        }
    }

    /// Records one change for the changelog (body in MooseFS's `OP(args)[:result]` form).
    pub fn log(&mut self, ts: u32, body: String) {
        if self.journaling {
            self.journal.push((ts, body));
        }
    }
    /// Changes recorded since the last call, oldest first.
    pub fn take_journal(&mut self) -> Vec<(u32, String)> {
        std::mem::take(&mut self.journal)
    }

    /// Chunk references dropped since the last call (files truncated or removed).
    pub fn take_released(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.released)
    }
    /// Chunks whose file goal changed since the last call.
    pub fn take_goal_changes(&mut self) -> Vec<(u64, u8)> {
        std::mem::take(&mut self.goal_changes)
    }

    /// Statistics of one node as its parent counts it.
    pub fn node_stats(&self, ino: u32) -> Stats {
        match self.node(ino) {
            Some(n) => match &n.kind {
                Kind::Dir(d) => {
                    let mut s = d.stats;
                    s.inodes += 1;
                    s.dirs += 1;
                    s
                }
                Kind::File { length, chunks } => file_stats(*length, chunks, n.goal),
                Kind::Symlink(t) => Stats {
                    inodes: 1,
                    length: t.len() as u64,
                    ..Stats::default()
                },
                _ => Stats {
                    inodes: 1,
                    ..Stats::default()
                },
            },
            None => Stats::default(),
        }
    }

    /// Recomputes every directory's statistics from its children (after a load).
    pub(crate) fn recompute_stats(&mut self) {
        // Post-order over the tree: children before their directory.
        let mut order = Vec::new();
        let mut stack = vec![ROOT];
        while let Some(d) = stack.pop() {
            order.push(d);
            if let Some(Node {
                kind: Kind::Dir(dir),
                ..
            }) = self.node(d)
            {
                for &c in dir.entries.values() {
                    if matches!(
                        self.node(c),
                        Some(Node {
                            kind: Kind::Dir(_),
                            ..
                        })
                    ) {
                        stack.push(c);
                    }
                }
            }
        }
        for &d in order.iter().rev() {
            let children: Vec<u32> = match self.node(d) {
                Some(Node {
                    kind: Kind::Dir(dir),
                    ..
                }) => dir.entries.values().copied().collect(),
                _ => continue,
            };
            let mut s = Stats::default();
            for c in children {
                s.add(&self.node_stats(c));
            }
            if let Some(Node {
                kind: Kind::Dir(dir),
                ..
            }) = self.node_mut(d)
            {
                dir.stats = s;
            }
        }
    }

    fn stats_apply(&mut self, dir: u32, plus: &Stats, minus: &Stats) {
        let mut cur = Some(dir);
        while let Some(d) = cur {
            let Some(n) = self.node_mut(d) else { break };
            if let Kind::Dir(dd) = &mut n.kind {
                dd.stats.add(plus);
                dd.stats.sub(minus);
            }
            cur = n.parents.first();
        }
    }

    /// Runs `f` on a node and propagates the change of its statistics to every parent.
    fn with_stats<R>(&mut self, ino: u32, f: impl FnOnce(&mut Node) -> R) -> FsResult<R> {
        let before = self.node_stats(ino);
        let r = f(self.get_mut(ino)?);
        let after = self.node_stats(ino);
        if before != after {
            let parents = self.get(ino)?.parents.to_vec();
            for p in parents {
                self.stats_apply(p, &after, &before);
            }
        }
        Ok(r)
    }

    /// MooseFS `fsnodes_accessmode`: bit k set when access mask k is allowed.
    pub fn accmode(&self, n: &Node, ctx: &Ctx) -> u8 {
        if ctx.uid == 0 {
            return 0xFF;
        }
        let m = n.mode;
        let bits = if ctx.uid == n.uid || n.eattr & eattr::NOOWNER != 0 {
            (m >> 6) & 7
        } else if ctx.sesflags & sesflag::IGNOREGID != 0 {
            ((m >> 3) | m) & 7
        } else if ctx.gids.contains(&n.gid) {
            (m >> 3) & 7
        } else {
            m & 7
        };
        MODE_TO_ACCMODE[bits as usize]
    }

    fn access_ok(&self, n: &Node, ctx: &Ctx, mask: u8) -> bool {
        self.accmode(n, ctx) & (1 << (mask & 7)) != 0
    }

    fn need(&self, n: &Node, ctx: &Ctx, mask: u8) -> FsResult<()> {
        if self.access_ok(n, ctx, mask) {
            Ok(())
        } else {
            Err(st::EACCES)
        }
    }

    /// Builds the attribute record of a node.
    pub fn attr(&self, ino: u32, ctx: &Ctx) -> FsResult<Attr> {
        let n = self.get(ino)?;
        let mut flags = 0;
        if n.xattrs.as_ref().is_none_or(|x| x.is_empty()) {
            flags |= MATTR_NOXATTR;
        }
        if n.eattr & eattr::NODATACACHE == 0 {
            flags |= MATTR_ALLOWDATACACHE;
        }
        if n.eattr & (eattr::NOOWNER | eattr::NOACACHE) != 0 || ctx.sesflags & sesflag::MAPALL != 0
        {
            flags |= MATTR_NOACACHE;
        }
        let (nlink, length) = match &n.kind {
            Kind::Dir(d) => (2 + d.nsubdirs, dir_size_encode(d.stats.length)),
            Kind::File { length, .. } => (n.parents.len() as u32, *length),
            Kind::Symlink(t) => (n.parents.len() as u32, t.len() as u64),
            Kind::Dev(r) => (n.parents.len() as u32, (*r as u64) << 32),
            Kind::Other => (n.parents.len() as u32, 0),
        };
        let (mut mode, mut uid, mut gid) = (n.mode, n.uid, n.gid);
        if n.eattr & eattr::NOOWNER != 0 && ctx.uid != 0 {
            let o = (mode >> 6) & 7;
            mode = (mode & 0o7700) | (o << 3) | o;
            uid = ctx.uid;
            gid = ctx.gid0();
        }
        Ok(Attr {
            flags,
            ntype: n.ntype,
            mode,
            uid,
            gid,
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            nlink,
            length,
            winattr: n.winattr,
        })
    }

    /// Lookup of `name` in `parent`; "." and ".." included. Returns the inode.
    pub fn lookup(&self, ctx: &Ctx, parent: u32, name: &[u8]) -> FsResult<u32> {
        let p = self.get(parent)?;
        let Kind::Dir(d) = &p.kind else {
            return Err(st::ENOTDIR);
        };
        self.need(p, ctx, MODE_X)?;
        if name == b"." {
            return Ok(parent);
        }
        if name == b".." {
            return Ok(p.parents.first().unwrap_or(ROOT));
        }
        if !name_ok(name) {
            return Err(st::EINVAL);
        }
        d.entries.get(name).copied().ok_or(st::ENOENT)
    }

    /// `access` with mask R/W/X bits.
    pub fn access(&self, ctx: &Ctx, ino: u32, mask: u16) -> FsResult<()> {
        let n = self.get(ino)?;
        let mask = (mask & 7) as u8;
        if mask & MODE_W != 0 {
            ctx.readonly()?;
            if n.eattr & eattr::IMMUTABLE != 0 {
                return Err(st::EPERM);
            }
        }
        self.need(n, ctx, mask)
    }

    fn alloc_inode(&mut self, now: u32) -> FsResult<u32> {
        if let Some(&(ino, t)) = self.free.front() {
            if now.saturating_sub(t) >= self.inode_reuse_delay {
                self.free.pop_front();
                return Ok(ino);
            }
        }
        let ino = self.nodes.len() as u32;
        if ino > MAX_INODE {
            return Err(st::NOSPACE);
        }
        self.nodes.push(None);
        Ok(ino)
    }

    /// Common checks for adding `name` to `parent`.
    fn check_new_entry(&self, ctx: &Ctx, parent: u32, name: &[u8]) -> FsResult<()> {
        ctx.readonly()?;
        let p = self.get(parent)?;
        let Kind::Dir(d) = &p.kind else {
            return Err(st::ENOTDIR);
        };
        if p.eattr & eattr::IMMUTABLE != 0 {
            return Err(st::EPERM);
        }
        self.need(p, ctx, MODE_W)?;
        self.need(p, ctx, MODE_X)?;
        if !name_ok(name) {
            return Err(st::EINVAL);
        }
        if d.entries.contains_key(name) {
            return Err(st::EEXIST);
        }
        Ok(())
    }

    fn link_entry(&mut self, parent: u32, name: &[u8], ino: u32, now: u32) {
        let s = self.node_stats(ino);
        let is_dir = self.node(ino).is_some_and(|n| n.ntype == T::DIRECTORY);
        if let Some(n) = self.node_mut(ino) {
            n.parents.push(parent);
        }
        if let Ok(d) = self.dir_mut(parent) {
            d.entries.insert(name.into(), ino);
            if is_dir {
                d.nsubdirs += 1;
            }
        }
        if let Some(p) = self.node_mut(parent) {
            p.mtime = now;
            p.ctime = now;
            // A changed directory is no longer what a snapshot made (MooseFS's rule).
            p.eattr &= !eattr::SNAPSHOT;
        }
        self.stats_apply(parent, &s, &Stats::default());
    }

    fn unlink_entry(&mut self, parent: u32, name: &[u8], ino: u32, now: u32) {
        let s = self.node_stats(ino);
        let is_dir = self.node(ino).is_some_and(|n| n.ntype == T::DIRECTORY);
        if is_dir {
            // Paths under it change (move) or go away (rmdir).
            self.dir_gen += 1;
        }
        if let Ok(d) = self.dir_mut(parent) {
            d.entries.remove(name);
            if is_dir {
                d.nsubdirs -= 1;
            }
        }
        if let Some(n) = self.node_mut(ino) {
            n.parents.remove_one(parent);
        }
        if let Some(p) = self.node_mut(parent) {
            p.mtime = now;
            p.ctime = now;
            p.eattr &= !eattr::SNAPSHOT;
        }
        self.stats_apply(parent, &Stats::default(), &s);
    }

    /// Creates a node of type `ntype` (mknod, mkdir, create, symlink).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        ctx: &Ctx,
        parent: u32,
        name: &[u8],
        ntype: u8,
        mode: u16,
        umask: u16,
        rdev: u32,
        copysgid: bool,
        target: Option<&[u8]>,
        now: u32,
    ) -> FsResult<u32> {
        self.check_new_entry(ctx, parent, name)?;
        let p = self.get(parent)?;
        let umask = umask | ctx.umask;
        let (pgid, psgid) = (p.gid, p.mode & 0o2000 != 0);
        if !matches!(
            ntype,
            T::DIRECTORY | T::FILE | T::SYMLINK | T::BLOCKDEV | T::CHARDEV | T::FIFO | T::SOCKET
        ) {
            return Err(st::EINVAL);
        }
        let gid = if psgid { pgid } else { ctx.gid0() };
        let mut mode = if ntype == T::SYMLINK {
            0o777
        } else {
            mode & 0o7777 & !umask
        };
        if ntype == T::DIRECTORY && psgid && copysgid {
            mode |= 0o2000;
        }
        let ino = self.alloc_inode(now)?;
        let (uid, cumask) = (ctx.uid, umask);
        self.mr_create(now, parent, name, ntype, mode, uid, gid, rdev, target, ino)?;
        let body = if ntype == T::SYMLINK {
            format!(
                "SYMLINK({parent},{},{},{uid},{gid}):{ino}",
                escape(name),
                escape(target.unwrap_or_default())
            )
        } else {
            format!(
                "CREATE({parent},{},{ntype},{mode},{cumask},{uid},{gid},{rdev}):{ino}",
                escape(name)
            )
        };
        self.log(now, body);
        Ok(ino)
    }

    /// Creates node `ino` with final attributes (the replay of CREATE and SYMLINK; the
    /// live path checks permissions and computes mode and group first). Goal, trash time
    /// and extra attributes are inherited from the parent.
    #[allow(clippy::too_many_arguments)]
    pub fn mr_create(
        &mut self,
        now: u32,
        parent: u32,
        name: &[u8],
        ntype: u8,
        mode: u16,
        uid: u32,
        gid: u32,
        rdev: u32,
        target: Option<&[u8]>,
        ino: u32,
    ) -> FsResult<()> {
        let p = self.get(parent)?;
        let Kind::Dir(d) = &p.kind else {
            return Err(st::ENOTDIR);
        };
        if !name_ok(name) {
            return Err(st::EINVAL);
        }
        if d.entries.contains_key(name) {
            return Err(st::EEXIST);
        }
        if ino == 0 || ino > MAX_INODE || self.node(ino).is_some() {
            return Err(st::MISMATCH);
        }
        let (pgoal, ptrash, peattr) = (p.goal, p.trash_hours, p.eattr);
        let inherit = matches!(ntype, T::FILE | T::DIRECTORY);
        let kind = match ntype {
            T::DIRECTORY => Kind::Dir(Box::default()),
            T::FILE => Kind::File {
                length: 0,
                chunks: Vec::new(),
            },
            T::SYMLINK => Kind::Symlink(target.unwrap_or_default().into()),
            T::BLOCKDEV | T::CHARDEV => Kind::Dev(rdev),
            T::FIFO | T::SOCKET => Kind::Other,
            _ => return Err(st::EINVAL),
        };
        let mut ea =
            peattr & !(eattr::SNAPSHOT | eattr::UNDELETABLE | eattr::APPENDONLY | eattr::IMMUTABLE);
        if ntype != T::DIRECTORY {
            ea &= !eattr::NOECACHE;
        }
        self.claim_inode(ino);
        self.nodes[ino as usize] = Some(Node {
            ntype,
            mode: if ntype == T::SYMLINK {
                0o777
            } else {
                mode & 0o7777
            },
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            goal: if inherit { pgoal } else { DEFAULT_GOAL },
            trash_hours: if inherit {
                ptrash
            } else {
                (DEFAULT_TRASHTIME / 3600) as u16
            },
            eattr: if ntype == T::SYMLINK { 0 } else { ea },
            winattr: 0,
            parents: Parents::new(),
            xattrs: None,
            kind,
        });
        self.node_count += 1;
        self.link_entry(parent, name, ino, now);
        Ok(())
    }

    /// Makes inode number `ino` allocated: grows the table or takes it off the free list.
    fn claim_inode(&mut self, ino: u32) {
        let i = ino as usize;
        if self.nodes.len() <= i {
            self.nodes.resize_with(i + 1, || None);
        }
        if let Some(pos) = self.free.iter().position(|&(f, _)| f == ino) {
            self.free.remove(pos);
        }
    }

    fn free_node(&mut self, ino: u32, now: u32) {
        if let Some(n) = self.nodes.get_mut(ino as usize).and_then(Option::take) {
            if let Kind::File { chunks, .. } = n.kind {
                self.released.extend(chunks.into_iter().filter(|&c| c != 0));
            }
            self.node_count -= 1;
            self.free.push_back((ino, now));
        }
    }

    /// The path of directory `d` from the root, without a leading `/` (empty for the
    /// root). Each step looks the directory's name up in its parent's entries.
    pub fn dir_path(&self, mut d: u32) -> Vec<u8> {
        let mut parts: Vec<&[u8]> = Vec::new();
        while d != ROOT {
            let Some(p) = self.node(d).and_then(|n| n.parents.first()) else {
                break;
            };
            let Some(Node {
                kind: Kind::Dir(pd),
                ..
            }) = self.node(p)
            else {
                break;
            };
            match pd.entries.iter().find(|(_, &c)| c == d) {
                Some((n, _)) => parts.push(n),
                None => break,
            }
            d = p;
        }
        parts.reverse();
        parts.join(&b'/')
    }

    /// The path of `parent/name` (a trash entry's name). The parent's path is cached
    /// until a directory is moved or removed, so removing many files of one directory
    /// does not search its ancestors' entries each time.
    fn trash_path(&mut self, parent: u32, name: &[u8]) -> Vec<u8> {
        let cached =
            matches!(&self.dir_path_cache, Some((d, g, _)) if *d == parent && *g == self.dir_gen);
        if !cached {
            self.dir_path_cache = Some((parent, self.dir_gen, self.dir_path(parent)));
        }
        let dir = self.dir_path_cache.as_ref().map_or(&[][..], |c| &c.2[..]);
        if dir.is_empty() {
            name.to_vec()
        } else {
            [dir, name].join(&b'/')
        }
    }

    /// Removes a trash (or sustained) node for good: it becomes sustained while a
    /// session holds it open, else it is freed with its chunks. False when `ino` is
    /// neither.
    pub fn purge(&mut self, ino: u32, now: u32) -> bool {
        if let Some(path) = self.trash.remove(&ino) {
            if self.open.contains_key(&ino) {
                self.detached.insert(ino, path);
            } else {
                self.free_node(ino, now);
            }
            true
        } else if self.detached.contains_key(&ino) && !self.open.contains_key(&ino) {
            self.detached.remove(&ino);
            self.free_node(ino, now);
            true
        } else {
            false
        }
    }

    /// Purges the trash entries whose time is up (atime, mtime and ctime all older than
    /// the trash time, as MooseFS checks), journaling a PURGE for each; returns how many.
    pub fn expire_trash(&mut self, now: u32) -> usize {
        let due: Vec<u32> = self
            .trash
            .keys()
            .copied()
            .filter(|&i| {
                self.node(i).is_some_and(|n| {
                    let last = n.atime.max(n.mtime).max(n.ctime) as u64;
                    last + (n.trash_hours as u64) * 3600 < now as u64
                })
            })
            .collect();
        for &i in &due {
            self.purge(i, now);
            self.log(now, format!("PURGE({i})"));
        }
        due.len()
    }

    /// Sets the path a trash entry will be restored to (SETPATH).
    pub fn set_trash_path(&mut self, ino: u32, path: &[u8], now: u32) -> FsResult<()> {
        if path.is_empty() || path.len() > 1024 || path.contains(&0) {
            return Err(st::EINVAL);
        }
        let slot = self.trash.get_mut(&ino).ok_or(st::ENOENT)?;
        *slot = path.into();
        self.log(now, format!("SETPATH({ino},{})", escape(path)));
        Ok(())
    }

    /// Moves a trash entry back to its path (UNDEL): missing directories on the way are
    /// made (0755, root), an existing name is EEXIST, a non-directory on the way is
    /// CANTCREATEPATH. The file's ctime becomes `now`.
    pub fn undel(&mut self, ino: u32, now: u32) -> FsResult<()> {
        let path = self.trash.get(&ino).ok_or(st::ENOENT)?.to_vec();
        let parts: Vec<&[u8]> = path
            .split(|&c| c == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        let Some((name, dirs)) = parts.split_last() else {
            return Err(st::CANTCREATEPATH);
        };
        if !name_ok(name) || dirs.iter().any(|d| !name_ok(d)) {
            return Err(st::CANTCREATEPATH);
        }
        // Check the whole path before changing anything.
        let mut d = ROOT;
        let mut missing_from = None;
        for (k, part) in dirs.iter().enumerate() {
            match &self.get(d)?.kind {
                Kind::Dir(dd) => match dd.entries.get(*part) {
                    Some(&c)
                        if matches!(
                            self.node(c),
                            Some(Node {
                                kind: Kind::Dir(_),
                                ..
                            })
                        ) =>
                    {
                        d = c
                    }
                    Some(_) => return Err(st::CANTCREATEPATH),
                    None => {
                        missing_from = Some(k);
                        break;
                    }
                },
                _ => return Err(st::CANTCREATEPATH),
            }
        }
        if missing_from.is_none() {
            if let Kind::Dir(dd) = &self.get(d)?.kind {
                if dd.entries.contains_key(*name) {
                    return Err(st::EEXIST);
                }
            }
        }
        if let Some(k) = missing_from {
            for part in &dirs[k..] {
                let new = self.alloc_inode(now)?;
                self.mr_create(now, d, part, T::DIRECTORY, 0o755, 0, 0, 0, None, new)?;
                d = new;
            }
        }
        self.trash.remove(&ino);
        self.link_entry(d, name, ino, now);
        if let Some(n) = self.node_mut(ino) {
            n.ctime = now;
        }
        self.log(now, format!("UNDEL({ino})"));
        Ok(())
    }

    /// Number of files in the trash.
    pub fn trash_len(&self) -> usize {
        self.trash.len()
    }

    /// Trash entries as the meta mount lists them, (name, inode): one bucket
    /// (`inode % TRASH_BUCKETS`) or, for `None` or a bucket past the last, all of them
    /// in bucket order.
    pub fn trash_entries(&self, bucket: Option<u32>) -> Vec<(Vec<u8>, u32)> {
        let name = |i: u32| (detached_name(self.trash.get(&i).unwrap_or_default()), i);
        match bucket.filter(|&b| b < TRASH_BUCKETS) {
            Some(b) => self.trash.bucket(b).map(name).collect(),
            None => (0..TRASH_BUCKETS)
                .flat_map(|b| self.trash.bucket(b))
                .map(name)
                .collect(),
        }
    }

    /// Sustained entries (deleted while open) as the meta mount lists them.
    pub fn sustained_entries(&self) -> Vec<(Vec<u8>, u32)> {
        let mut v: Vec<(Vec<u8>, u32)> = self
            .detached
            .iter()
            .map(|(&i, p)| (detached_name(p), i))
            .collect();
        v.sort_by_key(|&(_, i)| i);
        v
    }

    /// Attributes of a trash (`dtype` 1), sustained (2) or either (0) node; they are
    /// shown as files with no links.
    pub fn detached_attr(&self, ino: u32, dtype: u8) -> FsResult<Attr> {
        let found = match dtype {
            0 => self.trash.contains_key(&ino) || self.detached.contains_key(&ino),
            1 => self.trash.contains_key(&ino),
            2 => self.detached.contains_key(&ino),
            _ => return Err(st::EINVAL),
        };
        if !found {
            return Err(st::ENOENT);
        }
        self.attr(ino, &Ctx::root())
    }

    /// The path a trash entry is restored to.
    pub fn trash_path_of(&self, ino: u32) -> FsResult<&[u8]> {
        self.trash.get(&ino).ok_or(st::ENOENT)
    }

    /// Removes a trash entry by hand (the meta mount's unlink), journaled as PURGE; it
    /// becomes sustained while a session still holds it open.
    pub fn purge_trash(&mut self, ino: u32, now: u32) -> FsResult<()> {
        if !self.trash.contains_key(&ino) {
            return Err(st::ENOENT);
        }
        self.purge(ino, now);
        self.log(now, format!("PURGE({ino})"));
        Ok(())
    }

    /// Marks an inode open by one more session.
    pub fn acquire(&mut self, ino: u32) {
        if self.node(ino).is_some() {
            *self.open.entry(ino).or_default() += 1;
        }
    }

    /// Drops one open reference; frees a detached (unlinked while open) file.
    pub fn release(&mut self, ino: u32, now: u32) {
        if let Some(c) = self.open.get_mut(&ino) {
            *c -= 1;
            if *c == 0 {
                self.open.remove(&ino);
                if self.detached.remove(&ino).is_some() {
                    self.free_node(ino, now);
                }
            }
        }
    }

    fn sticky_ok(&self, ctx: &Ctx, parent: &Node, n: &Node) -> bool {
        parent.mode & 0o1000 == 0
            || ctx.uid == 0
            || ctx.uid == parent.uid
            || ctx.uid == n.uid
            || n.eattr & eattr::NOOWNER != 0
    }

    fn check_remove(&self, ctx: &Ctx, parent: u32, name: &[u8]) -> FsResult<u32> {
        ctx.readonly()?;
        let p = self.get(parent)?;
        let Kind::Dir(d) = &p.kind else {
            return Err(st::ENOTDIR);
        };
        if p.eattr & (eattr::IMMUTABLE | eattr::APPENDONLY) != 0 {
            return Err(st::EPERM);
        }
        self.need(p, ctx, MODE_W)?;
        self.need(p, ctx, MODE_X)?;
        if !name_ok(name) {
            return Err(st::EINVAL);
        }
        let ino = *d.entries.get(name).ok_or(st::ENOENT)?;
        let n = self.get(ino)?;
        if !self.sticky_ok(ctx, p, n) {
            return Err(st::EPERM);
        }
        if n.eattr & (eattr::UNDELETABLE | eattr::IMMUTABLE | eattr::APPENDONLY) != 0 {
            return Err(st::EPERM);
        }
        Ok(ino)
    }

    /// Removes one link of `ino` from `parent`. When it was the last one, a file with a
    /// trash time goes to the trash (keeping its chunks, under its path); otherwise an
    /// opened node becomes sustained and the rest is freed, as MooseFS does.
    fn drop_link(&mut self, parent: u32, name: &[u8], ino: u32, now: u32) {
        let last = self.node(ino).is_some_and(|n| n.parents.len() == 1);
        let to_trash = last
            && self
                .node(ino)
                .is_some_and(|n| n.ntype == T::FILE && n.trash_hours > 0);
        let path = if to_trash || (last && self.open.contains_key(&ino)) {
            Some(self.trash_path(parent, name))
        } else {
            None
        };
        self.unlink_entry(parent, name, ino, now);
        let remaining = self.node(ino).map_or(0, |n| n.parents.len());
        if remaining == 0 {
            if let (true, Some(path)) = (to_trash, &path) {
                self.trash.insert(ino, path[..].into());
                if let Some(n) = self.node_mut(ino) {
                    n.ctime = now;
                }
            } else if self.open.contains_key(&ino) {
                self.detached.insert(ino, path.unwrap_or_default().into());
            } else {
                self.free_node(ino, now);
            }
        } else if let Some(n) = self.node_mut(ino) {
            n.ctime = now;
        }
    }

    /// unlink: returns the removed inode.
    pub fn unlink(&mut self, ctx: &Ctx, parent: u32, name: &[u8], now: u32) -> FsResult<u32> {
        let ino = self.check_remove(ctx, parent, name)?;
        if self.get(ino)?.ntype == T::DIRECTORY {
            return Err(st::EPERM);
        }
        self.drop_link(parent, name, ino, now);
        self.log(now, format!("UNLINK({parent},{}):{ino}", escape(name)));
        Ok(ino)
    }

    /// rmdir: returns the removed inode.
    pub fn rmdir(&mut self, ctx: &Ctx, parent: u32, name: &[u8], now: u32) -> FsResult<u32> {
        let ino = self.check_remove(ctx, parent, name)?;
        match &self.get(ino)?.kind {
            Kind::Dir(d) if !d.entries.is_empty() => return Err(st::ENOTEMPTY),
            Kind::Dir(_) => {}
            _ => return Err(st::ENOTDIR),
        }
        self.drop_link(parent, name, ino, now);
        self.log(now, format!("UNLINK({parent},{}):{ino}", escape(name)));
        Ok(ino)
    }

    /// Replay of UNLINK: removes `name` from `parent` without permission checks.
    pub fn mr_unlink(&mut self, now: u32, parent: u32, name: &[u8]) -> FsResult<u32> {
        let ino = match &self.get(parent)?.kind {
            Kind::Dir(d) => *d.entries.get(name).ok_or(st::ENOENT)?,
            _ => return Err(st::ENOTDIR),
        };
        if let Some(Node {
            kind: Kind::Dir(d), ..
        }) = self.node(ino)
        {
            if !d.entries.is_empty() {
                return Err(st::ENOTEMPTY);
            }
        }
        self.drop_link(parent, name, ino, now);
        Ok(ino)
    }

    fn is_ancestor(&self, anc: u32, mut ino: u32) -> bool {
        loop {
            if ino == anc {
                return true;
            }
            match self.node(ino).and_then(|n| n.parents.first()) {
                Some(p) => ino = p,
                None => return false,
            }
        }
    }

    /// rename: returns the moved inode.
    #[allow(clippy::too_many_arguments)]
    pub fn rename(
        &mut self,
        ctx: &Ctx,
        sp: u32,
        sname: &[u8],
        dp: u32,
        dname: &[u8],
        now: u32,
    ) -> FsResult<u32> {
        ctx.readonly()?;
        let ino = self.check_remove(ctx, sp, sname)?;
        let d = self.get(dp)?;
        let Kind::Dir(dd) = &d.kind else {
            return Err(st::ENOTDIR);
        };
        if d.eattr & eattr::IMMUTABLE != 0 {
            return Err(st::EPERM);
        }
        self.need(d, ctx, MODE_W)?;
        self.need(d, ctx, MODE_X)?;
        if !name_ok(dname) {
            return Err(st::EINVAL);
        }
        let is_dir = self.get(ino)?.ntype == T::DIRECTORY;
        if is_dir && self.is_ancestor(ino, dp) {
            return Err(st::EINVAL);
        }
        if is_dir && sp != dp {
            self.need(self.get(ino)?, ctx, MODE_W)?;
        }
        if let Some(&existing) = dd.entries.get(dname) {
            if existing == ino {
                return Ok(ino);
            }
            let e = self.get(existing)?;
            if let Kind::Dir(ed) = &e.kind {
                if !ed.entries.is_empty() {
                    return Err(st::ENOTEMPTY);
                }
            }
            if !self.sticky_ok(ctx, d, e) {
                return Err(st::EPERM);
            }
            if e.eattr & (eattr::UNDELETABLE | eattr::IMMUTABLE | eattr::APPENDONLY) != 0 {
                return Err(st::EPERM);
            }
        }
        self.mr_move(now, sp, sname, dp, dname)?;
        self.log(
            now,
            format!("MOVE({sp},{},{dp},{}):{ino}", escape(sname), escape(dname)),
        );
        Ok(ino)
    }

    /// Replay of MOVE (and the end of a live rename): moves `sp/sname` to `dp/dname`,
    /// replacing what was there. Returns the moved inode.
    pub fn mr_move(
        &mut self,
        now: u32,
        sp: u32,
        sname: &[u8],
        dp: u32,
        dname: &[u8],
    ) -> FsResult<u32> {
        let ino = match &self.get(sp)?.kind {
            Kind::Dir(d) => *d.entries.get(sname).ok_or(st::ENOENT)?,
            _ => return Err(st::ENOTDIR),
        };
        let existing = match &self.get(dp)?.kind {
            Kind::Dir(d) => d.entries.get(dname).copied(),
            _ => return Err(st::ENOTDIR),
        };
        if !name_ok(dname) {
            return Err(st::EINVAL);
        }
        if existing == Some(ino) {
            return Ok(ino);
        }
        if let Some(e) = existing {
            self.drop_link(dp, dname, e, now);
        }
        self.unlink_entry(sp, sname, ino, now);
        self.link_entry(dp, dname, ino, now);
        if let Some(n) = self.node_mut(ino) {
            n.ctime = now;
        }
        Ok(ino)
    }

    /// link: a new name for a non-directory.
    pub fn link(&mut self, ctx: &Ctx, ino: u32, dp: u32, name: &[u8], now: u32) -> FsResult<()> {
        ctx.readonly()?;
        let n = self.get(ino)?;
        if n.ntype == T::DIRECTORY || n.eattr & eattr::IMMUTABLE != 0 {
            return Err(st::EPERM);
        }
        if self.detached.contains_key(&ino) || self.trash.contains_key(&ino) {
            return Err(st::ENOENT);
        }
        if n.parents.len() >= MAX_LINKS {
            return Err(st::NOSPACE);
        }
        self.check_new_entry(ctx, dp, name)?;
        self.mr_link(now, ino, dp, name)?;
        self.log(now, format!("LINK({ino},{dp},{})", escape(name)));
        Ok(())
    }

    /// Replay of LINK: adds `dp/name` for the non-directory `ino`.
    pub fn mr_link(&mut self, now: u32, ino: u32, dp: u32, name: &[u8]) -> FsResult<()> {
        if self.get(ino)?.ntype == T::DIRECTORY {
            return Err(st::EPERM);
        }
        match &self.get(dp)?.kind {
            Kind::Dir(d) if d.entries.contains_key(name) => return Err(st::EEXIST),
            Kind::Dir(_) if name_ok(name) => {}
            Kind::Dir(_) => return Err(st::EINVAL),
            _ => return Err(st::ENOTDIR),
        }
        self.link_entry(dp, name, ino, now);
        if let Some(n) = self.node_mut(ino) {
            n.ctime = now;
        }
        Ok(())
    }

    /// Replay of ACCESS: the atime of `ino` becomes `now`.
    pub fn mr_access(&mut self, now: u32, ino: u32) -> FsResult<()> {
        self.get_mut(ino)?.atime = now;
        Ok(())
    }

    /// Atime update on reads of a directory or symlink (MooseFS's relatime rule).
    fn touch_atime(&mut self, ino: u32, now: u32) {
        if let Some(n) = self.node_mut(ino) {
            if n.atime < n.mtime || n.atime < n.ctime || n.atime + 86_400 < now {
                n.atime = now;
                self.log(now, format!("ACCESS({ino})"));
            }
        }
    }

    /// readlink.
    pub fn readlink(&mut self, ino: u32, now: u32) -> FsResult<Vec<u8>> {
        match &self.get(ino)?.kind {
            Kind::Symlink(t) => {
                let t = t.to_vec();
                self.touch_atime(ino, now);
                Ok(t)
            }
            _ => Err(st::EINVAL),
        }
    }

    /// readdir: ".", ".." and the children (R, plus X when attributes are wanted).
    pub fn readdir(
        &mut self,
        ctx: &Ctx,
        ino: u32,
        with_attr: bool,
        now: u32,
    ) -> FsResult<Vec<DirEntry>> {
        let n = self.get(ino)?;
        let Kind::Dir(d) = &n.kind else {
            return Err(st::ENOTDIR);
        };
        self.need(n, ctx, MODE_R)?;
        if with_attr {
            self.need(n, ctx, MODE_X)?;
        }
        let mut v = Vec::with_capacity(d.entries.len() + 2);
        v.push(DirEntry {
            name: b".".to_vec(),
            inode: ino,
        });
        v.push(DirEntry {
            name: b"..".to_vec(),
            inode: n.parents.first().unwrap_or(ino),
        });
        for (name, &i) in &d.entries {
            v.push(DirEntry {
                name: name.to_vec(),
                inode: i,
            });
        }
        self.touch_atime(ino, now);
        Ok(v)
    }

    /// open: permission checks, then `acquire` (done by the caller per session).
    pub fn open_check(&mut self, ctx: &Ctx, ino: u32, flags: u8, now: u32) -> FsResult<()> {
        let n = self.get(ino)?;
        let write = flags & 0x02 != 0;
        let trunc = flags & 0x08 != 0;
        if write || trunc {
            ctx.readonly()?;
        }
        if n.ntype != T::FILE {
            return Err(st::EPERM);
        }
        if (write || trunc) && n.eattr & eattr::IMMUTABLE != 0 {
            return Err(st::EPERM);
        }
        if trunc && n.eattr & eattr::APPENDONLY != 0 {
            return Err(st::EPERM);
        }
        if flags & 0x04 == 0 {
            if flags & 0x01 != 0 {
                self.need(n, ctx, MODE_R)?;
            }
            if write || trunc {
                self.need(n, ctx, MODE_W)?;
            }
        }
        if trunc {
            self.set_length(ino, 0, now, true)?;
        }
        Ok(())
    }

    /// Sets a file's length; chunks wholly beyond the end are released. The chunk that
    /// the new end cuts must already have been truncated on the chunkservers.
    pub fn set_length(&mut self, ino: u32, length: u64, now: u32, touch: bool) -> FsResult<()> {
        let mut released = Vec::new();
        self.with_stats(ino, |n| {
            n.eattr &= !eattr::SNAPSHOT;
            if let Kind::File { length: l, chunks } = &mut n.kind {
                *l = length;
                let keep = length.div_ceil(CHUNK_SIZE) as usize;
                if chunks.len() > keep {
                    released.extend(chunks.drain(keep..).filter(|&c| c != 0));
                }
                if touch {
                    n.mtime = now;
                    n.ctime = now;
                }
            }
        })?;
        self.released.extend(released);
        self.log(now, format!("LENGTH({ino},{length},{})", touch as u8));
        Ok(())
    }

    /// Length and chunk id at `index` of a file.
    pub fn file_chunk(&self, ino: u32, index: u32) -> FsResult<(u64, u64)> {
        match &self.get(ino)?.kind {
            Kind::File { length, chunks } => {
                Ok((*length, chunks.get(index as usize).copied().unwrap_or(0)))
            }
            _ => Err(st::EPERM),
        }
    }

    /// Points chunk slot `index` at `chunkid` (0 = hole) and makes the length at least
    /// `min_length`; returns the previous id.
    pub fn set_chunk(
        &mut self,
        ino: u32,
        index: u32,
        chunkid: u64,
        min_length: u64,
    ) -> FsResult<u64> {
        self.with_stats(ino, |n| {
            // A written file is no longer what a snapshot made (MooseFS's rule).
            n.eattr &= !eattr::SNAPSHOT;
            let Kind::File { length, chunks } = &mut n.kind else {
                return 0;
            };
            let i = index as usize;
            if chunks.len() <= i {
                chunks.resize(i + 1, 0);
            }
            let old = std::mem::replace(&mut chunks[i], chunkid);
            if *length < min_length {
                *length = min_length;
            }
            old
        })
    }

    /// Raises a file's length (write end); never shrinks.
    pub fn extend_length(&mut self, ino: u32, length: u64, now: u32) -> FsResult<()> {
        let grew = self.with_stats(ino, |n| match &mut n.kind {
            Kind::File { length: l, .. } if *l < length => {
                *l = length;
                n.eattr &= !eattr::SNAPSHOT;
                true
            }
            _ => false,
        })?;
        if grew {
            self.log(now, format!("LENGTH({ino},{length},0)"));
        }
        Ok(())
    }

    /// setattr (everything but size).
    pub fn setattr(&mut self, ctx: &Ctx, ino: u32, a: &SetAttr, now: u32) -> FsResult<()> {
        ctx.readonly()?;
        let n = self.get(ino)?;
        if n.eattr & eattr::IMMUTABLE != 0 {
            return Err(st::EPERM);
        }
        let owner = ctx.uid == 0 || ctx.uid == n.uid || n.eattr & eattr::NOOWNER != 0;
        let sugid_clear_by_kernel = ctx.uid != 0
            && a.setmask == SET_MODE
            && a.mode == n.mode & 0o1777
            && n.mode & 0o6000 != 0;
        if !sugid_clear_by_kernel {
            if ctx.sesflags & sesflag::MAPALL != 0
                && ctx.uid != 0
                && a.setmask & (SET_UID | SET_GID) != 0
            {
                return Err(st::EPERM);
            }
            if !owner {
                if a.setmask & (SET_MODE | SET_UID | SET_GID | SET_ATIME | SET_MTIME) != 0 {
                    return Err(st::EPERM);
                }
                if a.setmask & (SET_ATIME_NOW | SET_MTIME_NOW) != 0 {
                    self.need(n, ctx, MODE_W)?;
                }
            }
            if ctx.uid != 0 && a.setmask & SET_UID != 0 && a.uid != ctx.uid {
                return Err(st::EPERM);
            }
            if ctx.uid != 0
                && ctx.sesflags & sesflag::IGNOREGID == 0
                && a.setmask & SET_GID != 0
                && !ctx.gids.contains(&a.gid)
            {
                return Err(st::EPERM);
            }
        }
        let is_dir = n.ntype == T::DIRECTORY;
        let uid_changes = a.setmask & SET_UID != 0;
        let gid_really_changes = a.setmask & SET_GID != 0 && a.gid != n.gid;
        let n = self.get_mut(ino)?;
        let mut newmode = a.mode & 0o7777;
        if a.setmask & (SET_UID | SET_GID) != 0 && a.setmask & SET_MODE != 0 {
            newmode = (newmode & 0o1777) | (n.mode & 0o6000);
        }
        if n.mode & 0o6000 != 0 && a.setmask & (SET_UID | SET_GID) != 0 {
            let clear = |m: u16| -> u16 {
                match a.sugidclearmode {
                    1 => m & !0o6000,
                    2 if ctx.uid != 0 => m & !0o6000,
                    3 if ctx.uid != 0 && (uid_changes || gid_really_changes) => m & !0o6000,
                    4 | 5 if !is_dir => {
                        if m & 0o010 != 0 {
                            m & !0o6000
                        } else {
                            m & !0o4000
                        }
                    }
                    5 if is_dir && ctx.uid != 0 => m & !0o6000,
                    _ => m,
                }
            };
            n.mode = clear(n.mode);
            newmode = clear(newmode);
        }
        if a.setmask & SET_MODE != 0 {
            if ctx.uid != 0 && newmode & 0o2000 != 0 && !ctx.gids.contains(&n.gid) {
                newmode &= !0o2000;
            }
            n.mode = newmode;
        }
        if a.setmask & SET_UID != 0 {
            n.uid = a.uid;
        }
        if a.setmask & SET_GID != 0 {
            n.gid = a.gid;
        }
        if a.setmask & SET_ATIME != 0 {
            n.atime = a.atime;
        } else if a.setmask & SET_ATIME_NOW != 0 {
            n.atime = now;
        }
        if a.setmask & SET_MTIME != 0 {
            n.mtime = a.mtime;
        } else if a.setmask & SET_MTIME_NOW != 0 {
            n.mtime = now;
        }
        if a.setmask & SET_WINATTR != 0 {
            n.winattr = a.winattr;
        }
        let body = format!(
            "ATTR({ino},{},{},{},{},{},{},0)",
            n.mode, n.uid, n.gid, n.atime, n.mtime, n.winattr
        );
        n.ctime = now;
        self.log(now, body);
        Ok(())
    }

    /// Replay of ATTR: sets mode, owner, times and winattr; ctime becomes `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn mr_attr(
        &mut self,
        now: u32,
        ino: u32,
        mode: u16,
        uid: u32,
        gid: u32,
        atime: u32,
        mtime: u32,
        winattr: u8,
    ) -> FsResult<()> {
        let n = self.get_mut(ino)?;
        n.mode = mode & 0o7777;
        n.uid = uid;
        n.gid = gid;
        n.atime = atime;
        n.mtime = mtime;
        n.winattr = winattr;
        n.ctime = now;
        Ok(())
    }

    /// Checks a truncate request (without OPENED: needs W).
    pub fn truncate_check(&self, ctx: &Ctx, ino: u32, flags: u8, length: u64) -> FsResult<u64> {
        ctx.readonly()?;
        let n = self.get(ino)?;
        if n.eattr & eattr::IMMUTABLE != 0 {
            return Err(st::EPERM);
        }
        if n.eattr & eattr::APPENDONLY != 0 && flags & 0x0A == 0 {
            return Err(st::EPERM);
        }
        if flags & 0x01 == 0 {
            self.need(n, ctx, MODE_W)?;
        }
        match &n.kind {
            Kind::File { length: l, .. } => {
                if length >> 26 > 0x7FFF_FFFF {
                    return Err(st::INDEXTOOBIG);
                }
                Ok(*l)
            }
            _ => Err(st::EPERM),
        }
    }

    /// Applies the client's deferred atime/mtime updates.
    pub fn amtime(&mut self, ino: u32, atime: u32, mtime: u32, now: u32) {
        let Some(n) = self.node_mut(ino) else { return };
        let before = (n.atime, n.mtime, n.ctime);
        if atime > n.atime && (n.atime <= n.ctime || n.atime <= n.mtime || n.atime + 86_400 < atime)
        {
            n.atime = atime;
        }
        if mtime > n.mtime {
            n.mtime = mtime;
            n.ctime = mtime;
        }
        let after = (n.atime, n.mtime, n.ctime);
        if after != before {
            self.log(
                now,
                format!("AMTIME({ino},{},{},{})", after.0, after.1, after.2),
            );
        }
    }

    /// Replay of AMTIME: sets the three times.
    pub fn mr_amtime(&mut self, ino: u32, atime: u32, mtime: u32, ctime: u32) -> FsResult<()> {
        let n = self.get_mut(ino)?;
        (n.atime, n.mtime, n.ctime) = (atime, mtime, ctime);
        Ok(())
    }

    /// getxattr (mode 0 = value, 1 = length only); an empty name lists names.
    pub fn getxattr(&self, ctx: &Ctx, ino: u32, name: &[u8], opened: bool) -> FsResult<Vec<u8>> {
        let n = self.get(ino)?;
        if name.contains(&0) {
            return Err(st::EINVAL);
        }
        if !opened {
            self.need(n, ctx, MODE_R)?;
        }
        let x = n.xattrs.as_deref();
        if name.is_empty() {
            let mut out = Vec::new();
            for k in x.into_iter().flat_map(|m| m.keys()) {
                if ctx.uid != 0 && k.starts_with(b"trusted.") {
                    continue;
                }
                out.extend_from_slice(k);
                out.push(0);
            }
            return Ok(out);
        }
        if ctx.uid != 0 && name.starts_with(b"trusted.") {
            return Err(st::EPERM);
        }
        x.and_then(|m| m.get(name)).cloned().ok_or(st::ENOATTR)
    }

    /// setxattr / removexattr (mode 3).
    #[allow(clippy::too_many_arguments)]
    pub fn setxattr(
        &mut self,
        ctx: &Ctx,
        ino: u32,
        name: &[u8],
        value: &[u8],
        mode: u8,
        opened: bool,
        now: u32,
    ) -> FsResult<()> {
        ctx.readonly()?;
        let n = self.get(ino)?;
        if name.is_empty() || name.len() > 255 || name.contains(&0) || mode > 3 {
            return Err(st::EINVAL);
        }
        if ctx.uid != 0 && (name.starts_with(b"trusted.") || name.starts_with(b"security.")) {
            return Err(st::EPERM);
        }
        if ctx.uid != 0
            && ctx.uid != n.uid
            && n.eattr & eattr::NOOWNER == 0
            && name.starts_with(b"system.")
        {
            return Err(st::EPERM);
        }
        if n.eattr & eattr::IMMUTABLE != 0 {
            return Err(st::EPERM);
        }
        if !opened {
            self.need(n, ctx, MODE_W)?;
        }
        if value.len() > 65536 {
            return Err(st::ERANGE);
        }
        self.mr_setxattr(now, ino, name, value, mode)?;
        self.log(
            now,
            format!("SETXATTR({ino},{},{},{mode})", escape(name), escape(value)),
        );
        Ok(())
    }

    /// Replay of SETXATTR: mode 0 set, 1 create only, 2 replace only, 3 remove.
    pub fn mr_setxattr(
        &mut self,
        now: u32,
        ino: u32,
        name: &[u8],
        value: &[u8],
        mode: u8,
    ) -> FsResult<()> {
        let n = self.get_mut(ino)?;
        let m = n.xattrs.get_or_insert_with(Default::default);
        let exists = m.contains_key(name);
        match mode {
            1 if exists => return Err(st::EEXIST),
            2 | 3 if !exists => return Err(st::ENOATTR),
            3 => {
                m.remove(name);
            }
            _ => {
                m.insert(name.to_vec(), value.to_vec());
            }
        }
        if m.is_empty() {
            n.xattrs = None;
        }
        n.ctime = now;
        Ok(())
    }

    /// All inodes of the subtree at `ino` (itself first), for recursive tool operations.
    pub fn subtree(&self, ino: u32) -> Vec<u32> {
        let mut out = vec![ino];
        let mut i = 0;
        while i < out.len() {
            if let Some(Node {
                kind: Kind::Dir(d), ..
            }) = self.node(out[i])
            {
                out.extend(d.entries.values().copied());
            }
            i += 1;
        }
        out
    }

    /// Sets the goal of one node (files and directories); returns whether it changed.
    pub fn set_goal(&mut self, ino: u32, goal: u8, now: u32) -> bool {
        let Some(n) = self.node(ino) else {
            return false;
        };
        if n.goal == goal || !matches!(n.ntype, T::FILE | T::DIRECTORY) {
            return false;
        }
        let chunks: Vec<u64> = match &n.kind {
            Kind::File { chunks, .. } => chunks.iter().copied().filter(|&c| c != 0).collect(),
            _ => Vec::new(),
        };
        let _ = self.with_stats(ino, |n| {
            n.goal = goal;
            n.ctime = now;
        });
        self.goal_changes
            .extend(chunks.into_iter().map(|c| (c, goal)));
        true
    }

    /// Sets the trash time (seconds, rounded up to hours) of one node.
    pub fn set_trash(&mut self, ino: u32, seconds: u32, now: u32) -> bool {
        let h = seconds.div_ceil(3600).min(u16::MAX as u32) as u16;
        match self.node_mut(ino) {
            Some(n) if n.trash_hours != h && matches!(n.ntype, T::FILE | T::DIRECTORY) => {
                n.trash_hours = h;
                n.ctime = now;
                true
            }
            _ => false,
        }
    }

    /// Sets (mode 0), adds (1) or removes (2) eattr bits of one node.
    pub fn set_eattr(&mut self, ino: u32, bits: u8, mode: u8, now: u32) -> bool {
        let Some(n) = self.node_mut(ino) else {
            return false;
        };
        let new = match mode {
            1 => n.eattr | bits,
            2 => n.eattr & !bits,
            _ => bits,
        };
        let new = if n.ntype == T::DIRECTORY {
            new
        } else {
            new & !eattr::NOECACHE
        };
        if new == n.eattr {
            return false;
        }
        n.eattr = new;
        n.ctime = now;
        true
    }

    /// Runs a tool operation (`mfsset*`) on `ino`, or with smode bit 4 on its whole
    /// subtree: `f(fs, node, smode & 3)` says whether it changed the node. Returns the
    /// counts of changed, unchanged and not permitted nodes.
    fn apply_tool(
        &mut self,
        ino: u32,
        smode: u8,
        uid: u32,
        mut f: impl FnMut(&mut Fs, u32, u8) -> bool,
    ) -> FsResult<(u32, u32, u32)> {
        let n = self.get(ino)?;
        let recursive = smode & 4 != 0;
        if !recursive && !matches!(n.ntype, T::FILE | T::DIRECTORY) {
            return Err(st::EPERM);
        }
        let nodes = if recursive {
            self.subtree(ino)
        } else {
            vec![ino]
        };
        let (mut ch, mut nch, mut np) = (0, 0, 0);
        for i in nodes {
            if !self
                .node(i)
                .is_some_and(|n| matches!(n.ntype, T::FILE | T::DIRECTORY))
            {
                continue;
            }
            if !self.may_modify(uid, i) {
                np += 1;
            } else if f(self, i, smode & 3) {
                ch += 1;
            } else {
                nch += 1;
            }
        }
        if !recursive && np > 0 {
            return Err(st::EPERM);
        }
        Ok((ch, nch, np))
    }

    /// `mfssettrashtime` (smode: 0 set, 1 increase only, 2 decrease only, +4 recursive);
    /// journaled as SETTRASHTIME and replayed by calling it again.
    pub fn tool_trashtime(
        &mut self,
        ino: u32,
        uid: u32,
        trashtime: u32,
        smode: u8,
        now: u32,
    ) -> FsResult<(u32, u32, u32)> {
        let c = self.apply_tool(ino, smode, uid, |fs, i, mode| {
            let cur = fs.node(i).map_or(0, |n| n.trash_hours as u32 * 3600);
            let want = match mode {
                1 if trashtime <= cur => return false,
                2 if trashtime >= cur => return false,
                _ => trashtime,
            };
            fs.set_trash(i, want, now)
        })?;
        self.log(
            now,
            format!(
                "SETTRASHTIME({ino},{uid},{trashtime},{smode}):{},{},{}",
                c.0, c.1, c.2
            ),
        );
        Ok(c)
    }

    /// `mfssetgoal` (a storage class 1..9 is "goal N"); journaled as SETSCLASS.
    pub fn tool_goal(
        &mut self,
        ino: u32,
        uid: u32,
        goal: u8,
        smode: u8,
        now: u32,
    ) -> FsResult<(u32, u32, u32)> {
        let c = self.apply_tool(ino, smode, uid, |fs, i, mode| {
            let cur = fs.node(i).map_or(0, |n| n.goal);
            match mode {
                1 if goal <= cur => false,
                2 if goal >= cur => false,
                _ => fs.set_goal(i, goal, now),
            }
        })?;
        self.log(
            now,
            format!(
                "SETSCLASS({ino},{uid},0,{goal},{smode}):{},{},{}",
                c.0, c.1, c.2
            ),
        );
        Ok(c)
    }

    /// `mfsseteattr`; journaled as SETEATTR.
    pub fn tool_eattr(
        &mut self,
        ino: u32,
        uid: u32,
        bits: u8,
        smode: u8,
        now: u32,
    ) -> FsResult<(u32, u32, u32)> {
        let c = self.apply_tool(ino, smode, uid, |fs, i, mode| {
            fs.set_eattr(i, bits, mode, now)
        })?;
        self.log(
            now,
            format!(
                "SETEATTR({ino},{uid},{bits},{smode}):{},{},{}",
                c.0, c.1, c.2
            ),
        );
        Ok(c)
    }

    /// Replay of a write's mtime change: mtime and ctime become `now`.
    pub fn mr_touch(&mut self, now: u32, ino: u32) -> FsResult<()> {
        let n = self.get_mut(ino)?;
        n.mtime = now;
        n.ctime = now;
        Ok(())
    }

    /// Calls `f(goal, chunkid)` for every chunk slot of every file.
    pub fn for_each_file_chunk(&self, mut f: impl FnMut(u8, u64)) {
        for n in self.nodes.iter().flatten() {
            if let Kind::File { chunks, .. } = &n.kind {
                for &c in chunks.iter().filter(|&&c| c != 0) {
                    f(n.goal, c);
                }
            }
        }
    }

    /// Checks that every directory entry's child lists that directory as a parent (once
    /// per entry) and that every node but the root and open detached files is reachable.
    pub fn check_links(&self) -> Result<(), String> {
        let mut count = vec![0u32; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(Node {
                kind: Kind::Dir(d), ..
            }) = n
            {
                for (name, &c) in &d.entries {
                    let ok = self.node(c).is_some_and(|n| n.parents.contains(i as u32));
                    if !ok {
                        return Err(format!(
                            "entry {i}/{} points at node {c}, which is missing or does not list {i} as a parent",
                            String::from_utf8_lossy(name)
                        ));
                    }
                    count[c as usize] += 1;
                }
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let i = i as u32;
            if count[i as usize] as usize != n.parents.len() {
                return Err(format!(
                    "node {i}: {} parents, {} entries",
                    n.parents.len(),
                    count[i as usize]
                ));
            }
            if n.parents.is_empty()
                && i != ROOT
                && !self.detached.contains_key(&i)
                && !self.trash.contains_key(&i)
            {
                return Err(format!("node {i} is not reachable"));
            }
        }
        Ok(())
    }

    /// Whether the caller may change tool attributes (goal, trash time, eattr) of a node.
    pub fn may_modify(&self, uid: u32, ino: u32) -> bool {
        self.node(ino).is_some_and(|n| {
            (uid == 0 || uid == n.uid || n.eattr & eattr::NOOWNER != 0)
                && n.eattr & eattr::IMMUTABLE == 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32) -> Ctx {
        Ctx {
            uid,
            gids: vec![uid],
            sesflags: 0,
            umask: 0,
        }
    }

    fn mk(fs: &mut Fs, parent: u32, name: &str, t: u8) -> u32 {
        fs.create(
            &Ctx::root(),
            parent,
            name.as_bytes(),
            t,
            0o755,
            0o022,
            0,
            true,
            None,
            100,
        )
        .unwrap()
    }

    #[test]
    fn create_lookup_unlink() {
        let mut fs = Fs::new(100);
        let d = mk(&mut fs, ROOT, "d", T::DIRECTORY);
        let f = mk(&mut fs, d, "f", T::FILE);
        assert_eq!(fs.lookup(&Ctx::root(), d, b"f"), Ok(f));
        assert_eq!(fs.lookup(&Ctx::root(), d, b".."), Ok(ROOT));
        assert_eq!(fs.attr(ROOT, &Ctx::root()).unwrap().nlink, 3);
        assert_eq!(
            fs.create(&Ctx::root(), d, b"f", T::FILE, 0o644, 0, 0, true, None, 100),
            Err(st::EEXIST)
        );
        assert_eq!(fs.rmdir(&Ctx::root(), ROOT, b"d", 101), Err(st::ENOTEMPTY));
        assert_eq!(fs.unlink(&Ctx::root(), ROOT, b"d", 101), Err(st::EPERM));
        fs.unlink(&Ctx::root(), d, b"f", 101).unwrap();
        // Default trash time: the file waits in the trash under its path.
        assert!(fs.node(f).is_some());
        assert_eq!(fs.trash.get(&f).map(|p| p.to_vec()), Some(b"d/f".to_vec()));
        fs.rmdir(&Ctx::root(), ROOT, b"d", 101).unwrap();
        assert_eq!(fs.attr(ROOT, &Ctx::root()).unwrap().nlink, 2);
        assert_eq!(fs.node_count, 2);
        assert!(fs.purge(f, 102));
        assert!(fs.node(f).is_none());
        assert_eq!(fs.node_count, 1);
        fs.check_links().unwrap();
    }

    #[test]
    fn trash_keeps_chunks_until_it_expires() {
        let mut fs = Fs::new(100);
        let d = mk(&mut fs, ROOT, "d", T::DIRECTORY);
        let f = mk(&mut fs, d, "f", T::FILE);
        let g = mk(&mut fs, d, "g", T::FILE);
        fs.set_trash(g, 0, 100);
        fs.set_trash(f, 3600, 100);
        fs.set_chunk(f, 0, 7, 10).unwrap();
        fs.set_chunk(g, 0, 8, 10).unwrap();
        fs.unlink(&Ctx::root(), d, b"f", 200).unwrap();
        fs.unlink(&Ctx::root(), d, b"g", 200).unwrap();
        // Trash time 0: gone at once; 1 hour: kept with its chunk.
        assert_eq!(fs.take_released(), vec![8]);
        assert_eq!(fs.trash_len(), 1);
        assert_eq!(fs.node_stats(ROOT).files, 0);
        let _ = fs.take_journal();
        assert_eq!(fs.expire_trash(200 + 3600), 0);
        assert_eq!(fs.expire_trash(200 + 3601), 1);
        assert_eq!(fs.take_released(), vec![7]);
        assert!(fs.node(f).is_none());
        assert_eq!(fs.take_journal(), vec![(3801, format!("PURGE({f})"))]);
    }

    #[test]
    fn trash_paths_follow_directory_moves() {
        let mut fs = Fs::new(100);
        let a = mk(&mut fs, ROOT, "a", T::DIRECTORY);
        let f = mk(&mut fs, a, "f", T::FILE);
        let g = mk(&mut fs, a, "g", T::FILE);
        fs.unlink(&Ctx::root(), a, b"f", 200).unwrap();
        fs.rename(&Ctx::root(), ROOT, b"a", ROOT, b"b", 201)
            .unwrap();
        fs.unlink(&Ctx::root(), a, b"g", 202).unwrap();
        assert_eq!(fs.trash.get(&f).map(|p| p.to_vec()), Some(b"a/f".to_vec()));
        assert_eq!(fs.trash.get(&g).map(|p| p.to_vec()), Some(b"b/g".to_vec()));
        assert_eq!(fs.dir_path(a), b"b".to_vec());
        assert_eq!(fs.dir_path(ROOT), Vec::<u8>::new());
    }

    #[test]
    fn meta_listings_name_buckets_and_detached_attributes() {
        let mut fs = Fs::new(100);
        let d = mk(&mut fs, ROOT, "d", T::DIRECTORY);
        let f = mk(&mut fs, d, "f", T::FILE);
        let g = mk(&mut fs, ROOT, "g", T::FILE);
        let deep = mk(&mut fs, ROOT, &"y".repeat(200), T::DIRECTORY);
        let long = "x".repeat(250);
        let h = mk(&mut fs, deep, &long, T::FILE);
        for (p, n) in [(d, b"f".as_slice()), (ROOT, b"g"), (deep, long.as_bytes())] {
            fs.unlink(&Ctx::root(), p, n, 200).unwrap();
        }
        assert_eq!(
            fs.trash_entries(Some(f % TRASH_BUCKETS)),
            vec![(b"d|f".to_vec(), f)]
        );
        let all = fs.trash_entries(None);
        assert_eq!(all.iter().map(|e| e.1).collect::<Vec<_>>(), vec![f, g, h]);
        assert_eq!(fs.trash_entries(Some(TRASH_BUCKETS + 5)).len(), 3);
        let cut = &all[2].0;
        assert_eq!((cut.len(), &cut[..5]), (240, &b"(...)"[..]));
        assert_eq!(&cut[5..], &b"x".repeat(235)[..]);
        let a = fs.detached_attr(g, 0).unwrap();
        assert_eq!((a.ntype, a.nlink, a.ctime), (T::FILE, 0, 200));
        assert_eq!(fs.detached_attr(g, 2), Err(st::ENOENT));
        assert_eq!(fs.detached_attr(g, 3), Err(st::EINVAL));
        assert_eq!(fs.detached_attr(d, 0), Err(st::ENOENT));
        assert_eq!(fs.trash_path_of(f), Ok(&b"d/f"[..]));
        // Purged while open: sustained under its path, freed at the last release.
        fs.acquire(f);
        fs.purge_trash(f, 300).unwrap();
        assert_eq!(fs.sustained_entries(), vec![(b"d|f".to_vec(), f)]);
        assert_eq!(fs.detached_attr(f, 2).map(|a| a.nlink), Ok(0));
        assert_eq!(fs.purge_trash(f, 300), Err(st::ENOENT));
        fs.release(f, 400);
        assert!(fs.sustained_entries().is_empty() && fs.node(f).is_none());
        assert!(fs
            .take_journal()
            .iter()
            .any(|(_, l)| l == &format!("PURGE({f})")));
    }

    #[test]
    fn undel_restores_the_path_and_recreates_missing_directories() {
        let mut fs = Fs::new(100);
        let a = mk(&mut fs, ROOT, "a", T::DIRECTORY);
        let b = mk(&mut fs, a, "b", T::DIRECTORY);
        let f = mk(&mut fs, b, "f", T::FILE);
        fs.set_chunk(f, 0, 9, 10).unwrap();
        fs.unlink(&Ctx::root(), b, b"f", 200).unwrap();
        fs.rmdir(&Ctx::root(), a, b"b", 200).unwrap();
        assert_eq!(
            fs.trash.get(&f).map(|p| p.to_vec()),
            Some(b"a/b/f".to_vec())
        );
        fs.undel(f, 300).unwrap();
        let b2 = fs.lookup(&Ctx::root(), a, b"b").unwrap();
        assert_eq!(fs.lookup(&Ctx::root(), b2, b"f"), Ok(f));
        assert_eq!(fs.node(b2).unwrap().mode, 0o755);
        assert_eq!(fs.node_stats(ROOT).chunks, 1);
        assert!(fs.take_released().is_empty());
        fs.check_links().unwrap();
        // A name already in use, and a file where a directory should be.
        fs.unlink(&Ctx::root(), b2, b"f", 400).unwrap();
        mk(&mut fs, b2, "f", T::FILE);
        assert_eq!(fs.undel(f, 500), Err(st::EEXIST));
        fs.set_trash_path(f, b"a/b/f/x", 500).unwrap();
        assert_eq!(fs.undel(f, 500), Err(st::CANTCREATEPATH));
        fs.set_trash_path(f, b"c/g", 500).unwrap();
        fs.undel(f, 600).unwrap();
        let c = fs.lookup(&Ctx::root(), ROOT, b"c").unwrap();
        assert_eq!(fs.lookup(&Ctx::root(), c, b"g"), Ok(f));
        fs.check_links().unwrap();
    }

    #[test]
    fn permissions_follow_mode_bits() {
        let mut fs = Fs::new(100);
        let d = fs
            .create(
                &user(1000),
                ROOT,
                b"home",
                T::DIRECTORY,
                0o700,
                0,
                0,
                true,
                None,
                100,
            )
            .unwrap();
        assert_eq!(fs.lookup(&user(1001), d, b"x"), Err(st::EACCES));
        assert_eq!(
            fs.create(&user(1001), d, b"x", T::FILE, 0o644, 0, 0, true, None, 100),
            Err(st::EACCES)
        );
        assert!(fs
            .create(&user(1000), d, b"x", T::FILE, 0o644, 0, 0, true, None, 100)
            .is_ok());
        let ro = Ctx {
            sesflags: sesflag::READONLY,
            ..Ctx::root()
        };
        assert_eq!(fs.unlink(&ro, d, b"x", 100), Err(st::EROFS));
    }

    #[test]
    fn hard_links_count_and_survive() {
        let mut fs = Fs::new(100);
        let f = mk(&mut fs, ROOT, "a", T::FILE);
        fs.link(&Ctx::root(), f, ROOT, b"b", 101).unwrap();
        assert_eq!(fs.attr(f, &Ctx::root()).unwrap().nlink, 2);
        fs.unlink(&Ctx::root(), ROOT, b"a", 102).unwrap();
        assert_eq!(fs.attr(f, &Ctx::root()).unwrap().nlink, 1);
        assert_eq!(fs.lookup(&Ctx::root(), ROOT, b"b"), Ok(f));
    }

    #[test]
    fn rename_over_existing_and_into_own_subtree() {
        let mut fs = Fs::new(100);
        let a = mk(&mut fs, ROOT, "a", T::FILE);
        let b = mk(&mut fs, ROOT, "b", T::FILE);
        fs.set_chunk(b, 0, 77, 10).unwrap();
        fs.rename(&Ctx::root(), ROOT, b"a", ROOT, b"b", 101)
            .unwrap();
        assert_eq!(fs.lookup(&Ctx::root(), ROOT, b"b"), Ok(a));
        // The replaced file goes to the trash with its chunk, as in MooseFS.
        assert!(fs.trash.contains_key(&b));
        assert!(fs.take_released().is_empty());
        assert!(fs.purge(b, 102));
        assert!(fs.node(b).is_none());
        assert_eq!(fs.take_released(), vec![77]);
        let d = mk(&mut fs, ROOT, "d", T::DIRECTORY);
        let e = mk(&mut fs, d, "e", T::DIRECTORY);
        assert_eq!(
            fs.rename(&Ctx::root(), ROOT, b"d", e, b"x", 101),
            Err(st::EINVAL)
        );
        fs.rename(&Ctx::root(), ROOT, b"b", e, b"moved", 101)
            .unwrap();
        assert_eq!(fs.lookup(&Ctx::root(), e, b"moved"), Ok(a));
    }

    #[test]
    fn stats_follow_lengths_and_moves() {
        let mut fs = Fs::new(100);
        let d = mk(&mut fs, ROOT, "d", T::DIRECTORY);
        let f = mk(&mut fs, d, "f", T::FILE);
        fs.set_chunk(f, 0, 5, 0).unwrap();
        fs.extend_length(f, 100_000, 0).unwrap();
        let s = fs.node_stats(ROOT);
        assert_eq!(
            (s.inodes, s.dirs, s.files, s.chunks, s.length),
            (3, 2, 1, 1, 100_000)
        );
        assert_eq!(s.size, 0x20000 + HDR_SIZE);
        assert_eq!(s.realsize, s.size * 2);
        fs.set_goal(f, 3, 101);
        assert_eq!(fs.node_stats(ROOT).realsize, s.size * 3);
        assert_eq!(fs.take_goal_changes(), vec![(5, 3)]);
        fs.set_length(f, 0, 102, true).unwrap();
        assert_eq!(fs.take_released(), vec![5]);
        let s = fs.node_stats(ROOT);
        assert_eq!((s.chunks, s.length, s.size), (0, 0, 0));
        assert_eq!(fs.attr(d, &Ctx::root()).unwrap().length, 1);
    }

    #[test]
    fn unlinked_open_file_lives_until_released() {
        let mut fs = Fs::new(100);
        let f = mk(&mut fs, ROOT, "f", T::FILE);
        fs.set_trash(f, 0, 100);
        fs.set_chunk(f, 0, 9, 0).unwrap();
        fs.acquire(f);
        fs.unlink(&Ctx::root(), ROOT, b"f", 101).unwrap();
        assert!(fs.node(f).is_some());
        assert!(fs.take_released().is_empty());
        fs.release(f, 102);
        assert!(fs.node(f).is_none());
        assert_eq!(fs.take_released(), vec![9]);
    }

    #[test]
    fn setattr_chown_clears_suid_ext_mode() {
        let mut fs = Fs::new(100);
        let f = mk(&mut fs, ROOT, "f", T::FILE);
        let a = SetAttr {
            setmask: SET_MODE,
            mode: 0o4755,
            ..SetAttr::default()
        };
        fs.setattr(&Ctx::root(), f, &a, 101).unwrap();
        let a = SetAttr {
            setmask: SET_UID,
            uid: 5,
            sugidclearmode: 4,
            ..SetAttr::default()
        };
        fs.setattr(&Ctx::root(), f, &a, 101).unwrap();
        let at = fs.attr(f, &Ctx::root()).unwrap();
        assert_eq!((at.mode, at.uid), (0o755, 5));
        // A non-owner may not chmod.
        let a = SetAttr {
            setmask: SET_MODE,
            mode: 0o777,
            ..SetAttr::default()
        };
        assert_eq!(fs.setattr(&user(6), f, &a, 101), Err(st::EPERM));
    }

    #[test]
    fn xattrs_store_list_remove() {
        let mut fs = Fs::new(100);
        let f = mk(&mut fs, ROOT, "f", T::FILE);
        assert_eq!(
            fs.getxattr(&Ctx::root(), f, b"user.a", false),
            Err(st::ENOATTR)
        );
        fs.setxattr(&Ctx::root(), f, b"user.a", b"1", 0, false, 101)
            .unwrap();
        fs.setxattr(&Ctx::root(), f, b"user.b", b"22", 0, false, 101)
            .unwrap();
        assert_eq!(fs.attr(f, &Ctx::root()).unwrap().flags & MATTR_NOXATTR, 0);
        assert_eq!(
            fs.getxattr(&Ctx::root(), f, b"", false).unwrap(),
            b"user.a\0user.b\0"
        );
        assert_eq!(
            fs.setxattr(&Ctx::root(), f, b"user.a", b"x", 1, false, 101),
            Err(st::EEXIST)
        );
        fs.setxattr(&Ctx::root(), f, b"user.a", b"", 3, false, 101)
            .unwrap();
        fs.setxattr(&Ctx::root(), f, b"user.b", b"", 3, false, 101)
            .unwrap();
        assert_ne!(fs.attr(f, &Ctx::root()).unwrap().flags & MATTR_NOXATTR, 0);
    }

    #[test]
    fn goal_and_trashtime_are_inherited() {
        let mut fs = Fs::new(100);
        let d = mk(&mut fs, ROOT, "d", T::DIRECTORY);
        fs.set_goal(d, 3, 100);
        fs.set_trash(d, 3600, 100);
        let f = mk(&mut fs, d, "f", T::FILE);
        let s = mk(&mut fs, d, "s", T::FIFO);
        assert_eq!(
            (fs.node(f).unwrap().goal, fs.node(f).unwrap().trash_hours),
            (3, 1)
        );
        assert_eq!(fs.node(s).unwrap().goal, DEFAULT_GOAL);
    }
}
