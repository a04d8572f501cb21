//! The master's state as a `MFSM 2.0` metadata image, and back; reading and writing
//! the metadata files in DATA_PATH.
//!
//! Written: sessions, the namespace (nodes, entries, freed inodes, xattrs), open files,
//! chunkservers and chunks (id, version). Kept as read and written back unchanged:
//! quotas, ACLs and user storage classes of a file made by a MooseFS master. Dropped:
//! flock and POSIX locks (their sessions reconnect and take them again).

use crate::chunks::Chunk;
use crate::fs::{Dir, Fs, Kind, Node, DEFAULT_GOAL, ROOT};
use crate::server::{Core, Session};
use antler_protocol::cltoma::node_type as T;
pub use antler_protocol::metadata::MetaError;
use antler_protocol::metadata::{
    ntype, ChunkRec, CsdbRec, EdgeRec, Header, MetaImage, NodeData, NodeRec, SessionRec,
    FIRST_EDGE_ID,
};
use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Sections of a loaded file that Antler does not interpret but writes back.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    /// Raw QUOT body.
    pub quota_raw: Vec<u8>,
    /// Raw PACL records.
    pub acl_raw: Vec<u8>,
    /// User storage classes.
    pub user_sclasses: Vec<(u16, Vec<u8>)>,
}

/// Version and id of a metadata file, from its first and last bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaHeader {
    /// Metadata version (1 for `MFSM NEW`).
    pub version: u64,
    /// Metadata id (0 for `MFSM NEW`).
    pub metaid: u64,
    /// `MFSM NEW`.
    pub new: bool,
}

/// Reads the header of the metadata file at `path` (and checks its EOF marker).
pub fn read_header(path: &Path) -> Result<MetaHeader, MetaError> {
    let io = |e: std::io::Error| MetaError::BadValue {
        what: format!("can't read: {e}"),
        offset: 0,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut head = Vec::with_capacity(24);
    f.by_ref().take(24).read_to_end(&mut head).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut tail = [0u8; 16];
    if len >= 40 {
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(len - 16)).map_err(io)?;
        f.read_exact(&mut tail).map_err(io)?;
    }
    Ok(
        match antler_protocol::metadata::decode_header(&head, &tail)? {
            Header::New => MetaHeader {
                version: 1,
                metaid: 0,
                new: true,
            },
            Header::Dump { version, metaid } => MetaHeader {
                version,
                metaid,
                new: false,
            },
        },
    )
}

fn bad(what: String) -> MetaError {
    MetaError::BadValue { what, offset: 0 }
}

impl Core {
    /// The state as a metadata image (what a dump writes).
    pub fn to_image(&self) -> MetaImage {
        let fs = &self.fs;
        let mut m = MetaImage::empty();
        m.version = self.version;
        m.metaid = self.metaid;
        m.next_session = self.next_session;
        m.sessions = self
            .sessions
            .values()
            .filter(|s| !s.closed)
            .map(|s| SessionRec {
                id: s.id,
                exports_csum: 0,
                peer_ip: s.ip,
                root: s.root,
                sesflags: s.sesflags,
                umask: s.umask,
                mingoal: s.mingoal,
                maxgoal: s.maxgoal,
                mintrash: s.mintrash,
                maxtrash: s.maxtrash,
                rootuid: s.rootuid,
                rootgid: s.rootgid,
                mapalluid: s.mapalluid,
                mapallgid: s.mapallgid,
                disables: s.disables,
                disconnected: if s.conn.is_some() {
                    0
                } else {
                    s.disconnected_at.max(1)
                },
                info: s.info.as_bytes().to_vec(),
            })
            .collect();
        m.user_sclasses = self.kept.user_sclasses.clone();
        m.quota_raw = self.kept.quota_raw.clone();
        m.acl_raw = self.kept.acl_raw.clone();
        m.max_inode = fs.nodes.len().saturating_sub(1) as u32;
        for (i, n) in fs.nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let i = i as u32;
            let t = if fs.trash.contains_key(&i) {
                ntype::TRASH
            } else if fs.detached.contains_key(&i) {
                ntype::SUSTAINED
            } else {
                n.ntype
            };
            let data = match &n.kind {
                Kind::Dir(_) | Kind::Other => NodeData::None,
                Kind::Dev(d) => NodeData::Dev(*d),
                Kind::Symlink(p) => NodeData::Symlink(p.to_vec()),
                Kind::File { length, chunks } => NodeData::File {
                    length: *length,
                    chunks: chunks.clone(),
                },
            };
            m.nodes.push(NodeRec {
                ntype: t,
                inode: i,
                sclass: if matches!(n.ntype, T::FILE | T::DIRECTORY) {
                    n.goal
                } else {
                    0
                },
                eattr: n.eattr,
                winattr: n.winattr,
                mode: n.mode,
                uid: n.uid,
                gid: n.gid,
                atime: n.atime,
                mtime: n.mtime,
                ctime: n.ctime,
                trash_hours: n.trash_hours,
                data,
            });
            if let Some(x) = &n.xattrs {
                for (k, v) in x.iter() {
                    m.xattrs.push((i, k.clone(), v.clone()));
                }
            }
        }
        // Entries directory by directory, each directory's ids increasing, counting down
        // from the first id as MooseFS does.
        let mut next = FIRST_EDGE_ID;
        let mut stack = vec![ROOT];
        while let Some(d) = stack.pop() {
            let Some(Node {
                kind: Kind::Dir(dir),
                ..
            }) = fs.node(d)
            else {
                continue;
            };
            let mut names: Vec<(&Box<[u8]>, &u32)> = dir.entries.iter().collect();
            names.sort();
            let base = next - names.len() as u64;
            for (k, (name, &child)) in names.into_iter().enumerate() {
                m.edges.push(EdgeRec {
                    parent: d,
                    child,
                    edge_id: base + 1 + k as u64,
                    name: name.to_vec(),
                });
                if matches!(
                    fs.node(child),
                    Some(Node {
                        kind: Kind::Dir(_),
                        ..
                    })
                ) {
                    stack.push(child);
                }
            }
            next = base;
        }
        for (&i, path) in &fs.trash {
            m.edges.push(EdgeRec {
                parent: 0,
                child: i,
                edge_id: next,
                name: path.to_vec(),
            });
            next -= 1;
        }
        let mut detached: Vec<(&u32, &Box<[u8]>)> = fs.detached.iter().collect();
        detached.sort_unstable();
        for (&i, path) in detached {
            m.edges.push(EdgeRec {
                parent: 0,
                child: i,
                edge_id: next,
                name: if path.is_empty() {
                    format!("sustained_{i}").into_bytes()
                } else {
                    path.to_vec()
                },
            });
            next -= 1;
        }
        m.next_edge = next;
        m.free = fs.free.iter().copied().collect();
        let mut open: Vec<(u32, u32)> = self
            .open_files
            .iter()
            .filter(|(sid, _)| self.sessions.get(sid).is_some_and(|s| !s.closed))
            .flat_map(|(&sid, set)| set.iter().map(move |&i| (sid, i)))
            .collect();
        open.sort_unstable();
        m.open = open;
        let mut csdb: Vec<CsdbRec> = self
            .csdb
            .iter()
            .map(|(&(ip, port), &csid)| CsdbRec {
                ip,
                port,
                csid: csid as u16,
                maintenance: 0,
                maintenance_timeout: 0,
            })
            .collect();
        csdb.sort_by_key(|c| c.csid);
        m.csdb = csdb;
        m.next_chunk = self.chunks.next_id;
        m.chunks = self
            .chunks
            .map
            .iter()
            .filter(|(_, c)| c.fcount > 0 || c.goal > 0)
            .map(|(&id, c)| ChunkRec {
                id,
                version: c.version,
                lockedto: 0,
                archflag: 0,
            })
            .collect();
        m
    }

    /// Replaces the state with a loaded image. Sessions start disconnected at `now`
    /// (they have SESSION_SUSTAIN_TIME to come back).
    pub fn load_image(&mut self, m: MetaImage, now: u32) -> Result<(), MetaError> {
        let mut fs = Fs::new(now);
        fs.inode_reuse_delay = self.fs.inode_reuse_delay;
        fs.nodes.clear();
        fs.node_count = 0;
        let top = m
            .nodes
            .iter()
            .map(|n| n.inode)
            .chain(m.free.iter().map(|f| f.0))
            .max()
            .unwrap_or(0)
            .max(m.max_inode);
        fs.nodes.resize_with(top as usize + 1, || None);
        let mut special = HashSet::new();
        for n in m.nodes {
            if n.inode == 0 {
                return Err(bad("node with inode 0".into()));
            }
            let (t, kind) = match (n.ntype, n.data) {
                (ntype::DIRECTORY, _) => (T::DIRECTORY, Kind::Dir(Box::<Dir>::default())),
                (ntype::FIFO | ntype::SOCKET, _) => (n.ntype, Kind::Other),
                (ntype::BLOCKDEV | ntype::CHARDEV, NodeData::Dev(d)) => (n.ntype, Kind::Dev(d)),
                (ntype::SYMLINK, NodeData::Symlink(p)) => (T::SYMLINK, Kind::Symlink(p.into())),
                (
                    ntype::FILE | ntype::TRASH | ntype::SUSTAINED,
                    NodeData::File { length, chunks },
                ) => {
                    if n.ntype != ntype::FILE {
                        special.insert((n.inode, n.ntype));
                    }
                    (T::FILE, Kind::File { length, chunks })
                }
                (t, _) => return Err(bad(format!("inode {}: bad node type {t}", n.inode))),
            };
            let goal = if matches!(t, T::FILE | T::DIRECTORY) {
                if !(1..=9).contains(&n.sclass) {
                    return Err(bad(format!(
                        "inode {}: storage class {} is not supported (only goals 1-9)",
                        n.inode, n.sclass
                    )));
                }
                n.sclass
            } else {
                DEFAULT_GOAL
            };
            let slot = &mut fs.nodes[n.inode as usize];
            if slot.is_some() {
                return Err(bad(format!("inode {} stored twice", n.inode)));
            }
            *slot = Some(Node {
                ntype: t,
                mode: n.mode & 0o7777,
                uid: n.uid,
                gid: n.gid,
                atime: n.atime,
                mtime: n.mtime,
                ctime: n.ctime,
                goal,
                trash_hours: n.trash_hours,
                eattr: n.eattr,
                winattr: n.winattr,
                parents: crate::fs::Parents::new(),
                xattrs: None,
                kind,
            });
            fs.node_count += 1;
        }
        if !matches!(
            fs.node(ROOT),
            Some(Node {
                kind: Kind::Dir(_),
                ..
            })
        ) {
            return Err(bad("root node not found".into()));
        }
        for e in m.edges {
            if fs.node(e.child).is_none() {
                return Err(bad(format!(
                    "edge {}/{:?}: child not found",
                    e.parent,
                    String::from_utf8_lossy(&e.name)
                )));
            }
            if e.parent == 0 {
                if special.contains(&(e.child, ntype::TRASH)) {
                    fs.trash.insert(e.child, e.name.into());
                } else if special.contains(&(e.child, ntype::SUSTAINED)) {
                    fs.detached.insert(e.child, e.name.into());
                } else {
                    return Err(bad(format!(
                        "trash edge to inode {} of a wrong type",
                        e.child
                    )));
                }
                continue;
            }
            let child_is_dir = matches!(
                fs.node(e.child),
                Some(Node {
                    kind: Kind::Dir(_),
                    ..
                })
            );
            match fs.nodes.get_mut(e.parent as usize).and_then(|n| n.as_mut()) {
                Some(Node {
                    kind: Kind::Dir(d), ..
                }) => {
                    d.entries.insert(e.name.into(), e.child);
                    if child_is_dir {
                        d.nsubdirs += 1;
                    }
                }
                _ => return Err(bad(format!("edge parent {} is not a directory", e.parent))),
            }
            if let Some(c) = fs.nodes[e.child as usize].as_mut() {
                c.parents.push(e.parent);
            }
        }
        for (ino, name, value) in m.xattrs {
            if let Some(Some(n)) = fs.nodes.get_mut(ino as usize) {
                n.xattrs
                    .get_or_insert_with(Default::default)
                    .insert(name, value);
            }
        }
        fs.free = m.free.into_iter().collect();
        fs.recompute_stats();
        fs.check_links().map_err(bad)?;
        self.fs = fs;
        self.version = m.version;
        self.metaid = m.metaid;
        self.next_session = m.next_session.max(1);
        self.sessions.clear();
        self.open_files.clear();
        for s in m.sessions {
            self.next_session = self.next_session.max(s.id + 1);
            self.sessions.insert(
                s.id,
                Session {
                    id: s.id,
                    root: s.root,
                    sesflags: s.sesflags,
                    umask: s.umask,
                    rootuid: s.rootuid,
                    rootgid: s.rootgid,
                    mapalluid: s.mapalluid,
                    mapallgid: s.mapallgid,
                    mingoal: s.mingoal,
                    maxgoal: s.maxgoal,
                    mintrash: s.mintrash,
                    maxtrash: s.maxtrash,
                    disables: s.disables,
                    ip: s.peer_ip,
                    info: Arc::from(String::from_utf8_lossy(&s.info).as_ref()),
                    conn: None,
                    disconnected_at: now,
                    closed: false,
                },
            );
        }
        for (sid, ino) in m.open {
            if self.sessions.contains_key(&sid)
                && self.fs.node(ino).is_some()
                && self.open_files.entry(sid).or_default().insert(ino)
            {
                self.fs.acquire(ino);
            }
        }
        self.csdb.clear();
        for c in m.csdb {
            self.csdb.insert((c.ip, c.port), c.csid as _);
            self.next_csid = self.next_csid.max(c.csid as crate::chunks::CsId + 1);
        }
        self.chunks.map.clear();
        for c in m.chunks {
            self.chunks.map.insert(c.id, Chunk::restored(c.version, 0));
        }
        self.chunks.next_id = m.next_chunk.max(1);
        self.kept = Kept {
            quota_raw: m.quota_raw,
            acl_raw: m.acl_raw,
            user_sclasses: m.user_sclasses,
        };
        self.rebuild_chunk_refs();
        Ok(())
    }
}

/// `metadata.mfs.back` and its kept predecessors `metadata.mfs.back.1..keep`: shifts
/// them one up (dropping the oldest) so a new `metadata.mfs.back` can take its place.
pub fn shift_backs(dir: &Path, keep: u32) -> std::io::Result<()> {
    crate::changelog::shift_numbered(keep, |n| {
        if n == 0 {
            dir.join("metadata.mfs.back")
        } else {
            dir.join(format!("metadata.mfs.back.{n}"))
        }
    })
}

/// Writes a dump as `metadata.mfs.back` (temp file, fsync, rename, fsync of the
/// directory), keeping `keep` older dumps.
pub fn write_back(dir: &Path, bytes: &[u8], keep: u32) -> std::io::Result<()> {
    let tmp = dir.join("metadata.mfs.back.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    shift_backs(dir, keep)?;
    std::fs::rename(&tmp, dir.join("metadata.mfs.back"))?;
    antler_common::durable::sync_dir(dir)
}

/// Loads the metadata file at `path` into `core` (`MFSM NEW` leaves it empty).
pub fn load_file(core: &mut Core, path: &Path, now: u32) -> Result<(), MetaError> {
    let bytes = std::fs::read(path).map_err(|e| bad(format!("can't read: {e}")))?;
    let m = MetaImage::decode(&bytes)?;
    if bytes.starts_with(antler_protocol::metadata::NEW_SIGNATURE) {
        return Ok(());
    }
    core.load_image(m, now)
}
