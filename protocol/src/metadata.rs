//! The master's metadata file, `MFSM 2.0` as MooseFS 3.0.117 writes it.
//!
//! ```text
//! "MFSM 2.0" version:u64 metaid:u64
//! then sections: name[4] " X.Y" length:u64 body   (length = body bytes)
//!   SESS 1.5  sessions            SCLA 1.6  storage classes   NODE 1.4  inodes
//!   EDGE 1.1  directory entries   FREE 1.0  freed inodes      QUOT 1.1  quotas
//!   XATR 1.0  xattrs              PACL 1.1  POSIX ACLs        OPEN 1.0  open files
//!   FLCK 1.0  flock locks         PLCK 1.0  POSIX locks       CSDB 1.3  chunkservers
//!   CHNK 1.1  chunks
//! "[MFS EOF MARKER]"
//! ```
//! All integers are big-endian. A new file system is the 8 bytes `MFSM NEW`.
//! [`MetaImage`] holds the decoded content; sections we do not interpret (quotas, ACLs,
//! locks, user storage classes) are kept as raw bodies so they can be written back.
//! The layout facts come from reading the 3.0.117 sources and real files
//! (`tests/data/*.mfs`).

use thiserror::Error;

/// Signature of a new, empty file system.
pub const NEW_SIGNATURE: &[u8; 8] = b"MFSM NEW";
/// Signature of a dump.
pub const SIGNATURE: &[u8; 8] = b"MFSM 2.0";
/// Trailer of a dump.
pub const EOF_MARKER: &[u8; 16] = b"[MFS EOF MARKER]";
/// Session statistics counters per session record.
const SESSION_STATS: usize = 16;
/// Size of a session record without its info string.
const SESSION_REC: usize = 61 + SESSION_STATS * 8;
/// Edge id of the first entry ever made (ids count down).
pub const FIRST_EDGE_ID: u64 = 0x7FFF_FFFF_FFFF_FFFE;

/// Node type codes in NODE records: the wire's, plus the two kinds of deleted files.
pub mod ntype {
    pub use crate::cltoma::node_type::*;
    /// A deleted file kept in the trash.
    pub const TRASH: u8 = 8;
    /// A deleted file still open ("sustained").
    pub const SUSTAINED: u8 = 9;
}

/// Why a metadata file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetaError {
    /// Not `MFSM NEW` or `MFSM 2.0`.
    #[error("wrong header {0:?} (expected \"MFSM 2.0\" or \"MFSM NEW\")")]
    BadHeader(String),
    /// The file does not end with `[MFS EOF MARKER]`.
    #[error("wrong ending (no EOF marker) - file truncated?")]
    BadEnding,
    /// The data ended inside a structure.
    #[error("truncated {what} at byte {offset}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where.
        offset: usize,
    },
    /// A section name we do not know.
    #[error("unknown section {name:?} at byte {offset}")]
    UnknownSection {
        /// Its name.
        name: String,
        /// Where.
        offset: usize,
    },
    /// A section version newer than 3.0.117's.
    #[error("section {name} version {major}.{minor} is newer than supported")]
    NewerSection {
        /// Name.
        name: String,
        /// Major digit.
        major: u8,
        /// Minor digit.
        minor: u8,
    },
    /// The section length disagrees with its content.
    #[error("section {name}: length {declared} but {used} bytes were read - file corrupted")]
    BadSectionLength {
        /// Name.
        name: String,
        /// Header value.
        declared: u64,
        /// Actually used.
        used: u64,
    },
    /// A value that cannot be right.
    #[error("{what} at byte {offset}")]
    BadValue {
        /// Description.
        what: String,
        /// Where.
        offset: usize,
    },
}

/// One client session (SESS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionRec {
    /// Id.
    pub id: u32,
    /// Checksum of the export it came from.
    pub exports_csum: u64,
    /// Client address.
    pub peer_ip: u32,
    /// Root inode.
    pub root: u32,
    /// Session flags.
    pub sesflags: u8,
    /// Umask.
    pub umask: u16,
    /// Goal limits.
    pub mingoal: u8,
    /// Goal limits.
    pub maxgoal: u8,
    /// Trash time limits.
    pub mintrash: u32,
    /// Trash time limits.
    pub maxtrash: u32,
    /// maproot uid.
    pub rootuid: u32,
    /// maproot gid.
    pub rootgid: u32,
    /// mapall uid.
    pub mapalluid: u32,
    /// mapall gid.
    pub mapallgid: u32,
    /// Disabled command classes.
    pub disables: u32,
    /// 0 = connected when stored, else the disconnection time.
    pub disconnected: u32,
    /// Mount point.
    pub info: Vec<u8>,
}

/// Type-specific part of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeData {
    /// Directory, FIFO, socket: nothing.
    None,
    /// Device number.
    Dev(u32),
    /// Symlink target.
    Symlink(Vec<u8>),
    /// File (also trash and sustained): length and chunk ids (0 = hole).
    File {
        /// Length.
        length: u64,
        /// Chunk ids by index.
        chunks: Vec<u64>,
    },
}

/// One inode (NODE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRec {
    /// Type ([`ntype`]).
    pub ntype: u8,
    /// Inode.
    pub inode: u32,
    /// Storage class (goal).
    pub sclass: u8,
    /// Extra attributes.
    pub eattr: u8,
    /// Windows attributes.
    pub winattr: u8,
    /// Permission bits.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Times.
    pub atime: u32,
    /// Times.
    pub mtime: u32,
    /// Times.
    pub ctime: u32,
    /// Trash time in hours.
    pub trash_hours: u16,
    /// Type-specific data.
    pub data: NodeData,
}

/// One directory entry (EDGE); parent 0 = trash or sustained entry (name = path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRec {
    /// Parent inode (0 for trash/sustained).
    pub parent: u32,
    /// Child inode.
    pub child: u32,
    /// Edge id (readdir cursor).
    pub edge_id: u64,
    /// Name.
    pub name: Vec<u8>,
}

/// One known chunkserver (CSDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsdbRec {
    /// IPv4 address.
    pub ip: u32,
    /// Port.
    pub port: u16,
    /// Server id.
    pub csid: u16,
    /// Maintenance mode.
    pub maintenance: u8,
    /// Maintenance timeout.
    pub maintenance_timeout: u32,
}

/// One chunk (CHNK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRec {
    /// Id.
    pub id: u64,
    /// Version.
    pub version: u32,
    /// Locked until (0 = not locked).
    pub lockedto: u32,
    /// Archive flag.
    pub archflag: u8,
}

/// The decoded content of a metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetaImage {
    /// Metadata version (the next change's number).
    pub version: u64,
    /// File system id.
    pub metaid: u64,
    /// Next session id.
    pub next_session: u32,
    /// Sessions.
    pub sessions: Vec<SessionRec>,
    /// Raw records of user storage classes (ids 10+), written back unchanged.
    pub user_sclasses: Vec<(u16, Vec<u8>)>,
    /// Highest inode number ever used.
    pub max_inode: u32,
    /// Inodes.
    pub nodes: Vec<NodeRec>,
    /// Next edge id.
    pub next_edge: u64,
    /// Directory entries.
    pub edges: Vec<EdgeRec>,
    /// Freed inodes: (inode, time freed).
    pub free: Vec<(u32, u32)>,
    /// Raw QUOT body (count + records).
    pub quota_raw: Vec<u8>,
    /// Extended attributes: (inode, name, value).
    pub xattrs: Vec<(u32, Vec<u8>, Vec<u8>)>,
    /// Raw PACL body without its terminator.
    pub acl_raw: Vec<u8>,
    /// Open files: (session, inode).
    pub open: Vec<(u32, u32)>,
    /// Raw FLCK records without terminator.
    pub flock_raw: Vec<u8>,
    /// Raw PLCK records without terminator.
    pub plock_raw: Vec<u8>,
    /// Chunkservers.
    pub csdb: Vec<CsdbRec>,
    /// Next chunk id.
    pub next_chunk: u64,
    /// Chunks.
    pub chunks: Vec<ChunkRec>,
}

/// What the first bytes of a metadata file say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// `MFSM NEW`: an empty file system (version 1).
    New,
    /// A dump with this version and id.
    Dump {
        /// Metadata version.
        version: u64,
        /// Metadata id.
        metaid: u64,
    },
}

/// Reads the header of a metadata file from its first 24 and last 16 bytes.
pub fn decode_header(head: &[u8], tail: &[u8]) -> Result<Header, MetaError> {
    if head.len() >= 8 && &head[..8] == NEW_SIGNATURE {
        return Ok(Header::New);
    }
    if head.len() < 8 || &head[..8] != SIGNATURE {
        return Err(MetaError::BadHeader(
            String::from_utf8_lossy(&head[..head.len().min(8)]).into_owned(),
        ));
    }
    if head.len() < 24 {
        return Err(MetaError::Truncated {
            what: "header",
            offset: head.len(),
        });
    }
    if tail != EOF_MARKER {
        return Err(MetaError::BadEnding);
    }
    Ok(Header::Dump {
        version: u64::from_be_bytes(head[8..16].try_into().unwrap_or_default()),
        metaid: u64::from_be_bytes(head[16..24].try_into().unwrap_or_default()),
    })
}

struct R<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> R<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MetaError> {
        if self.b.len() - self.p < n {
            return Err(MetaError::Truncated {
                what,
                offset: self.p,
            });
        }
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    fn u8(&mut self, w: &'static str) -> Result<u8, MetaError> {
        Ok(self.take(1, w)?[0])
    }
    fn u16(&mut self, w: &'static str) -> Result<u16, MetaError> {
        Ok(u16::from_be_bytes(
            self.take(2, w)?.try_into().unwrap_or_default(),
        ))
    }
    fn u32(&mut self, w: &'static str) -> Result<u32, MetaError> {
        Ok(u32::from_be_bytes(
            self.take(4, w)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self, w: &'static str) -> Result<u64, MetaError> {
        Ok(u64::from_be_bytes(
            self.take(8, w)?.try_into().unwrap_or_default(),
        ))
    }
    fn bad(&self, what: impl Into<String>) -> MetaError {
        MetaError::BadValue {
            what: what.into(),
            offset: self.p,
        }
    }
}

/// Section names and the versions 3.0.117 writes, in file order.
const SECTIONS: [(&[u8; 4], u8); 13] = [
    (b"SESS", 0x15),
    (b"SCLA", 0x16),
    (b"NODE", 0x14),
    (b"EDGE", 0x11),
    (b"FREE", 0x10),
    (b"QUOT", 0x11),
    (b"XATR", 0x10),
    (b"PACL", 0x11),
    (b"OPEN", 0x10),
    (b"FLCK", 0x10),
    (b"PLCK", 0x10),
    (b"CSDB", 0x13),
    (b"CHNK", 0x11),
];

impl MetaImage {
    /// An empty file system at version 1 (what `MFSM NEW` stands for), root not included.
    pub fn empty() -> MetaImage {
        MetaImage {
            version: 1,
            next_session: 1,
            next_edge: FIRST_EDGE_ID,
            next_chunk: 1,
            ..MetaImage::default()
        }
    }

    /// Decodes a whole file (`MFSM 2.0`; `MFSM NEW` gives [`MetaImage::empty`]).
    pub fn decode(b: &[u8]) -> Result<MetaImage, MetaError> {
        let tail = if b.len() >= 16 { &b[b.len() - 16..] } else { b };
        let (version, metaid) = match decode_header(b, tail)? {
            Header::New => return Ok(MetaImage::empty()),
            Header::Dump { version, metaid } => (version, metaid),
        };
        let mut m = MetaImage {
            version,
            metaid,
            ..MetaImage::empty()
        };
        let mut r = R { b, p: 24 };
        loop {
            let hdr = r.take(16, "section header")?;
            if hdr == EOF_MARKER {
                break;
            }
            let name: [u8; 4] = hdr[..4].try_into().unwrap_or_default();
            let name_s = String::from_utf8_lossy(&name).into_owned();
            let Some(&(_, max)) = SECTIONS.iter().find(|(n, _)| **n == name) else {
                return Err(MetaError::UnknownSection {
                    name: name_s,
                    offset: r.p - 16,
                });
            };
            let (major, minor) = (hdr[5].wrapping_sub(b'0'), hdr[7].wrapping_sub(b'0'));
            if (major << 4 | (minor & 15)) > max || major > 9 || minor > 9 {
                return Err(MetaError::NewerSection {
                    name: name_s,
                    major,
                    minor,
                });
            }
            let declared = u64::from_be_bytes(hdr[8..16].try_into().unwrap_or_default());
            let start = r.p;
            m.decode_section(&name, &mut r)?;
            let used = (r.p - start) as u64;
            if declared != u64::MAX && declared != used {
                return Err(MetaError::BadSectionLength {
                    name: name_s,
                    declared,
                    used,
                });
            }
        }
        Ok(m)
    }

    fn decode_section(&mut self, name: &[u8; 4], r: &mut R<'_>) -> Result<(), MetaError> {
        match name {
            b"SESS" => {
                self.next_session = r.u32("SESS header")?;
                let nstats = r.u16("SESS header")? as usize;
                loop {
                    let rec = r.take(61 + nstats * 8, "session record")?;
                    let mut x = R { b: rec, p: 0 };
                    let id = x.u32("session")?;
                    if id == 0 {
                        break;
                    }
                    let exports_csum = x.u64("session")?;
                    let ileng = x.u32("session")? as usize;
                    let mut s = SessionRec {
                        id,
                        exports_csum,
                        peer_ip: x.u32("session")?,
                        root: x.u32("session")?,
                        sesflags: x.u8("session")?,
                        umask: x.u16("session")?,
                        mingoal: x.u8("session")?,
                        maxgoal: x.u8("session")?,
                        mintrash: x.u32("session")?,
                        maxtrash: x.u32("session")?,
                        rootuid: x.u32("session")?,
                        rootgid: x.u32("session")?,
                        mapalluid: x.u32("session")?,
                        mapallgid: x.u32("session")?,
                        disables: x.u32("session")?,
                        disconnected: x.u32("session")?,
                        info: Vec::new(),
                    };
                    s.info = r.take(ileng, "session info")?.to_vec();
                    self.sessions.push(s);
                }
            }
            b"SCLA" => {
                let org = r.u8("SCLA header")? as usize;
                loop {
                    let start = r.p;
                    let id = r.u16("storage class")?;
                    let nleng = r.u8("storage class")? as usize;
                    r.take(2, "storage class")?;
                    let delay = r.u16("storage class")?;
                    let (c, k, a) = (
                        r.u8("storage class")? as usize,
                        r.u8("storage class")? as usize,
                        r.u8("storage class")? as usize,
                    );
                    r.take(nleng, "storage class name")?;
                    if id == 0 && c == 0 && k == 0 && a == 0 && delay == 0 {
                        break;
                    }
                    r.take(4 * org * (c + k + a), "storage class labels")?;
                    if id >= 10 {
                        self.user_sclasses.push((id, r.b[start..r.p].to_vec()));
                    }
                }
            }
            b"NODE" => {
                self.max_inode = r.u32("NODE header")?;
                let _count = r.u32("NODE header")?;
                loop {
                    let t = r.u8("node")?;
                    if t == 0 {
                        break;
                    }
                    let mut n = NodeRec {
                        ntype: t,
                        inode: r.u32("node")?,
                        sclass: r.u8("node")?,
                        eattr: r.u8("node")?,
                        winattr: r.u8("node")?,
                        mode: r.u16("node")?,
                        uid: r.u32("node")?,
                        gid: r.u32("node")?,
                        atime: r.u32("node")?,
                        mtime: r.u32("node")?,
                        ctime: r.u32("node")?,
                        trash_hours: r.u16("node")?,
                        data: NodeData::None,
                    };
                    n.data = match t {
                        ntype::DIRECTORY | ntype::FIFO | ntype::SOCKET => NodeData::None,
                        ntype::BLOCKDEV | ntype::CHARDEV => NodeData::Dev(r.u32("node rdev")?),
                        ntype::SYMLINK => {
                            let l = r.u32("symlink")? as usize;
                            NodeData::Symlink(r.take(l, "symlink path")?.to_vec())
                        }
                        ntype::FILE | ntype::TRASH | ntype::SUSTAINED => {
                            let length = r.u64("file length")?;
                            let n = r.u32("file chunk count")? as usize;
                            let raw = r.take(
                                n.checked_mul(8).ok_or_else(|| r.bad("chunk count"))?,
                                "file chunks",
                            )?;
                            let mut chunks: Vec<u64> = raw
                                .chunks_exact(8)
                                .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
                                .collect();
                            while chunks.last() == Some(&0) {
                                chunks.pop();
                            }
                            NodeData::File { length, chunks }
                        }
                        other => return Err(r.bad(format!("node type {other}"))),
                    };
                    self.nodes.push(n);
                }
            }
            b"EDGE" => {
                self.next_edge = r.u64("EDGE header")?;
                loop {
                    let parent = r.u32("edge")?;
                    let child = r.u32("edge")?;
                    let edge_id = r.u64("edge")?;
                    let nleng = r.u16("edge")? as usize;
                    let name = r.take(nleng, "edge name")?.to_vec();
                    if parent == 0 && child == 0 {
                        break;
                    }
                    if nleng == 0 {
                        return Err(r.bad(format!("empty name for inode {child}")));
                    }
                    self.edges.push(EdgeRec {
                        parent,
                        child,
                        edge_id,
                        name,
                    });
                }
            }
            b"FREE" => {
                let n = r.u32("FREE header")?;
                for _ in 0..n {
                    self.free.push((r.u32("free inode")?, r.u32("free inode")?));
                }
            }
            b"QUOT" => {
                let start = r.p;
                let n = r.u32("QUOT header")? as usize;
                r.take(
                    n.checked_mul(70).ok_or_else(|| r.bad("quota count"))?,
                    "quota",
                )?;
                self.quota_raw = if n == 0 {
                    Vec::new()
                } else {
                    r.b[start..r.p].to_vec()
                };
            }
            b"XATR" => loop {
                let ino = r.u32("xattr")?;
                let nl = r.u8("xattr")? as usize;
                let vl = r.u32("xattr")? as usize;
                if ino == 0 {
                    break;
                }
                if nl == 0 || vl > 65536 {
                    return Err(r.bad("xattr name or value length"));
                }
                let name = r.take(nl, "xattr name")?.to_vec();
                let value = r.take(vl, "xattr value")?.to_vec();
                self.xattrs.push((ino, name, value));
            },
            b"PACL" => {
                let start = r.p;
                loop {
                    let rec_start = r.p;
                    let h = r.take(17, "acl")?;
                    if h[..4] == [0; 4] {
                        self.acl_raw = r.b[start..rec_start].to_vec();
                        break;
                    }
                    let nu = u16::from_be_bytes([h[13], h[14]]) as usize;
                    let ng = u16::from_be_bytes([h[15], h[16]]) as usize;
                    r.take((nu + ng) * 6, "acl entries")?;
                }
            }
            b"OPEN" => loop {
                let s = r.u32("open file")?;
                let i = r.u32("open file")?;
                if s == 0 && i == 0 {
                    break;
                }
                if s == 0 || i == 0 {
                    return Err(r.bad("open file record with a zero field"));
                }
                self.open.push((s, i));
            },
            b"FLCK" => self.flock_raw = raw_records(r, 17, "flock")?,
            b"PLCK" => self.plock_raw = raw_records(r, 37, "posix lock")?,
            b"CSDB" => {
                let n = r.u32("CSDB header")?;
                for _ in 0..n {
                    self.csdb.push(CsdbRec {
                        ip: r.u32("chunkserver")?,
                        port: r.u16("chunkserver")?,
                        csid: r.u16("chunkserver")?,
                        maintenance: r.u8("chunkserver")?,
                        maintenance_timeout: r.u32("chunkserver")?,
                    });
                }
            }
            b"CHNK" => {
                self.next_chunk = r.u64("CHNK header")?;
                loop {
                    let c = ChunkRec {
                        id: r.u64("chunk")?,
                        version: r.u32("chunk")?,
                        lockedto: r.u32("chunk")?,
                        archflag: r.u8("chunk")?,
                    };
                    if c.id == 0 {
                        if c.version != 0 || c.lockedto != 0 || c.archflag != 0 {
                            return Err(r.bad("chunk id 0"));
                        }
                        break;
                    }
                    self.chunks.push(c);
                }
            }
            _ => unreachable!("section list checked by the caller"),
        }
        Ok(())
    }

    /// Encodes the image as `MFSM 2.0`, sections in 3.0.117's order with exact lengths.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096 + self.nodes.len() * 64 + self.edges.len() * 40);
        out.extend_from_slice(SIGNATURE);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.metaid.to_be_bytes());
        for (name, ver) in SECTIONS {
            let at = out.len();
            out.extend_from_slice(name);
            out.extend_from_slice(&[b' ', b'0' + (ver >> 4), b'.', b'0' + (ver & 15)]);
            out.extend_from_slice(&[0; 8]);
            self.encode_section(name, &mut out);
            let len = (out.len() - at - 16) as u64;
            out[at + 8..at + 16].copy_from_slice(&len.to_be_bytes());
        }
        out.extend_from_slice(EOF_MARKER);
        out
    }

    fn encode_section(&self, name: &[u8; 4], o: &mut Vec<u8>) {
        let u16b = |o: &mut Vec<u8>, v: u16| o.extend_from_slice(&v.to_be_bytes());
        let u32b = |o: &mut Vec<u8>, v: u32| o.extend_from_slice(&v.to_be_bytes());
        let u64b = |o: &mut Vec<u8>, v: u64| o.extend_from_slice(&v.to_be_bytes());
        match name {
            b"SESS" => {
                u32b(o, self.next_session);
                u16b(o, SESSION_STATS as u16);
                for s in &self.sessions {
                    u32b(o, s.id);
                    u64b(o, s.exports_csum);
                    u32b(o, s.info.len() as u32);
                    u32b(o, s.peer_ip);
                    u32b(o, s.root);
                    o.push(s.sesflags);
                    u16b(o, s.umask);
                    o.push(s.mingoal);
                    o.push(s.maxgoal);
                    for v in [
                        s.mintrash,
                        s.maxtrash,
                        s.rootuid,
                        s.rootgid,
                        s.mapalluid,
                        s.mapallgid,
                        s.disables,
                        s.disconnected,
                    ] {
                        u32b(o, v);
                    }
                    o.extend_from_slice(&[0; SESSION_STATS * 8]);
                    o.extend_from_slice(&s.info);
                }
                o.extend_from_slice(&[0; SESSION_REC]);
            }
            b"SCLA" => {
                o.push(4);
                for i in 1..=9u8 {
                    u16b(o, i as u16);
                    o.extend_from_slice(&[1, 0, 1, 0, 0, i, i, i, b'0' + i]);
                    o.extend(std::iter::repeat_n(0, 3 * 16 * i as usize));
                }
                for (_, raw) in &self.user_sclasses {
                    o.extend_from_slice(raw);
                }
                o.extend_from_slice(&[0; 10]);
            }
            b"NODE" => {
                u32b(o, self.max_inode);
                u32b(o, self.nodes.len() as u32);
                for n in &self.nodes {
                    o.push(n.ntype);
                    u32b(o, n.inode);
                    o.extend_from_slice(&[n.sclass, n.eattr, n.winattr]);
                    u16b(o, n.mode);
                    for v in [n.uid, n.gid, n.atime, n.mtime, n.ctime] {
                        u32b(o, v);
                    }
                    u16b(o, n.trash_hours);
                    match &n.data {
                        NodeData::None => {}
                        NodeData::Dev(d) => u32b(o, *d),
                        NodeData::Symlink(p) => {
                            u32b(o, p.len() as u32);
                            o.extend_from_slice(p);
                        }
                        NodeData::File { length, chunks } => {
                            u64b(o, *length);
                            let used = chunks.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                            u32b(o, used as u32);
                            for &c in &chunks[..used] {
                                u64b(o, c);
                            }
                        }
                    }
                }
                o.push(0);
            }
            b"EDGE" => {
                u64b(o, self.next_edge);
                for e in &self.edges {
                    u32b(o, e.parent);
                    u32b(o, e.child);
                    u64b(o, e.edge_id);
                    u16b(o, e.name.len() as u16);
                    o.extend_from_slice(&e.name);
                }
                o.extend_from_slice(&[0; 18]);
            }
            b"FREE" => {
                u32b(o, self.free.len() as u32);
                for &(i, t) in &self.free {
                    u32b(o, i);
                    u32b(o, t);
                }
            }
            b"QUOT" => {
                if self.quota_raw.is_empty() {
                    u32b(o, 0);
                } else {
                    o.extend_from_slice(&self.quota_raw);
                }
            }
            b"XATR" => {
                for (i, n, v) in &self.xattrs {
                    u32b(o, *i);
                    o.push(n.len() as u8);
                    u32b(o, v.len() as u32);
                    o.extend_from_slice(n);
                    o.extend_from_slice(v);
                }
                o.extend_from_slice(&[0; 9]);
            }
            b"PACL" => {
                o.extend_from_slice(&self.acl_raw);
                o.extend_from_slice(&[0; 17]);
            }
            b"OPEN" => {
                for &(s, i) in &self.open {
                    u32b(o, s);
                    u32b(o, i);
                }
                o.extend_from_slice(&[0; 8]);
            }
            b"FLCK" => {
                o.extend_from_slice(&self.flock_raw);
                o.extend_from_slice(&[0; 17]);
            }
            b"PLCK" => {
                o.extend_from_slice(&self.plock_raw);
                o.extend_from_slice(&[0; 37]);
            }
            b"CSDB" => {
                u32b(o, self.csdb.len() as u32);
                for c in &self.csdb {
                    u32b(o, c.ip);
                    u16b(o, c.port);
                    u16b(o, c.csid);
                    o.push(c.maintenance);
                    u32b(o, c.maintenance_timeout);
                }
            }
            b"CHNK" => {
                u64b(o, self.next_chunk);
                for c in &self.chunks {
                    u64b(o, c.id);
                    u32b(o, c.version);
                    u32b(o, c.lockedto);
                    o.push(c.archflag);
                }
                o.extend_from_slice(&[0; 17]);
            }
            _ => {}
        }
    }
}

/// Fixed-size records up to an all-zero terminator; returns the records' bytes.
fn raw_records(r: &mut R<'_>, size: usize, what: &'static str) -> Result<Vec<u8>, MetaError> {
    let start = r.p;
    loop {
        let at = r.p;
        let rec = r.take(size, what)?;
        if rec.iter().all(|&c| c == 0) {
            return Ok(r.b[start..at].to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn minimal_image_is_2905_bytes_like_the_real_empty_file() {
        let mut m = MetaImage::empty();
        m.nodes.push(NodeRec {
            ntype: ntype::DIRECTORY,
            inode: 1,
            sclass: 2,
            eattr: 0,
            winattr: 0,
            mode: 0o777,
            uid: 0,
            gid: 0,
            atime: 5,
            mtime: 5,
            ctime: 5,
            trash_hours: 24,
            data: NodeData::None,
        });
        m.max_inode = 1;
        let b = m.encode();
        assert_eq!(b.len(), 2905);
        assert_eq!(MetaImage::decode(&b).unwrap(), m);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let mut m = MetaImage::empty();
        m.max_inode = 1;
        let b = m.encode();
        assert!(matches!(
            MetaImage::decode(&b[..b.len() - 1]),
            Err(MetaError::BadEnding)
        ));
        assert!(matches!(
            MetaImage::decode(b"MFSM 9.9xxxxxxxxxxxxxxxxxxxxxxx"),
            Err(MetaError::BadHeader(_))
        ));
        // A section length one byte off.
        let mut c = b.clone();
        let len_at = 24 + 8;
        c[len_at + 7] ^= 1;
        assert!(matches!(
            MetaImage::decode(&c),
            Err(MetaError::BadSectionLength { .. })
        ));
        // An unknown section name.
        let mut c = b.clone();
        c[24..28].copy_from_slice(b"ABCD");
        assert!(matches!(
            MetaImage::decode(&c),
            Err(MetaError::UnknownSection { .. })
        ));
        assert_eq!(
            MetaImage::decode(NEW_SIGNATURE).unwrap(),
            MetaImage::empty()
        );
    }

    fn node() -> impl Strategy<Value = NodeRec> {
        (
            1u8..=9,
            1u32..1_000_000,
            any::<(u8, u8, u16, u32, u32, u32, u32, u32, u16)>(),
            proptest::collection::vec(any::<u64>(), 0..5),
            proptest::collection::vec(any::<u8>(), 0..20),
        )
            .prop_map(
                |(t, inode, (sc, ea, mode, uid, gid, a, m, c, th), mut ch, p)| {
                    let data = match t {
                        ntype::FILE | ntype::TRASH | ntype::SUSTAINED => {
                            while ch.last() == Some(&0) {
                                ch.pop();
                            }
                            NodeData::File {
                                length: a as u64 * 3,
                                chunks: ch,
                            }
                        }
                        ntype::SYMLINK => NodeData::Symlink(p),
                        ntype::BLOCKDEV | ntype::CHARDEV => NodeData::Dev(uid ^ gid),
                        _ => NodeData::None,
                    };
                    NodeRec {
                        ntype: t,
                        inode,
                        sclass: sc,
                        eattr: ea,
                        winattr: 0,
                        mode: mode & 0o7777,
                        uid,
                        gid,
                        atime: a,
                        mtime: m,
                        ctime: c,
                        trash_hours: th,
                        data,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn images_round_trip(
            nodes in proptest::collection::vec(node(), 0..20),
            names in proptest::collection::vec(proptest::collection::vec(1u8..255, 1..30), 0..20),
            free in proptest::collection::vec(any::<(u32, u32)>(), 0..5),
            xattrs in proptest::collection::vec((1u32.., proptest::collection::vec(any::<u8>(), 1..20), proptest::collection::vec(any::<u8>(), 0..40)), 0..5),
            open in proptest::collection::vec((1u32.., 1u32..), 0..5),
            chunks in proptest::collection::vec((1u64.., any::<u32>(), any::<u32>()), 0..10),
            ver: u64, id: u64,
        ) {
            let mut m = MetaImage::empty();
            m.version = ver;
            m.metaid = id;
            m.max_inode = nodes.iter().map(|n| n.inode).max().unwrap_or(1);
            m.edges = names.into_iter().enumerate().map(|(i, name)| EdgeRec {
                parent: 1 + i as u32, child: 2 + i as u32, edge_id: FIRST_EDGE_ID - i as u64, name,
            }).collect();
            m.nodes = nodes;
            m.free = free;
            m.xattrs = xattrs;
            m.open = open;
            m.sessions = vec![SessionRec { id: 3, info: b"/mnt/x".to_vec(), maxgoal: 9, ..SessionRec::default() }];
            m.next_session = 4;
            m.chunks = chunks.into_iter().map(|(id, version, lockedto)| ChunkRec { id, version, lockedto, archflag: 0 }).collect();
            let b = m.encode();
            prop_assert_eq!(MetaImage::decode(&b).unwrap(), m);
        }

        #[test]
        fn decode_never_panics(mut b in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..3000) {
            let _ = MetaImage::decode(&b);
            let mut m = MetaImage::empty();
            m.max_inode = 1;
            let mut e = m.encode();
            if cut < e.len() { e.truncate(cut); }
            e.append(&mut b);
            let _ = MetaImage::decode(&e);
        }
    }
}
