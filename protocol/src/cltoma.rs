//! Client ↔ master messages (MooseFS 3.0.117 `mfsmount` and the mfs tools), both
//! directions.
//!
//! Requests are decoded into [`ClRequest`]; almost every request starts with a `msgid`
//! that the master copies into its answer. Layouts are documented per variant and in
//! `docs/notes/moosefs-master-client-protocol.md`. Where MooseFS tells request forms
//! apart by length (the credential list `uid gcnt gids…` against the older
//! `uid gid`), the decoders do the same.
//!
//! Answers are built with [`Reply`], which fixes the frame length when finished, and
//! [`Attr`], the 36-byte attribute record.

use crate::frame::{DecodeError, Reader};

/// Largest payload a master accepts from a client.
pub const CLTOMA_MAXPACKETSIZE: u32 = 50_000_000;

/// Register (all register forms).
pub const CLTOMA_FUSE_REGISTER: u32 = 400;
/// Answer to [`CLTOMA_FUSE_REGISTER`].
pub const MATOCL_FUSE_REGISTER: u32 = 401;
/// statfs.
pub const CLTOMA_FUSE_STATFS: u32 = 402;
/// access.
pub const CLTOMA_FUSE_ACCESS: u32 = 404;
/// lookup.
pub const CLTOMA_FUSE_LOOKUP: u32 = 406;
/// getattr.
pub const CLTOMA_FUSE_GETATTR: u32 = 408;
/// setattr.
pub const CLTOMA_FUSE_SETATTR: u32 = 410;
/// readlink.
pub const CLTOMA_FUSE_READLINK: u32 = 412;
/// symlink.
pub const CLTOMA_FUSE_SYMLINK: u32 = 414;
/// mknod.
pub const CLTOMA_FUSE_MKNOD: u32 = 416;
/// mkdir.
pub const CLTOMA_FUSE_MKDIR: u32 = 418;
/// unlink.
pub const CLTOMA_FUSE_UNLINK: u32 = 420;
/// rmdir.
pub const CLTOMA_FUSE_RMDIR: u32 = 422;
/// rename.
pub const CLTOMA_FUSE_RENAME: u32 = 424;
/// link.
pub const CLTOMA_FUSE_LINK: u32 = 426;
/// readdir.
pub const CLTOMA_FUSE_READDIR: u32 = 428;
/// open.
pub const CLTOMA_FUSE_OPEN: u32 = 430;
/// Chunk locations for reading.
pub const CLTOMA_FUSE_READ_CHUNK: u32 = 432;
/// Chunk locations (and lock) for writing.
pub const CLTOMA_FUSE_WRITE_CHUNK: u32 = 434;
/// End of a chunk write (final length, unlock).
pub const CLTOMA_FUSE_WRITE_CHUNK_END: u32 = 436;
/// mfsappendchunks: append a slice of one file's chunks to another.
pub const CLTOMA_FUSE_APPEND_SLICE: u32 = 438;
/// mfsfileinfo / mfscheckfile.
pub const CLTOMA_FUSE_CHECK: u32 = 440;
/// mfsgettrashtime.
pub const CLTOMA_FUSE_GETTRASHTIME: u32 = 442;
/// mfssettrashtime.
pub const CLTOMA_FUSE_SETTRASHTIME: u32 = 444;
/// mfsgetgoal (storage class).
pub const CLTOMA_FUSE_GETSCLASS: u32 = 446;
/// mfssetgoal (storage class).
pub const CLTOMA_FUSE_SETSCLASS: u32 = 448;
/// Meta mount: list a trash bucket (or all of them).
pub const CLTOMA_FUSE_GETTRASH: u32 = 450;
/// Meta mount: attributes of a trash or sustained node.
pub const CLTOMA_FUSE_GETDETACHEDATTR: u32 = 452;
/// Meta mount: the path a trash entry is restored to.
pub const CLTOMA_FUSE_GETTRASHPATH: u32 = 454;
/// Meta mount: change the path a trash entry is restored to.
pub const CLTOMA_FUSE_SETTRASHPATH: u32 = 456;
/// Meta mount: restore a trash entry (undelete).
pub const CLTOMA_FUSE_UNDEL: u32 = 458;
/// Meta mount: remove a trash entry for good.
pub const CLTOMA_FUSE_PURGE: u32 = 460;
/// mfsdirinfo.
pub const CLTOMA_FUSE_GETDIRSTATS: u32 = 462;
/// truncate.
pub const CLTOMA_FUSE_TRUNCATE: u32 = 464;
/// mfsmakesnapshot.
pub const CLTOMA_FUSE_SNAPSHOT: u32 = 468;
/// Meta mount: list the sustained (deleted but still open) files.
pub const CLTOMA_FUSE_GETSUSTAINED: u32 = 470;
/// mfsgeteattr.
pub const CLTOMA_FUSE_GETEATTR: u32 = 472;
/// mfsseteattr.
pub const CLTOMA_FUSE_SETEATTR: u32 = 474;
/// getxattr / listxattr.
pub const CLTOMA_FUSE_GETXATTR: u32 = 478;
/// setxattr / removexattr.
pub const CLTOMA_FUSE_SETXATTR: u32 = 480;
/// create.
pub const CLTOMA_FUSE_CREATE: u32 = 482;
/// POSIX ACL get.
pub const CLTOMA_FUSE_GETFACL: u32 = 488;
/// POSIX ACL set.
pub const CLTOMA_FUSE_SETFACL: u32 = 490;
/// flock.
pub const CLTOMA_FUSE_FLOCK: u32 = 492;
/// fcntl locks.
pub const CLTOMA_FUSE_POSIX_LOCK: u32 = 494;
/// The client's open inodes (full replacement, no msgid, no answer).
pub const CLTOMA_FUSE_SUSTAINED_INODES: u32 = 700;
/// Deferred atime/mtime updates (no msgid, no answer).
pub const CLTOMA_FUSE_AMTIME_INODES: u32 = 701;
/// Push: a chunk of an open file changed.
pub const MATOCL_FUSE_CHUNK_HAS_CHANGED: u32 = 702;
/// Push: the length of an open file changed.
pub const MATOCL_FUSE_FLENG_HAS_CHANGED: u32 = 703;
/// Wall-clock query.
pub const CLTOMA_FUSE_TIME_SYNC: u32 = 704;
/// Answer to [`CLTOMA_FUSE_TIME_SYNC`].
pub const MATOCL_FUSE_TIME_SYNC: u32 = 705;
/// Push: drop every cached chunk location.
pub const MATOCL_FUSE_INVALIDATE_CHUNK_CACHE: u32 = 706;
/// Config value query.
pub const ANTOAN_GET_CONFIG: u32 = 80;
/// Answer to [`ANTOAN_GET_CONFIG`].
pub const ANTOAN_CONFIG_VALUE: u32 = 81;

/// The only register blob a 3.0.117 master accepts.
pub const REGISTER_BLOB_ACL: &[u8; 64] =
    b"DjI1GAQDULI5d2YjA26ypc3ovkhjvhciTQVx3CS4nYgtBoUcsljiVpsErJENHaw0";

/// Node types as they appear on the wire.
pub mod node_type {
    /// Regular file.
    pub const FILE: u8 = 1;
    /// Directory.
    pub const DIRECTORY: u8 = 2;
    /// Symbolic link.
    pub const SYMLINK: u8 = 3;
    /// Named pipe.
    pub const FIFO: u8 = 4;
    /// Block device.
    pub const BLOCKDEV: u8 = 5;
    /// Character device.
    pub const CHARDEV: u8 = 6;
    /// Unix socket.
    pub const SOCKET: u8 = 7;
}

/// Caller identity carried by most requests (before any maproot/mapall remapping).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Creds {
    /// User id.
    pub uid: u32,
    /// Primary group first, then supplementary groups; may be empty.
    pub gids: Vec<u32>,
}

/// The register request, by `rcode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Register {
    /// rcode 1: ask for the 32-byte password challenge.
    GetRandom,
    /// rcode 2: a normal mount (or its re-registration with an old session id).
    NewSession {
        /// Client version.
        version: u32,
        /// Mount point (display only).
        info: Vec<u8>,
        /// Requested subfolder, without the trailing NUL.
        path: Vec<u8>,
        /// Session to reuse.
        sessionid: Option<u32>,
        /// Metadata id the reused session belongs to.
        metaid: Option<u64>,
        /// Password answer.
        passcode: Option<[u8; 16]>,
    },
    /// rcode 3: reconnect to an existing session.
    Reconnect {
        /// Session id.
        sessionid: u32,
        /// Client version.
        version: u32,
        /// Metadata id, when the client knows it.
        metaid: Option<u64>,
    },
    /// rcode 4: a tools connection attached to a session.
    Tools {
        /// Session id.
        sessionid: u32,
        /// Tool version.
        version: u32,
        /// Metadata id.
        metaid: Option<u64>,
    },
    /// rcode 5: a meta mount (`mfsmount -m`).
    NewMetaSession {
        /// Client version.
        version: u32,
        /// Mount point (display only).
        info: Vec<u8>,
        /// Session to reuse.
        sessionid: Option<u32>,
        /// Metadata id.
        metaid: Option<u64>,
        /// Password answer.
        passcode: Option<[u8; 16]>,
    },
    /// rcode 6: clean unmount.
    CloseSession {
        /// Session id.
        sessionid: u32,
        /// Metadata id.
        metaid: Option<u64>,
    },
}

/// SETATTR fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetAttr {
    /// Which fields to set (`SET_*` bits below).
    pub setmask: u8,
    /// New mode (12 bits).
    pub mode: u16,
    /// New owner.
    pub uid: u32,
    /// New group.
    pub gid: u32,
    /// New atime.
    pub atime: u32,
    /// New mtime.
    pub mtime: u32,
    /// Windows attributes.
    pub winattr: u8,
    /// How to clear suid/sgid on chown (0 never .. 5 XFS).
    pub sugidclearmode: u8,
}

/// setmask bit: winattr.
pub const SET_WINATTR: u8 = 0x01;
/// setmask bit: mode.
pub const SET_MODE: u8 = 0x02;
/// setmask bit: uid.
pub const SET_UID: u8 = 0x04;
/// setmask bit: gid.
pub const SET_GID: u8 = 0x08;
/// setmask bit: mtime = now.
pub const SET_MTIME_NOW: u8 = 0x10;
/// setmask bit: mtime.
pub const SET_MTIME: u8 = 0x20;
/// setmask bit: atime.
pub const SET_ATIME: u8 = 0x40;
/// setmask bit: atime = now.
pub const SET_ATIME_NOW: u8 = 0x80;

/// A decoded client request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // field names follow the MooseFS layouts documented per variant
pub enum ClRequest {
    /// Keep-alive (also ignores UNKNOWN_COMMAND / BAD_COMMAND_SIZE from the client).
    Nop,
    /// `[msgid]`.
    GetVersion { msgid: Option<u32> },
    /// `msgid NAME`.
    GetConfig { msgid: u32, name: Vec<u8> },
    /// `blob:64 rcode:8 …`.
    Register(Register),
    /// `msgid`.
    Statfs { msgid: u32 },
    /// `msgid src dstparent NAME creds smode [umask:16]` (mfsmakesnapshot).
    Snapshot {
        msgid: u32,
        src: u32,
        dst_parent: u32,
        name: Vec<u8>,
        creds: Creds,
        smode: u8,
        /// `None` from clients too old to send it (then copies take no umask).
        umask: Option<u16>,
    },
    /// `msgid [flags] dst src [from to] creds` (mfsappendchunks); flags 1 and 2 make
    /// `from` / `to` count back from the source's end.
    AppendSlice {
        msgid: u32,
        flags: u8,
        dst: u32,
        src: u32,
        from: u32,
        to: u32,
        creds: Creds,
    },
    /// Meta: `msgid [bucket]`; `None` (old clients) or a bucket ≥ 4096 lists every bucket.
    GetTrash { msgid: u32, bucket: Option<u32> },
    /// Meta: `msgid inode [dtype]` (0 any, 1 trash, 2 sustained).
    GetDetachedAttr { msgid: u32, inode: u32, dtype: u8 },
    /// Meta: `msgid inode`.
    GetTrashPath { msgid: u32, inode: u32 },
    /// Meta: `msgid inode plen:32 path` (trailing NULs stripped).
    SetTrashPath {
        msgid: u32,
        inode: u32,
        path: Vec<u8>,
    },
    /// Meta: `msgid inode`.
    Undel { msgid: u32, inode: u32 },
    /// Meta: `msgid inode`.
    Purge { msgid: u32, inode: u32 },
    /// Meta: `msgid`.
    GetSustained { msgid: u32 },
    /// `msgid inode creds modemask:16` (old: `… uid gid modemask:8`).
    Access {
        msgid: u32,
        inode: u32,
        creds: Creds,
        mask: u16,
    },
    /// `msgid parent NAME creds`.
    Lookup {
        msgid: u32,
        parent: u32,
        name: Vec<u8>,
        creds: Creds,
    },
    /// `msgid inode [opened:8] [uid gid]`.
    Getattr {
        msgid: u32,
        inode: u32,
        opened: bool,
        uid: u32,
        gid: u32,
    },
    /// `msgid inode opened:8 creds setmask mode uid gid atime mtime winattr sugidclearmode`.
    Setattr {
        msgid: u32,
        inode: u32,
        opened: bool,
        creds: Creds,
        attr: SetAttr,
    },
    /// `msgid inode`.
    Readlink { msgid: u32, inode: u32 },
    /// `msgid parent NAME pleng:32 path creds`.
    Symlink {
        msgid: u32,
        parent: u32,
        name: Vec<u8>,
        target: Vec<u8>,
        creds: Creds,
    },
    /// `msgid parent NAME type:8 mode:16 umask:16 creds rdev:32`.
    Mknod {
        msgid: u32,
        parent: u32,
        name: Vec<u8>,
        ntype: u8,
        mode: u16,
        umask: u16,
        creds: Creds,
        rdev: u32,
    },
    /// `msgid parent NAME mode:16 umask:16 creds copysgid:8`.
    Mkdir {
        msgid: u32,
        parent: u32,
        name: Vec<u8>,
        mode: u16,
        umask: u16,
        creds: Creds,
        copysgid: bool,
    },
    /// `msgid parent NAME creds`.
    Unlink {
        msgid: u32,
        parent: u32,
        name: Vec<u8>,
        creds: Creds,
    },
    /// `msgid parent NAME creds`.
    Rmdir {
        msgid: u32,
        parent: u32,
        name: Vec<u8>,
        creds: Creds,
    },
    /// `msgid parent_src NAME_src parent_dst NAME_dst creds`.
    Rename {
        msgid: u32,
        src_parent: u32,
        src_name: Vec<u8>,
        dst_parent: u32,
        dst_name: Vec<u8>,
        creds: Creds,
    },
    /// `msgid inode parent_dst NAME_dst creds`.
    Link {
        msgid: u32,
        inode: u32,
        dst_parent: u32,
        dst_name: Vec<u8>,
        creds: Creds,
    },
    /// `msgid inode creds flags:8 maxentries:32 nedgeid:64`.
    Readdir {
        msgid: u32,
        inode: u32,
        creds: Creds,
        flags: u8,
        maxentries: u32,
        nedgeid: u64,
    },
    /// `msgid inode creds flags:8`.
    Open {
        msgid: u32,
        inode: u32,
        creds: Creds,
        flags: u8,
    },
    /// `msgid parent NAME mode:16 umask:16 creds`.
    Create {
        msgid: u32,
        parent: u32,
        name: Vec<u8>,
        mode: u16,
        umask: u16,
        creds: Creds,
    },
    /// `msgid inode chunkindx [chunkopflags:8]`.
    ReadChunk {
        msgid: u32,
        inode: u32,
        index: u32,
        flags: u8,
    },
    /// `msgid inode chunkindx chunkopflags:8`.
    WriteChunk {
        msgid: u32,
        inode: u32,
        index: u32,
        flags: u8,
    },
    /// `msgid chunkid:64 inode chunkindx length:64 chunkopflags:8`.
    WriteChunkEnd {
        msgid: u32,
        chunkid: u64,
        inode: u32,
        index: u32,
        length: u64,
        flags: u8,
    },
    /// `msgid inode flags:8 creds length:64`.
    Truncate {
        msgid: u32,
        inode: u32,
        flags: u8,
        creds: Creds,
        length: u64,
    },
    /// `msgid inode NAME8 mode:8 opened:8 creds` (listxattr when the name is empty).
    Getxattr {
        msgid: u32,
        inode: u32,
        name: Vec<u8>,
        mode: u8,
        opened: bool,
        creds: Creds,
    },
    /// `msgid inode NAME8 vleng:32 value mode:8 opened:8 creds`.
    Setxattr {
        msgid: u32,
        inode: u32,
        name: Vec<u8>,
        value: Vec<u8>,
        mode: u8,
        opened: bool,
        creds: Creds,
    },
    /// `msgid inode [chunkindx]`.
    Check {
        msgid: u32,
        inode: u32,
        index: Option<u32>,
    },
    /// `msgid inode gmode:8`.
    GetTrashtime { msgid: u32, inode: u32, gmode: u8 },
    /// `msgid inode uid trashtime:32 smode:8`.
    SetTrashtime {
        msgid: u32,
        inode: u32,
        uid: u32,
        trashtime: u32,
        smode: u8,
    },
    /// `msgid inode gmode:8`.
    GetSclass { msgid: u32, inode: u32, gmode: u8 },
    /// `msgid inode uid goal:8 smode:8` (simple goals only; named classes are refused).
    SetSclass {
        msgid: u32,
        inode: u32,
        uid: u32,
        goal: u8,
        smode: u8,
    },
    /// `msgid inode`.
    GetDirStats { msgid: u32, inode: u32 },
    /// `msgid inode gmode:8`.
    GetEattr { msgid: u32, inode: u32, gmode: u8 },
    /// `msgid inode uid eattr:8 smode:8`.
    SetEattr {
        msgid: u32,
        inode: u32,
        uid: u32,
        eattr: u8,
        smode: u8,
    },
    /// `msgid inode acltype:8 [...]`.
    GetFacl { msgid: u32, inode: u32, acltype: u8 },
    /// `msgid inode uid acltype …` (only decoded far enough to refuse it).
    SetFacl { msgid: u32, inode: u32 },
    /// `msgid inode reqid owner:64 cmd:8`.
    Flock {
        msgid: u32,
        inode: u32,
        reqid: u32,
        owner: u64,
        cmd: u8,
    },
    /// `msgid inode reqid owner:64 pid cmd:8 type:8 start:64 end:64`.
    PosixLock {
        msgid: u32,
        inode: u32,
        reqid: u32,
        owner: u64,
        pid: u32,
        cmd: u8,
        ltype: u8,
        start: u64,
        end: u64,
    },
    /// `N×inode` (no msgid).
    SustainedInodes(Vec<u32>),
    /// `N×[inode atime mtime]` (no msgid).
    AmtimeInodes(Vec<(u32, u32, u32)>),
    /// `[msgid]`.
    TimeSync { msgid: Option<u32> },
}

fn bad(msg: &'static str, len: usize, expected: &'static str) -> DecodeError {
    DecodeError::BadLength { msg, len, expected }
}

/// Reads `uid gcnt gids…` or the short `uid gid` form, filling exactly `n` bytes.
fn creds(r: &mut Reader<'_>, n: usize, msg: &'static str) -> Result<Creds, DecodeError> {
    if n < 8 {
        return Err(bad(msg, n, "a credential block of at least 8 bytes"));
    }
    let uid = r.u32()?;
    if n == 8 {
        let g = r.u32()?;
        let gids = if g == u32::MAX { Vec::new() } else { vec![g] };
        return Ok(Creds { uid, gids });
    }
    let gcnt = r.u32()? as usize;
    if gcnt.checked_mul(4).map(|b| b + 8) != Some(n) {
        return Err(bad(msg, n, "8 + 4 × gcnt credential bytes"));
    }
    let mut gids = Vec::with_capacity(gcnt);
    for _ in 0..gcnt {
        gids.push(r.u32()?);
    }
    Ok(Creds { uid, gids })
}

/// Credentials followed by exactly `tail` more bytes.
fn creds_then(r: &mut Reader<'_>, tail: usize, msg: &'static str) -> Result<Creds, DecodeError> {
    let n = r
        .remaining()
        .checked_sub(tail)
        .ok_or_else(|| bad(msg, r.remaining(), "room for credentials"))?;
    creds(r, n, msg)
}

fn name8(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let n = r.u8()? as usize;
    Ok(r.bytes(n)?.to_vec())
}

fn end(r: &Reader<'_>, msg: &'static str) -> Result<(), DecodeError> {
    if r.remaining() != 0 {
        return Err(DecodeError::BadLength {
            msg,
            len: r.remaining(),
            expected: "no trailing bytes",
        });
    }
    Ok(())
}

fn decode_register(p: &[u8]) -> Result<Register, DecodeError> {
    const M: &str = "CLTOMA_FUSE_REGISTER";
    let mut r = Reader::new(M, p);
    let blob = r.bytes(64)?;
    if blob != REGISTER_BLOB_ACL {
        return Err(DecodeError::BadValue {
            msg: M,
            field: "blob",
            value: 0,
        });
    }
    let rcode = r.u8()?;
    let sess_meta = |r: &mut Reader<'_>| -> Result<(Option<u32>, Option<u64>), DecodeError> {
        Ok(match r.remaining() {
            0 | 16 => (None, None),
            4 | 20 => (Some(r.u32()?), None),
            12 | 28 => (Some(r.u32()?), Some(r.u64()?)),
            n => return Err(bad(M, n, "optional sessionid, metaid and passcode")),
        })
    };
    let passcode = |r: &mut Reader<'_>| -> Result<Option<[u8; 16]>, DecodeError> {
        Ok(if r.remaining() == 16 {
            Some(r.array::<16>()?)
        } else {
            None
        })
    };
    let reg = match rcode {
        1 => {
            end(&r, M)?;
            Register::GetRandom
        }
        2 => {
            let version = r.u32()?;
            let il = r.u32()? as usize;
            let info = r.bytes(il)?.to_vec();
            let pl = r.u32()? as usize;
            let path = r.bytes(pl)?;
            let path = match path.split_last() {
                Some((0, p)) => p.to_vec(),
                _ => {
                    return Err(DecodeError::BadValue {
                        msg: M,
                        field: "path (no trailing NUL)",
                        value: pl as u64,
                    })
                }
            };
            let (sessionid, metaid) = sess_meta(&mut r)?;
            let passcode = passcode(&mut r)?;
            end(&r, M)?;
            Register::NewSession {
                version,
                info,
                path,
                sessionid,
                metaid,
                passcode,
            }
        }
        3 | 4 => {
            let sessionid = r.u32()?;
            let version = r.u32()?;
            let metaid = if r.remaining() >= 8 {
                Some(r.u64()?)
            } else {
                None
            };
            if rcode == 3 {
                Register::Reconnect {
                    sessionid,
                    version,
                    metaid,
                }
            } else {
                Register::Tools {
                    sessionid,
                    version,
                    metaid,
                }
            }
        }
        5 => {
            let version = r.u32()?;
            let il = r.u32()? as usize;
            let info = r.bytes(il)?.to_vec();
            let (sessionid, metaid) = sess_meta(&mut r)?;
            let passcode = passcode(&mut r)?;
            end(&r, M)?;
            Register::NewMetaSession {
                version,
                info,
                sessionid,
                metaid,
                passcode,
            }
        }
        6 => {
            let sessionid = r.u32()?;
            let metaid = if r.remaining() >= 8 {
                Some(r.u64()?)
            } else {
                None
            };
            Register::CloseSession { sessionid, metaid }
        }
        v => {
            return Err(DecodeError::BadValue {
                msg: M,
                field: "rcode",
                value: v as u64,
            })
        }
    };
    Ok(reg)
}

impl ClRequest {
    /// Decodes one client packet. Unknown types give [`DecodeError::UnknownType`].
    pub fn decode(msg_type: u32, p: &[u8]) -> Result<ClRequest, DecodeError> {
        use ClRequest as Q;
        let name = request_name(msg_type);
        let mut r = Reader::new(name, p);
        let q = match msg_type {
            0..=2 => return Ok(Q::Nop),
            10 => {
                let msgid = match p.len() {
                    0 => None,
                    4 => Some(r.u32()?),
                    n => return Err(bad(name, n, "0 or 4")),
                };
                Q::GetVersion { msgid }
            }
            ANTOAN_GET_CONFIG => {
                let msgid = r.u32()?;
                let name = name8(&mut r)?;
                Q::GetConfig { msgid, name }
            }
            CLTOMA_FUSE_REGISTER => return Ok(Q::Register(decode_register(p)?)),
            CLTOMA_FUSE_STATFS => Q::Statfs { msgid: r.u32()? },
            CLTOMA_FUSE_GETTRASH => {
                let msgid = r.u32()?;
                let bucket = match p.len() {
                    4 => None,
                    8 => Some(r.u32()?),
                    n => return Err(bad(name, n, "4 or 8")),
                };
                Q::GetTrash { msgid, bucket }
            }
            CLTOMA_FUSE_GETDETACHEDATTR => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let dtype = match p.len() {
                    8 => 0,
                    9 => r.u8()?,
                    n => return Err(bad(name, n, "8 or 9")),
                };
                Q::GetDetachedAttr {
                    msgid,
                    inode,
                    dtype,
                }
            }
            CLTOMA_FUSE_GETTRASHPATH | CLTOMA_FUSE_UNDEL | CLTOMA_FUSE_PURGE => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                match msg_type {
                    CLTOMA_FUSE_GETTRASHPATH => Q::GetTrashPath { msgid, inode },
                    CLTOMA_FUSE_UNDEL => Q::Undel { msgid, inode },
                    _ => Q::Purge { msgid, inode },
                }
            }
            CLTOMA_FUSE_SETTRASHPATH => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let plen = r.u32()? as usize;
                let mut path = r.bytes(plen)?.to_vec();
                while path.last() == Some(&0) {
                    path.pop();
                }
                Q::SetTrashPath { msgid, inode, path }
            }
            CLTOMA_FUSE_GETSUSTAINED => Q::GetSustained { msgid: r.u32()? },
            CLTOMA_FUSE_SNAPSHOT => {
                let msgid = r.u32()?;
                let src = r.u32()?;
                let dst_parent = r.u32()?;
                let nm = name8(&mut r)?;
                let old = r.remaining() == 9;
                let creds = creds_then(&mut r, if old { 1 } else { 3 }, name)?;
                let smode = r.u8()?;
                let umask = if old { None } else { Some(r.u16()?) };
                Q::Snapshot {
                    msgid,
                    src,
                    dst_parent,
                    name: nm,
                    creds,
                    smode,
                    umask,
                }
            }
            CLTOMA_FUSE_APPEND_SLICE => {
                let msgid = r.u32()?;
                let sliced = p.len() % 2 == 1;
                let flags = if sliced { r.u8()? } else { 0 };
                let dst = r.u32()?;
                let src = r.u32()?;
                let (from, to) = if sliced {
                    (r.u32()?, r.u32()?)
                } else {
                    (0, 0x8000_0000)
                };
                let creds = creds_then(&mut r, 0, name)?;
                Q::AppendSlice {
                    msgid,
                    flags,
                    dst,
                    src,
                    from,
                    to,
                    creds,
                }
            }
            CLTOMA_FUSE_ACCESS => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                if p.len() % 2 == 1 {
                    let uid = r.u32()?;
                    let gid = r.u32()?;
                    let mask = r.u8()? as u16;
                    Q::Access {
                        msgid,
                        inode,
                        creds: Creds {
                            uid,
                            gids: vec![gid],
                        },
                        mask,
                    }
                } else {
                    let creds = creds_then(&mut r, 2, name)?;
                    Q::Access {
                        msgid,
                        inode,
                        creds,
                        mask: r.u16()?,
                    }
                }
            }
            CLTOMA_FUSE_LOOKUP | CLTOMA_FUSE_UNLINK | CLTOMA_FUSE_RMDIR => {
                let msgid = r.u32()?;
                let parent = r.u32()?;
                let nm = name8(&mut r)?;
                let creds = creds_then(&mut r, 0, name)?;
                match msg_type {
                    CLTOMA_FUSE_LOOKUP => Q::Lookup {
                        msgid,
                        parent,
                        name: nm,
                        creds,
                    },
                    CLTOMA_FUSE_UNLINK => Q::Unlink {
                        msgid,
                        parent,
                        name: nm,
                        creds,
                    },
                    _ => Q::Rmdir {
                        msgid,
                        parent,
                        name: nm,
                        creds,
                    },
                }
            }
            CLTOMA_FUSE_GETATTR => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let (opened, uid, gid) = match p.len() {
                    8 => (false, 0, 0),
                    16 => (false, r.u32()?, r.u32()?),
                    17 => (r.u8()? != 0, r.u32()?, r.u32()?),
                    n => return Err(bad(name, n, "8, 16 or 17")),
                };
                Q::Getattr {
                    msgid,
                    inode,
                    opened,
                    uid,
                    gid,
                }
            }
            CLTOMA_FUSE_SETATTR => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let opened = r.u8()? != 0;
                let creds = creds_then(&mut r, 21, name)?;
                let attr = SetAttr {
                    setmask: r.u8()?,
                    mode: r.u16()?,
                    uid: r.u32()?,
                    gid: r.u32()?,
                    atime: r.u32()?,
                    mtime: r.u32()?,
                    winattr: r.u8()?,
                    sugidclearmode: r.u8()?,
                };
                Q::Setattr {
                    msgid,
                    inode,
                    opened,
                    creds,
                    attr,
                }
            }
            CLTOMA_FUSE_READLINK => Q::Readlink {
                msgid: r.u32()?,
                inode: r.u32()?,
            },
            CLTOMA_FUSE_SYMLINK => {
                let msgid = r.u32()?;
                let parent = r.u32()?;
                let nm = name8(&mut r)?;
                let pl = r.u32()? as usize;
                let mut target = r.bytes(pl)?;
                while let Some((0, t)) = target.split_last() {
                    target = t;
                }
                let creds = creds_then(&mut r, 0, name)?;
                Q::Symlink {
                    msgid,
                    parent,
                    name: nm,
                    target: target.to_vec(),
                    creds,
                }
            }
            CLTOMA_FUSE_MKNOD => {
                let msgid = r.u32()?;
                let parent = r.u32()?;
                let nm = name8(&mut r)?;
                let ntype = r.u8()?;
                let mode = r.u16()?;
                let umask = r.u16()?;
                let creds = creds_then(&mut r, 4, name)?;
                Q::Mknod {
                    msgid,
                    parent,
                    name: nm,
                    ntype,
                    mode,
                    umask,
                    creds,
                    rdev: r.u32()?,
                }
            }
            CLTOMA_FUSE_MKDIR => {
                let msgid = r.u32()?;
                let parent = r.u32()?;
                let nm = name8(&mut r)?;
                let mode = r.u16()?;
                let umask = r.u16()?;
                let creds = creds_then(&mut r, 1, name)?;
                Q::Mkdir {
                    msgid,
                    parent,
                    name: nm,
                    mode,
                    umask,
                    creds,
                    copysgid: r.u8()? != 0,
                }
            }
            CLTOMA_FUSE_RENAME => {
                let msgid = r.u32()?;
                let src_parent = r.u32()?;
                let src_name = name8(&mut r)?;
                let dst_parent = r.u32()?;
                let dst_name = name8(&mut r)?;
                let creds = creds_then(&mut r, 0, name)?;
                Q::Rename {
                    msgid,
                    src_parent,
                    src_name,
                    dst_parent,
                    dst_name,
                    creds,
                }
            }
            CLTOMA_FUSE_LINK => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let dst_parent = r.u32()?;
                let dst_name = name8(&mut r)?;
                let creds = creds_then(&mut r, 0, name)?;
                Q::Link {
                    msgid,
                    inode,
                    dst_parent,
                    dst_name,
                    creds,
                }
            }
            CLTOMA_FUSE_READDIR => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let creds = creds_then(&mut r, 13, name)?;
                Q::Readdir {
                    msgid,
                    inode,
                    creds,
                    flags: r.u8()?,
                    maxentries: r.u32()?,
                    nedgeid: r.u64()?,
                }
            }
            CLTOMA_FUSE_OPEN => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let creds = creds_then(&mut r, 1, name)?;
                Q::Open {
                    msgid,
                    inode,
                    creds,
                    flags: r.u8()?,
                }
            }
            CLTOMA_FUSE_CREATE => {
                let msgid = r.u32()?;
                let parent = r.u32()?;
                let nm = name8(&mut r)?;
                let mode = r.u16()?;
                let umask = r.u16()?;
                let creds = creds_then(&mut r, 0, name)?;
                Q::Create {
                    msgid,
                    parent,
                    name: nm,
                    mode,
                    umask,
                    creds,
                }
            }
            CLTOMA_FUSE_READ_CHUNK | CLTOMA_FUSE_WRITE_CHUNK => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let index = r.u32()?;
                let flags = match p.len() {
                    12 => 0,
                    13 => r.u8()?,
                    n => return Err(bad(name, n, "12 or 13")),
                };
                if msg_type == CLTOMA_FUSE_READ_CHUNK {
                    Q::ReadChunk {
                        msgid,
                        inode,
                        index,
                        flags,
                    }
                } else {
                    Q::WriteChunk {
                        msgid,
                        inode,
                        index,
                        flags,
                    }
                }
            }
            CLTOMA_FUSE_WRITE_CHUNK_END => {
                if p.len() != 29 {
                    return Err(bad(name, p.len(), "29"));
                }
                Q::WriteChunkEnd {
                    msgid: r.u32()?,
                    chunkid: r.u64()?,
                    inode: r.u32()?,
                    index: r.u32()?,
                    length: r.u64()?,
                    flags: r.u8()?,
                }
            }
            CLTOMA_FUSE_TRUNCATE => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let flags = r.u8()?;
                let creds = creds_then(&mut r, 8, name)?;
                Q::Truncate {
                    msgid,
                    inode,
                    flags,
                    creds,
                    length: r.u64()?,
                }
            }
            CLTOMA_FUSE_GETXATTR => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let nm = name8(&mut r)?;
                let mode = r.u8()?;
                let opened = r.u8()? != 0;
                let creds = creds_then(&mut r, 0, name)?;
                Q::Getxattr {
                    msgid,
                    inode,
                    name: nm,
                    mode,
                    opened,
                    creds,
                }
            }
            CLTOMA_FUSE_SETXATTR => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let nm = name8(&mut r)?;
                let vl = r.u32()? as usize;
                let value = r.bytes(vl)?.to_vec();
                let mode = r.u8()?;
                let opened = r.u8()? != 0;
                let creds = creds_then(&mut r, 0, name)?;
                Q::Setxattr {
                    msgid,
                    inode,
                    name: nm,
                    value,
                    mode,
                    opened,
                    creds,
                }
            }
            CLTOMA_FUSE_CHECK => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let index = match p.len() {
                    8 => None,
                    12 => Some(r.u32()?),
                    n => return Err(bad(name, n, "8 or 12")),
                };
                Q::Check {
                    msgid,
                    inode,
                    index,
                }
            }
            CLTOMA_FUSE_GETTRASHTIME | CLTOMA_FUSE_GETSCLASS | CLTOMA_FUSE_GETEATTR => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let gmode = r.u8()?;
                match msg_type {
                    CLTOMA_FUSE_GETTRASHTIME => Q::GetTrashtime {
                        msgid,
                        inode,
                        gmode,
                    },
                    CLTOMA_FUSE_GETSCLASS => Q::GetSclass {
                        msgid,
                        inode,
                        gmode,
                    },
                    _ => Q::GetEattr {
                        msgid,
                        inode,
                        gmode,
                    },
                }
            }
            CLTOMA_FUSE_SETTRASHTIME => Q::SetTrashtime {
                msgid: r.u32()?,
                inode: r.u32()?,
                uid: r.u32()?,
                trashtime: r.u32()?,
                smode: r.u8()?,
            },
            CLTOMA_FUSE_SETSCLASS => {
                let msgid = r.u32()?;
                let inode = r.u32()?;
                let uid = r.u32()?;
                let goal = r.u8()?;
                let smode = r.u8()?;
                if goal == 0xFF {
                    // Named storage classes: decoded as "goal 0xFF", refused by the master.
                    let _ = r.rest();
                }
                Q::SetSclass {
                    msgid,
                    inode,
                    uid,
                    goal,
                    smode,
                }
            }
            CLTOMA_FUSE_SETEATTR => Q::SetEattr {
                msgid: r.u32()?,
                inode: r.u32()?,
                uid: r.u32()?,
                eattr: r.u8()?,
                smode: r.u8()?,
            },
            CLTOMA_FUSE_GETDIRSTATS => Q::GetDirStats {
                msgid: r.u32()?,
                inode: r.u32()?,
            },
            CLTOMA_FUSE_GETFACL => {
                let q = Q::GetFacl {
                    msgid: r.u32()?,
                    inode: r.u32()?,
                    acltype: r.u8()?,
                };
                let _ = r.rest();
                q
            }
            CLTOMA_FUSE_SETFACL => {
                let q = Q::SetFacl {
                    msgid: r.u32()?,
                    inode: r.u32()?,
                };
                let _ = r.rest();
                q
            }
            CLTOMA_FUSE_FLOCK => Q::Flock {
                msgid: r.u32()?,
                inode: r.u32()?,
                reqid: r.u32()?,
                owner: r.u64()?,
                cmd: r.u8()?,
            },
            CLTOMA_FUSE_POSIX_LOCK => Q::PosixLock {
                msgid: r.u32()?,
                inode: r.u32()?,
                reqid: r.u32()?,
                owner: r.u64()?,
                pid: r.u32()?,
                cmd: r.u8()?,
                ltype: r.u8()?,
                start: r.u64()?,
                end: r.u64()?,
            },
            CLTOMA_FUSE_SUSTAINED_INODES | 499 => {
                if !p.len().is_multiple_of(4) {
                    return Err(bad(name, p.len(), "a multiple of 4"));
                }
                let mut v = Vec::with_capacity(p.len() / 4);
                while r.remaining() > 0 {
                    v.push(r.u32()?);
                }
                Q::SustainedInodes(v)
            }
            CLTOMA_FUSE_AMTIME_INODES => {
                if !p.len().is_multiple_of(12) {
                    return Err(bad(name, p.len(), "a multiple of 12"));
                }
                let mut v = Vec::with_capacity(p.len() / 12);
                while r.remaining() > 0 {
                    v.push((r.u32()?, r.u32()?, r.u32()?));
                }
                Q::AmtimeInodes(v)
            }
            CLTOMA_FUSE_TIME_SYNC => Q::TimeSync {
                msgid: match p.len() {
                    0 => None,
                    4 => Some(r.u32()?),
                    n => return Err(bad(name, n, "0 or 4")),
                },
            },
            t => return Err(DecodeError::UnknownType(t)),
        };
        end(&r, name)?;
        Ok(q)
    }

    /// The request's msgid, when it has one (used to answer "unsupported").
    pub fn msgid_of(payload: &[u8]) -> u32 {
        if payload.len() >= 4 {
            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
        } else {
            0
        }
    }
}

/// Name of a client request type, for logs and errors.
pub fn request_name(t: u32) -> &'static str {
    match t {
        CLTOMA_FUSE_REGISTER => "CLTOMA_FUSE_REGISTER",
        CLTOMA_FUSE_STATFS => "CLTOMA_FUSE_STATFS",
        CLTOMA_FUSE_ACCESS => "CLTOMA_FUSE_ACCESS",
        CLTOMA_FUSE_LOOKUP => "CLTOMA_FUSE_LOOKUP",
        CLTOMA_FUSE_GETATTR => "CLTOMA_FUSE_GETATTR",
        CLTOMA_FUSE_SETATTR => "CLTOMA_FUSE_SETATTR",
        CLTOMA_FUSE_READLINK => "CLTOMA_FUSE_READLINK",
        CLTOMA_FUSE_SYMLINK => "CLTOMA_FUSE_SYMLINK",
        CLTOMA_FUSE_MKNOD => "CLTOMA_FUSE_MKNOD",
        CLTOMA_FUSE_MKDIR => "CLTOMA_FUSE_MKDIR",
        CLTOMA_FUSE_UNLINK => "CLTOMA_FUSE_UNLINK",
        CLTOMA_FUSE_RMDIR => "CLTOMA_FUSE_RMDIR",
        CLTOMA_FUSE_RENAME => "CLTOMA_FUSE_RENAME",
        CLTOMA_FUSE_LINK => "CLTOMA_FUSE_LINK",
        CLTOMA_FUSE_READDIR => "CLTOMA_FUSE_READDIR",
        CLTOMA_FUSE_OPEN => "CLTOMA_FUSE_OPEN",
        CLTOMA_FUSE_READ_CHUNK => "CLTOMA_FUSE_READ_CHUNK",
        CLTOMA_FUSE_WRITE_CHUNK => "CLTOMA_FUSE_WRITE_CHUNK",
        CLTOMA_FUSE_WRITE_CHUNK_END => "CLTOMA_FUSE_WRITE_CHUNK_END",
        CLTOMA_FUSE_CHECK => "CLTOMA_FUSE_CHECK",
        CLTOMA_FUSE_GETTRASHTIME => "CLTOMA_FUSE_GETTRASHTIME",
        CLTOMA_FUSE_SETTRASHTIME => "CLTOMA_FUSE_SETTRASHTIME",
        CLTOMA_FUSE_GETSCLASS => "CLTOMA_FUSE_GETSCLASS",
        CLTOMA_FUSE_SETSCLASS => "CLTOMA_FUSE_SETSCLASS",
        CLTOMA_FUSE_GETTRASH => "CLTOMA_FUSE_GETTRASH",
        CLTOMA_FUSE_GETDETACHEDATTR => "CLTOMA_FUSE_GETDETACHEDATTR",
        CLTOMA_FUSE_GETTRASHPATH => "CLTOMA_FUSE_GETTRASHPATH",
        CLTOMA_FUSE_SETTRASHPATH => "CLTOMA_FUSE_SETTRASHPATH",
        CLTOMA_FUSE_UNDEL => "CLTOMA_FUSE_UNDEL",
        CLTOMA_FUSE_PURGE => "CLTOMA_FUSE_PURGE",
        CLTOMA_FUSE_GETSUSTAINED => "CLTOMA_FUSE_GETSUSTAINED",
        CLTOMA_FUSE_SNAPSHOT => "CLTOMA_FUSE_SNAPSHOT",
        CLTOMA_FUSE_APPEND_SLICE => "CLTOMA_FUSE_APPEND_SLICE",
        CLTOMA_FUSE_GETDIRSTATS => "CLTOMA_FUSE_GETDIRSTATS",
        CLTOMA_FUSE_TRUNCATE => "CLTOMA_FUSE_TRUNCATE",
        CLTOMA_FUSE_GETEATTR => "CLTOMA_FUSE_GETEATTR",
        CLTOMA_FUSE_SETEATTR => "CLTOMA_FUSE_SETEATTR",
        CLTOMA_FUSE_GETXATTR => "CLTOMA_FUSE_GETXATTR",
        CLTOMA_FUSE_SETXATTR => "CLTOMA_FUSE_SETXATTR",
        CLTOMA_FUSE_CREATE => "CLTOMA_FUSE_CREATE",
        CLTOMA_FUSE_GETFACL => "CLTOMA_FUSE_GETFACL",
        CLTOMA_FUSE_SETFACL => "CLTOMA_FUSE_SETFACL",
        CLTOMA_FUSE_FLOCK => "CLTOMA_FUSE_FLOCK",
        CLTOMA_FUSE_POSIX_LOCK => "CLTOMA_FUSE_POSIX_LOCK",
        CLTOMA_FUSE_SUSTAINED_INODES | 499 => "CLTOMA_FUSE_SUSTAINED_INODES",
        CLTOMA_FUSE_AMTIME_INODES => "CLTOMA_FUSE_AMTIME_INODES",
        CLTOMA_FUSE_TIME_SYNC => "CLTOMA_FUSE_TIME_SYNC",
        ANTOAN_GET_CONFIG => "ANTOAN_GET_CONFIG",
        10 => "ANTOAN_GET_VERSION",
        _ => "unknown client request",
    }
}

/// The 36-byte attribute record (`ATTR_RECORD_SIZE` for 3.0.93+ clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attr {
    /// MATTR_* flags.
    pub flags: u8,
    /// Node type (`node_type::*`).
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
    /// Link count.
    pub nlink: u32,
    /// Length, encoded directory size, `0:32 pleng:32` for symlinks, or `rdev:32 0:32`.
    pub length: u64,
    /// Windows attributes.
    pub winattr: u8,
}

/// Size of [`Attr`] on the wire.
pub const ATTR_SIZE: usize = 36;
/// MATTR flag: no attribute caching.
pub const MATTR_NOACACHE: u8 = 0x01;
/// MATTR flag: the node has no xattrs (the client answers getxattr itself).
pub const MATTR_NOXATTR: u8 = 0x08;
/// MATTR flag: data may be cached (deprecated, still read by 3.0.117).
pub const MATTR_ALLOWDATACACHE: u8 = 0x04;

impl Attr {
    /// Appends the 36 bytes.
    pub fn put(&self, out: &mut Vec<u8>) {
        out.push(self.flags);
        out.extend_from_slice(&(((self.ntype as u16) << 12) | (self.mode & 0o7777)).to_be_bytes());
        for v in [
            self.uid, self.gid, self.atime, self.mtime, self.ctime, self.nlink,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.length.to_be_bytes());
        out.push(self.winattr);
    }

    /// Decodes 36 bytes (tests and tools).
    pub fn get(r: &mut Reader<'_>) -> Result<Attr, DecodeError> {
        let flags = r.u8()?;
        let tm = r.u16()?;
        Ok(Attr {
            flags,
            ntype: (tm >> 12) as u8,
            mode: tm & 0o7777,
            uid: r.u32()?,
            gid: r.u32()?,
            atime: r.u32()?,
            mtime: r.u32()?,
            ctime: r.u32()?,
            nlink: r.u32()?,
            length: r.u64()?,
            winattr: r.u8()?,
        })
    }
}

/// Builds one master→client packet; the length is filled in by [`Reply::finish`].
#[derive(Debug, Clone)]
pub struct Reply {
    buf: Vec<u8>,
}

impl Reply {
    /// A packet of type `msg_type` with no payload yet.
    pub fn new(msg_type: u32) -> Reply {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&msg_type.to_be_bytes());
        buf.extend_from_slice(&[0; 4]);
        Reply { buf }
    }
    /// A packet of type `msg_type` starting with `msgid`.
    pub fn with_msgid(msg_type: u32, msgid: u32) -> Reply {
        Reply::new(msg_type).u32(msgid)
    }
    /// `msgid:32 status:8`, the usual error (or status-only) answer.
    pub fn status(msg_type: u32, msgid: u32, status: u8) -> Vec<u8> {
        Reply::with_msgid(msg_type, msgid).u8(status).finish()
    }
    /// Appends a byte.
    pub fn u8(mut self, v: u8) -> Self {
        self.buf.push(v);
        self
    }
    /// Appends a big-endian u16.
    pub fn u16(mut self, v: u16) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian u32.
    pub fn u32(mut self, v: u32) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian u64.
    pub fn u64(mut self, v: u64) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends raw bytes.
    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// Appends an attribute record.
    pub fn attr(mut self, a: &Attr) -> Self {
        a.put(&mut self.buf);
        self
    }
    /// Direct access for loops.
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
    /// Fixes the length and returns the packet.
    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 8) as u32;
        self.buf[4..8].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

/// Encodes the directory-size "floating" value MooseFS reports as a directory's length.
pub fn dir_size_encode(l: u64) -> u64 {
    let v = l as u128 * 100;
    (if l == 0 {
        1
    } else if l < 1 << 10 {
        v
    } else if l < 1 << 20 {
        (v >> 10) + 1_000_000
    } else if l < 1 << 30 {
        (v >> 20) + 2_000_000
    } else if l < 1 << 40 {
        (v >> 30) + 3_000_000
    } else if l < 1 << 50 {
        (v >> 40) + 4_000_000
    } else if l < 1 << 60 {
        (((l >> 10) as u128 * 100) >> 40) + 5_000_000
    } else {
        (((l >> 10) as u128 * 100) >> 50) + 6_000_000
    }) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn lookup_as_sent_by_mfsmount() {
        // Captured from the 3.0.117 mount (docs/notes, §3.4).
        let p = hex("00000001 00000001 02 6431 00000000 00000001 00000000");
        let q = ClRequest::decode(CLTOMA_FUSE_LOOKUP, &p).unwrap();
        assert_eq!(
            q,
            ClRequest::Lookup {
                msgid: 1,
                parent: 1,
                name: b"d1".to_vec(),
                creds: Creds {
                    uid: 0,
                    gids: vec![0]
                }
            }
        );
    }

    #[test]
    fn mkdir_and_truncate_as_sent() {
        let p = hex("00000005 00000001 02 6431 01ff 0012 00000000 00000001 00000000 01");
        match ClRequest::decode(CLTOMA_FUSE_MKDIR, &p).unwrap() {
            ClRequest::Mkdir {
                mode,
                umask,
                copysgid,
                ..
            } => assert_eq!((mode, umask, copysgid), (0o777, 0o22, true)),
            q => panic!("{q:?}"),
        }
        let p = hex("00000007 00000009 01 00000000 00000001 00000000 0000000005f5e100");
        match ClRequest::decode(CLTOMA_FUSE_TRUNCATE, &p).unwrap() {
            ClRequest::Truncate { flags, length, .. } => {
                assert_eq!((flags, length), (1, 100_000_000))
            }
            q => panic!("{q:?}"),
        }
    }

    #[test]
    fn register_forms() {
        let mut p = REGISTER_BLOB_ACL.to_vec();
        p.push(2);
        p.extend_from_slice(&0x0003_00EAu32.to_be_bytes());
        p.extend_from_slice(&4u32.to_be_bytes());
        p.extend_from_slice(b"/mn\0");
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(b"/\0");
        let r = ClRequest::decode(CLTOMA_FUSE_REGISTER, &p).unwrap();
        assert!(
            matches!(r, ClRequest::Register(Register::NewSession { ref path, sessionid: None, passcode: None, .. }) if path == b"/")
        );
        let mut with_sess = p.clone();
        with_sess.extend_from_slice(&7u32.to_be_bytes());
        with_sess.extend_from_slice(&9u64.to_be_bytes());
        with_sess.extend_from_slice(&[1; 16]);
        let r = ClRequest::decode(CLTOMA_FUSE_REGISTER, &with_sess).unwrap();
        assert!(matches!(
            r,
            ClRequest::Register(Register::NewSession {
                sessionid: Some(7),
                metaid: Some(9),
                passcode: Some(_),
                ..
            })
        ));
        // A wrong blob and a path without NUL are refused.
        let mut wrong = p.clone();
        wrong[0] ^= 1;
        assert!(ClRequest::decode(CLTOMA_FUSE_REGISTER, &wrong).is_err());
        let mut nonul = p.clone();
        let n = nonul.len();
        nonul[n - 1] = b'x';
        assert!(ClRequest::decode(CLTOMA_FUSE_REGISTER, &nonul).is_err());
        // An odd extra length is refused.
        let mut odd = p;
        odd.push(0);
        assert!(ClRequest::decode(CLTOMA_FUSE_REGISTER, &odd).is_err());
    }

    #[test]
    fn wrong_credential_count_is_an_error() {
        // gcnt says 2 but one gid follows.
        let p = hex("00000001 00000001 01 61 00000000 00000002 00000000");
        assert!(ClRequest::decode(CLTOMA_FUSE_LOOKUP, &p).is_err());
    }

    #[test]
    fn meta_requests_from_a_captured_meta_mount() {
        let h = |x: &str| -> Vec<u8> {
            (0..x.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&x[i..i + 2], 16).unwrap())
                .collect()
        };
        let q = ClRequest::decode(CLTOMA_FUSE_GETTRASH, &h("000000010000000e")).unwrap();
        assert!(matches!(
            q,
            ClRequest::GetTrash {
                msgid: 1,
                bucket: Some(14)
            }
        ));
        let q = ClRequest::decode(CLTOMA_FUSE_GETTRASH, &h("00000001")).unwrap();
        assert!(matches!(q, ClRequest::GetTrash { bucket: None, .. }));
        let q = ClRequest::decode(CLTOMA_FUSE_UNDEL, &h("000000020000000e")).unwrap();
        assert!(matches!(
            q,
            ClRequest::Undel {
                msgid: 2,
                inode: 14
            }
        ));
        let q = ClRequest::decode(CLTOMA_FUSE_PURGE, &h("000000010000000e")).unwrap();
        assert!(matches!(
            q,
            ClRequest::Purge {
                msgid: 1,
                inode: 14
            }
        ));
        let q = ClRequest::decode(
            CLTOMA_FUSE_SETTRASHPATH,
            &h("00000003000000040000001464697220"),
        );
        assert!(q.is_err(), "plen past the end");
        let q = ClRequest::decode(
            CLTOMA_FUSE_SETTRASHPATH,
            &h("0000000300000004000000146e65776469722f7375622f726573746f72656400"),
        )
        .unwrap();
        let ClRequest::SetTrashPath { msgid, inode, path } = q else {
            panic!("{q:?}")
        };
        assert_eq!(
            (msgid, inode, &path[..]),
            (3, 4, &b"newdir/sub/restored"[..])
        );
        let q = ClRequest::decode(CLTOMA_FUSE_GETSUSTAINED, &h("00000003")).unwrap();
        assert!(matches!(q, ClRequest::GetSustained { msgid: 3 }));
        for (t, bad) in [
            (CLTOMA_FUSE_GETTRASH, "000000010000"),
            (CLTOMA_FUSE_GETDETACHEDATTR, "000000010000000e0000"),
            (CLTOMA_FUSE_UNDEL, "000000010000000e00"),
        ] {
            assert!(ClRequest::decode(t, &h(bad)).is_err(), "{t} {bad}");
        }
    }

    #[test]
    fn attr_layout_matches_capture() {
        // Root directory attr captured from the real master (§3.0).
        let a = Attr {
            flags: 0x0c,
            ntype: 2,
            mode: 0o777,
            uid: 0,
            gid: 0,
            atime: 0x6b019db3,
            mtime: 0x6b019db3,
            ctime: 0x6b019db3,
            nlink: 2,
            length: 1,
            winattr: 0,
        };
        let mut v = Vec::new();
        a.put(&mut v);
        assert_eq!(
            v,
            hex(
                "0c 21ff 00000000 00000000 6b019db3 6b019db3 6b019db3 00000002 0000000000000001 00"
            )
        );
        assert_eq!(Attr::get(&mut Reader::new("a", &v)).unwrap(), a);
    }

    #[test]
    fn dir_size_matches_capture() {
        assert_eq!(dir_size_encode(0), 1);
        assert_eq!(dir_size_encode(100_000_000), 2_009_536);
        assert_eq!(dir_size_encode(5), 500);
    }

    #[test]
    fn reply_length_is_fixed_up() {
        let p = Reply::status(401, 0, 4);
        assert_eq!(p, hex("00000191 00000005 00000000 04"));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(t in 0u32..800, p in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = ClRequest::decode(t, &p);
        }

        #[test]
        fn lookup_roundtrip(msgid: u32, parent: u32, name in proptest::collection::vec(1u8..255, 1..255), uid: u32, gids in proptest::collection::vec(proptest::prelude::any::<u32>(), 2..8)) {
            let mut p = Vec::new();
            p.extend_from_slice(&msgid.to_be_bytes());
            p.extend_from_slice(&parent.to_be_bytes());
            p.push(name.len() as u8);
            p.extend_from_slice(&name);
            p.extend_from_slice(&uid.to_be_bytes());
            p.extend_from_slice(&(gids.len() as u32).to_be_bytes());
            for g in &gids { p.extend_from_slice(&g.to_be_bytes()); }
            let q = ClRequest::decode(CLTOMA_FUSE_LOOKUP, &p).unwrap();
            proptest::prop_assert_eq!(q, ClRequest::Lookup { msgid, parent, name, creds: Creds { uid, gids } });
        }
    }
}
