//! Master ↔ chunkserver messages (MooseFS 3.0.117 layouts), both directions.
//!
//! Registration of a 3.0.117 chunkserver runs in phases of `CSTOMA_REGISTER`:
//! `60` BEGIN (identity and space, optionally with the AUTH_CODE answer), then `61`
//! batches of `chunkid:64 version:32` (each acknowledged by a 1-byte MASTER_ACK before
//! the next one is sent), then `62` END; `63` announces a clean disconnect.
//! The master answers BEGIN with `MATOCS_MASTER_ACK`: accepted (with its version,
//! timeout, the chunkserver id and the metadata id), an authentication challenge,
//! a redirect, or "wait".

use crate::codes::*;
use crate::frame::{DecodeError, Reader, Writer};

/// Fields of the master's "accepted" acknowledgement; shorter forms leave fields out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Master version (absent in the 1-byte flow-control ack).
    pub version: Option<u32>,
    /// Timeout in seconds proposed by the master.
    pub timeout: Option<u16>,
    /// Chunkserver id assigned by the master.
    pub csid: Option<u16>,
    /// Metadata id of the master's file system instance.
    pub metaid: Option<u64>,
}

/// Messages a master sends to a chunkserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterToCs {
    /// Keep-alive.
    Nop,
    /// Registration accepted, or (1-byte form) "send the next batch of chunks".
    Ack(Accepted),
    /// Pro "go to the leader" redirect (0 = leader unknown).
    Redirect {
        /// Leader address.
        ip: u32,
    },
    /// Pro "wait for acceptance".
    Wait {
        /// Master version.
        version: u32,
        /// Timeout.
        timeout: u16,
        /// Metadata id if sent.
        metaid: Option<u64>,
    },
    /// The master wants the AUTH_CODE proof for these 32 random bytes.
    AuthChallenge([u8; 32]),
    /// Create an empty chunk.
    Create {
        /// Chunk id.
        chunkid: u64,
        /// Version of the new chunk.
        version: u32,
    },
    /// Delete a chunk.
    Delete {
        /// Chunk id.
        chunkid: u64,
        /// Expected version (0 = any).
        version: u32,
    },
    /// Change a chunk's version.
    SetVersion {
        /// Chunk id.
        chunkid: u64,
        /// Version to set.
        new_version: u32,
        /// Expected current version (0 = any).
        old_version: u32,
    },
    /// Make `new_chunkid` a copy of `src_chunkid`.
    Duplicate {
        /// Id of the copy.
        new_chunkid: u64,
        /// Version of the copy.
        new_version: u32,
        /// Source chunk.
        src_chunkid: u64,
        /// Source version.
        src_version: u32,
    },
    /// Set a new version and truncate to `length` bytes.
    Truncate {
        /// Chunk id.
        chunkid: u64,
        /// New length in bytes.
        length: u32,
        /// Version to set.
        new_version: u32,
        /// Expected current version.
        old_version: u32,
    },
    /// Duplicate, then truncate the copy.
    DupTrunc {
        /// Id of the copy.
        new_chunkid: u64,
        /// Version of the copy.
        new_version: u32,
        /// Source chunk.
        src_chunkid: u64,
        /// Source version.
        src_version: u32,
        /// Length of the copy.
        length: u32,
    },
    /// Combined operation; the meaning follows from which fields are zero
    /// (see [`ChunkOpKind`]).
    ChunkOp(ChunkOpArgs),
    /// Fetch a copy of a chunk from the chunkserver at `ip:port`.
    Replicate {
        /// Chunk id.
        chunkid: u64,
        /// Version to fetch.
        version: u32,
        /// Source address.
        ip: u32,
        /// Source port.
        port: u16,
    },
    /// How many blocks does this chunk have?
    GetChunkBlocks {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
    },
    /// CRC over the whole CRC table.
    GetChunkChecksum {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
    },
    /// The CRC table itself.
    GetChunkChecksumTab {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
    },
}

/// Arguments of `MATOCS_CHUNKOP` / `CSTOMA_CHUNKOP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOpArgs {
    /// Chunk id.
    pub chunkid: u64,
    /// Current version.
    pub version: u32,
    /// New version (0 for create/delete/test).
    pub new_version: u32,
    /// Id of the copy (0 if none).
    pub copy_chunkid: u64,
    /// Version of the copy.
    pub copy_version: u32,
    /// Length (0xFFFFFFFF = unchanged; 0/1/2 = delete/create/test when new_version is 0).
    pub length: u32,
}

/// What a `CHUNKOP` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOpKind {
    /// Change version.
    SetVersion,
    /// Duplicate into `copy_chunkid`.
    Duplicate,
    /// Truncate to `length` with a new version.
    Truncate,
    /// Duplicate and truncate the copy.
    DupTrunc,
    /// Delete.
    Delete,
    /// Create.
    Create,
    /// Verify the chunk's CRCs.
    Test,
    /// Not a valid combination.
    Invalid,
}

impl ChunkOpArgs {
    /// Decodes the meaning of the fields.
    pub fn kind(&self) -> ChunkOpKind {
        if self.new_version > 0 {
            if self.length == 0xFFFF_FFFF {
                if self.copy_chunkid == 0 {
                    ChunkOpKind::SetVersion
                } else {
                    ChunkOpKind::Duplicate
                }
            } else if self.length <= CHUNK_SIZE {
                if self.copy_chunkid == 0 {
                    ChunkOpKind::Truncate
                } else {
                    ChunkOpKind::DupTrunc
                }
            } else {
                ChunkOpKind::Invalid
            }
        } else {
            match self.length {
                0 => ChunkOpKind::Delete,
                1 => ChunkOpKind::Create,
                2 => ChunkOpKind::Test,
                _ => ChunkOpKind::Invalid,
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ChunkOpArgs {
            chunkid: r.u64()?,
            version: r.u32()?,
            new_version: r.u32()?,
            copy_chunkid: r.u64()?,
            copy_version: r.u32()?,
            length: r.u32()?,
        })
    }

    fn write(&self, w: Writer) -> Writer {
        w.u64(self.chunkid)
            .u32(self.version)
            .u32(self.new_version)
            .u64(self.copy_chunkid)
            .u32(self.copy_version)
            .u32(self.length)
    }
}

fn exact(msg: &'static str, p: &[u8], n: usize, expected: &'static str) -> Result<(), DecodeError> {
    if p.len() != n {
        return Err(DecodeError::BadLength {
            msg,
            len: p.len(),
            expected,
        });
    }
    Ok(())
}

fn id_ver(msg: &'static str, p: &[u8]) -> Result<(u64, u32), DecodeError> {
    exact(msg, p, 12, "12")?;
    let mut r = Reader::new(msg, p);
    Ok((r.u64()?, r.u32()?))
}

impl MasterToCs {
    /// Decodes a packet received from the master.
    pub fn decode(msg_type: u32, p: &[u8]) -> Result<Self, DecodeError> {
        match msg_type {
            ANTOAN_NOP => Ok(MasterToCs::Nop),
            MATOCS_MASTER_ACK => Self::decode_ack(p),
            MATOCS_CREATE => {
                let (chunkid, version) = id_ver("MATOCS_CREATE", p)?;
                Ok(MasterToCs::Create { chunkid, version })
            }
            MATOCS_DELETE => {
                let (chunkid, version) = id_ver("MATOCS_DELETE", p)?;
                Ok(MasterToCs::Delete { chunkid, version })
            }
            MATOCS_SET_VERSION => {
                const M: &str = "MATOCS_SET_VERSION";
                exact(M, p, 16, "16")?;
                let mut r = Reader::new(M, p);
                Ok(MasterToCs::SetVersion {
                    chunkid: r.u64()?,
                    new_version: r.u32()?,
                    old_version: r.u32()?,
                })
            }
            MATOCS_DUPLICATE => {
                const M: &str = "MATOCS_DUPLICATE";
                exact(M, p, 24, "24")?;
                let mut r = Reader::new(M, p);
                Ok(MasterToCs::Duplicate {
                    new_chunkid: r.u64()?,
                    new_version: r.u32()?,
                    src_chunkid: r.u64()?,
                    src_version: r.u32()?,
                })
            }
            MATOCS_TRUNCATE => {
                const M: &str = "MATOCS_TRUNCATE";
                exact(M, p, 20, "20")?;
                let mut r = Reader::new(M, p);
                Ok(MasterToCs::Truncate {
                    chunkid: r.u64()?,
                    length: r.u32()?,
                    new_version: r.u32()?,
                    old_version: r.u32()?,
                })
            }
            MATOCS_DUPTRUNC => {
                const M: &str = "MATOCS_DUPTRUNC";
                exact(M, p, 28, "28")?;
                let mut r = Reader::new(M, p);
                Ok(MasterToCs::DupTrunc {
                    new_chunkid: r.u64()?,
                    new_version: r.u32()?,
                    src_chunkid: r.u64()?,
                    src_version: r.u32()?,
                    length: r.u32()?,
                })
            }
            MATOCS_CHUNKOP => {
                const M: &str = "MATOCS_CHUNKOP";
                exact(M, p, 32, "32")?;
                Ok(MasterToCs::ChunkOp(ChunkOpArgs::read(&mut Reader::new(
                    M, p,
                ))?))
            }
            MATOCS_REPLICATE => {
                const M: &str = "MATOCS_REPLICATE";
                exact(M, p, 18, "18 (multi-source replication is not supported)")?;
                let mut r = Reader::new(M, p);
                Ok(MasterToCs::Replicate {
                    chunkid: r.u64()?,
                    version: r.u32()?,
                    ip: r.u32()?,
                    port: r.u16()?,
                })
            }
            ANTOCS_GET_CHUNK_BLOCKS => {
                let (chunkid, version) = id_ver("ANTOCS_GET_CHUNK_BLOCKS", p)?;
                Ok(MasterToCs::GetChunkBlocks { chunkid, version })
            }
            ANTOCS_GET_CHUNK_CHECKSUM => {
                let (chunkid, version) = id_ver("ANTOCS_GET_CHUNK_CHECKSUM", p)?;
                Ok(MasterToCs::GetChunkChecksum { chunkid, version })
            }
            ANTOCS_GET_CHUNK_CHECKSUM_TAB => {
                let (chunkid, version) = id_ver("ANTOCS_GET_CHUNK_CHECKSUM_TAB", p)?;
                Ok(MasterToCs::GetChunkChecksumTab { chunkid, version })
            }
            t => Err(DecodeError::UnknownType(t)),
        }
    }

    fn decode_ack(p: &[u8]) -> Result<Self, DecodeError> {
        const M: &str = "MATOCS_MASTER_ACK";
        const LENS: &str = "1|5|7|9|15|17|33";
        if ![1, 5, 7, 9, 15, 17, 33].contains(&p.len()) {
            return Err(DecodeError::BadLength {
                msg: M,
                len: p.len(),
                expected: LENS,
            });
        }
        let mut r = Reader::new(M, p);
        let atype = r.u8()?;
        match (atype, p.len()) {
            (0, 1 | 5 | 9 | 17) => {
                let mut a = Accepted {
                    version: None,
                    timeout: None,
                    csid: None,
                    metaid: None,
                };
                if p.len() >= 5 {
                    a.version = Some(r.u32()?);
                }
                if p.len() >= 9 {
                    a.timeout = Some(r.u16()?);
                    a.csid = Some(r.u16()?);
                }
                if p.len() >= 17 {
                    a.metaid = Some(r.u64()?);
                }
                Ok(MasterToCs::Ack(a))
            }
            (1, 5) => Ok(MasterToCs::Redirect { ip: r.u32()? }),
            (2, 7 | 15) => {
                let version = r.u32()?;
                let timeout = r.u16()?;
                let metaid = if p.len() == 15 { Some(r.u64()?) } else { None };
                Ok(MasterToCs::Wait {
                    version,
                    timeout,
                    metaid,
                })
            }
            (3, 33) => Ok(MasterToCs::AuthChallenge(r.array()?)),
            (t, _) => Err(DecodeError::BadValue {
                msg: M,
                field: "atype/length",
                value: ((t as u64) << 32) | p.len() as u64,
            }),
        }
    }

    /// Encodes the message as a complete packet.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            MasterToCs::Nop => Writer::packet(ANTOAN_NOP, 0).finish(),
            MasterToCs::Ack(a) => {
                let len = match (a.version, a.timeout.zip(a.csid), a.metaid) {
                    (None, _, _) => 1,
                    (Some(_), None, _) => 5,
                    (Some(_), Some(_), None) => 9,
                    (Some(_), Some(_), Some(_)) => 17,
                };
                let mut w = Writer::packet(MATOCS_MASTER_ACK, len).u8(0);
                if len >= 5 {
                    w = w.u32(a.version.unwrap_or(0));
                }
                if len >= 9 {
                    w = w.u16(a.timeout.unwrap_or(0)).u16(a.csid.unwrap_or(0));
                }
                if len >= 17 {
                    w = w.u64(a.metaid.unwrap_or(0));
                }
                w.finish()
            }
            MasterToCs::Redirect { ip } => {
                Writer::packet(MATOCS_MASTER_ACK, 5).u8(1).u32(*ip).finish()
            }
            MasterToCs::Wait {
                version,
                timeout,
                metaid,
            } => {
                let w = Writer::packet(MATOCS_MASTER_ACK, if metaid.is_some() { 15 } else { 7 })
                    .u8(2)
                    .u32(*version)
                    .u16(*timeout);
                match metaid {
                    Some(m) => w.u64(*m).finish(),
                    None => w.finish(),
                }
            }
            MasterToCs::AuthChallenge(rnd) => Writer::packet(MATOCS_MASTER_ACK, 33)
                .u8(3)
                .bytes(rnd)
                .finish(),
            MasterToCs::Create { chunkid, version } => Writer::packet(MATOCS_CREATE, 12)
                .u64(*chunkid)
                .u32(*version)
                .finish(),
            MasterToCs::Delete { chunkid, version } => Writer::packet(MATOCS_DELETE, 12)
                .u64(*chunkid)
                .u32(*version)
                .finish(),
            MasterToCs::SetVersion {
                chunkid,
                new_version,
                old_version,
            } => Writer::packet(MATOCS_SET_VERSION, 16)
                .u64(*chunkid)
                .u32(*new_version)
                .u32(*old_version)
                .finish(),
            MasterToCs::Duplicate {
                new_chunkid,
                new_version,
                src_chunkid,
                src_version,
            } => Writer::packet(MATOCS_DUPLICATE, 24)
                .u64(*new_chunkid)
                .u32(*new_version)
                .u64(*src_chunkid)
                .u32(*src_version)
                .finish(),
            MasterToCs::Truncate {
                chunkid,
                length,
                new_version,
                old_version,
            } => Writer::packet(MATOCS_TRUNCATE, 20)
                .u64(*chunkid)
                .u32(*length)
                .u32(*new_version)
                .u32(*old_version)
                .finish(),
            MasterToCs::DupTrunc {
                new_chunkid,
                new_version,
                src_chunkid,
                src_version,
                length,
            } => Writer::packet(MATOCS_DUPTRUNC, 28)
                .u64(*new_chunkid)
                .u32(*new_version)
                .u64(*src_chunkid)
                .u32(*src_version)
                .u32(*length)
                .finish(),
            MasterToCs::ChunkOp(a) => a.write(Writer::packet(MATOCS_CHUNKOP, 32)).finish(),
            MasterToCs::Replicate {
                chunkid,
                version,
                ip,
                port,
            } => Writer::packet(MATOCS_REPLICATE, 18)
                .u64(*chunkid)
                .u32(*version)
                .u32(*ip)
                .u16(*port)
                .finish(),
            MasterToCs::GetChunkBlocks { chunkid, version } => {
                Writer::packet(ANTOCS_GET_CHUNK_BLOCKS, 12)
                    .u64(*chunkid)
                    .u32(*version)
                    .finish()
            }
            MasterToCs::GetChunkChecksum { chunkid, version } => {
                Writer::packet(ANTOCS_GET_CHUNK_CHECKSUM, 12)
                    .u64(*chunkid)
                    .u32(*version)
                    .finish()
            }
            MasterToCs::GetChunkChecksumTab { chunkid, version } => {
                Writer::packet(ANTOCS_GET_CHUNK_CHECKSUM_TAB, 12)
                    .u64(*chunkid)
                    .u32(*version)
                    .finish()
            }
        }
    }
}

/// Space figures a chunkserver reports (bytes; `td_*` = disks marked for removal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpaceInfo {
    /// Used bytes.
    pub used: u64,
    /// Total bytes.
    pub total: u64,
    /// Number of chunks.
    pub chunks: u32,
    /// Used bytes on disks marked for removal.
    pub td_used: u64,
    /// Total bytes on disks marked for removal.
    pub td_total: u64,
    /// Chunks on disks marked for removal.
    pub td_chunks: u32,
}

impl SpaceInfo {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SpaceInfo {
            used: r.u64()?,
            total: r.u64()?,
            chunks: r.u32()?,
            td_used: r.u64()?,
            td_total: r.u64()?,
            td_chunks: r.u32()?,
        })
    }
    fn write(&self, w: Writer) -> Writer {
        w.u64(self.used)
            .u64(self.total)
            .u32(self.chunks)
            .u64(self.td_used)
            .u64(self.td_total)
            .u32(self.td_chunks)
    }
}

/// Identity sent in the BEGIN phase of registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterBegin {
    /// Answer to the master's AUTH_CODE challenge, when one was received.
    pub auth: Option<[u8; 16]>,
    /// Our version (`VERSHEX`).
    pub version: u32,
    /// Address clients use to reach us (0 = let the master use the connection's source).
    pub ip: u32,
    /// Data port.
    pub port: u16,
    /// Requested timeout (0 = master's default).
    pub timeout: u16,
    /// Chunkserver id remembered from earlier registrations (0 = new).
    pub csid: u16,
    /// Space report.
    pub space: SpaceInfo,
}

/// A one-status answer to an order (`chunkid:64 status:8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// Answer to create.
    Create,
    /// Answer to delete.
    Delete,
    /// Answer to duplicate.
    Duplicate,
    /// Answer to set-version.
    SetVersion,
    /// Answer to truncate.
    Truncate,
    /// Answer to duptrunc.
    DupTrunc,
}

impl StatusKind {
    /// The reply message type.
    pub fn msg_type(self) -> u32 {
        match self {
            StatusKind::Create => CSTOMA_CREATE,
            StatusKind::Delete => CSTOMA_DELETE,
            StatusKind::Duplicate => CSTOMA_DUPLICATE,
            StatusKind::SetVersion => CSTOMA_SET_VERSION,
            StatusKind::Truncate => CSTOMA_TRUNCATE,
            StatusKind::DupTrunc => CSTOMA_DUPTRUNC,
        }
    }
    fn from_type(t: u32) -> Option<Self> {
        Some(match t {
            CSTOMA_CREATE => StatusKind::Create,
            CSTOMA_DELETE => StatusKind::Delete,
            CSTOMA_DUPLICATE => StatusKind::Duplicate,
            CSTOMA_SET_VERSION => StatusKind::SetVersion,
            CSTOMA_TRUNCATE => StatusKind::Truncate,
            CSTOMA_DUPTRUNC => StatusKind::DupTrunc,
            _ => return None,
        })
    }
}

/// Messages a chunkserver sends to its master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsToMaster {
    /// Keep-alive.
    Nop,
    /// Registration phase 60.
    RegisterBegin(RegisterBegin),
    /// Registration phase 61: a batch of `(chunkid, version)`; the high bit of the
    /// version marks a chunk on a disk marked for removal.
    RegisterChunks(Vec<(u64, u32)>),
    /// Registration phase 62.
    RegisterEnd,
    /// Registration phase 63: clean disconnect.
    RegisterDisconnect,
    /// Space report.
    Space(SpaceInfo),
    /// Chunks whose copy here is damaged.
    ChunkDamaged(Vec<u64>),
    /// Chunks the master believes we have but which are gone.
    ChunkLost(Vec<u64>),
    /// Chunks found after registration.
    ChunkNew(Vec<(u64, u32)>),
    /// One disk error happened.
    ErrorOccurred,
    /// Label mask.
    Labels(u32),
    /// Load and health status.
    CurrentLoad {
        /// Number of queued jobs.
        load: u32,
        /// 0 = not counted, 1 = ok, 2 = overloaded, 3 = rebalance.
        hlstatus: u8,
    },
    /// Answer to one of the simple orders.
    Status {
        /// Which order.
        kind: StatusKind,
        /// Chunk id (the copy's id for duplicate/duptrunc).
        chunkid: u64,
        /// Status code.
        status: u8,
    },
    /// Answer to a replication order.
    ReplicateStatus {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
        /// Status code.
        status: u8,
    },
    /// Answer to a CHUNKOP.
    ChunkOpStatus(ChunkOpArgs, u8),
    /// Answer to GET_CHUNK_BLOCKS.
    ChunkBlocks {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
        /// Block count.
        blocks: u16,
        /// Status code.
        status: u8,
    },
    /// Answer to GET_CHUNK_CHECKSUM.
    ChunkChecksum {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
        /// CRC of the CRC table, or the error status.
        result: Result<u32, u8>,
    },
    /// Answer to GET_CHUNK_CHECKSUM_TAB.
    ChunkChecksumTab {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
        /// The 1024 block CRCs, or the error status.
        result: Result<Box<[u8; 4096]>, u8>,
    },
}

impl CsToMaster {
    /// Encodes the message as a complete packet.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            CsToMaster::Nop => Writer::packet(ANTOAN_NOP, 0).finish(),
            CsToMaster::RegisterBegin(b) => {
                let alen = if b.auth.is_some() { 16 } else { 0 };
                let mut w =
                    Writer::packet(CSTOMA_REGISTER, 1 + alen + 4 + 4 + 2 + 2 + 2 + 40).u8(60);
                if let Some(a) = &b.auth {
                    w = w.bytes(a);
                }
                w = w
                    .u32(b.version)
                    .u32(b.ip)
                    .u16(b.port)
                    .u16(b.timeout)
                    .u16(b.csid);
                b.space.write(w).finish()
            }
            CsToMaster::RegisterChunks(list) => {
                let mut w = Writer::packet(CSTOMA_REGISTER, 1 + 12 * list.len()).u8(61);
                for (id, v) in list {
                    w = w.u64(*id).u32(*v);
                }
                w.finish()
            }
            CsToMaster::RegisterEnd => Writer::packet(CSTOMA_REGISTER, 1).u8(62).finish(),
            CsToMaster::RegisterDisconnect => Writer::packet(CSTOMA_REGISTER, 1).u8(63).finish(),
            CsToMaster::Space(s) => s.write(Writer::packet(CSTOMA_SPACE, 40)).finish(),
            CsToMaster::ChunkDamaged(ids) => ids_packet(CSTOMA_CHUNK_DAMAGED, ids),
            CsToMaster::ChunkLost(ids) => ids_packet(CSTOMA_CHUNK_LOST, ids),
            CsToMaster::ChunkNew(list) => {
                let mut w = Writer::packet(CSTOMA_CHUNK_NEW, 12 * list.len());
                for (id, v) in list {
                    w = w.u64(*id).u32(*v);
                }
                w.finish()
            }
            CsToMaster::ErrorOccurred => Writer::packet(CSTOMA_ERROR_OCCURRED, 0).finish(),
            CsToMaster::Labels(m) => Writer::packet(CSTOMA_LABELS, 4).u32(*m).finish(),
            CsToMaster::CurrentLoad { load, hlstatus } => Writer::packet(CSTOMA_CURRENT_LOAD, 5)
                .u32(*load)
                .u8(*hlstatus)
                .finish(),
            CsToMaster::Status {
                kind,
                chunkid,
                status,
            } => Writer::packet(kind.msg_type(), 9)
                .u64(*chunkid)
                .u8(*status)
                .finish(),
            CsToMaster::ReplicateStatus {
                chunkid,
                version,
                status,
            } => Writer::packet(CSTOMA_REPLICATE, 13)
                .u64(*chunkid)
                .u32(*version)
                .u8(*status)
                .finish(),
            CsToMaster::ChunkOpStatus(a, status) => a
                .write(Writer::packet(CSTOMA_CHUNKOP, 33))
                .u8(*status)
                .finish(),
            CsToMaster::ChunkBlocks {
                chunkid,
                version,
                blocks,
                status,
            } => Writer::packet(CSTOAN_CHUNK_BLOCKS, 15)
                .u64(*chunkid)
                .u32(*version)
                .u16(*blocks)
                .u8(*status)
                .finish(),
            CsToMaster::ChunkChecksum {
                chunkid,
                version,
                result,
            } => match result {
                Ok(c) => Writer::packet(CSTOAN_CHUNK_CHECKSUM, 16)
                    .u64(*chunkid)
                    .u32(*version)
                    .u32(*c)
                    .finish(),
                Err(s) => Writer::packet(CSTOAN_CHUNK_CHECKSUM, 13)
                    .u64(*chunkid)
                    .u32(*version)
                    .u8(*s)
                    .finish(),
            },
            CsToMaster::ChunkChecksumTab {
                chunkid,
                version,
                result,
            } => match result {
                Ok(t) => Writer::packet(CSTOAN_CHUNK_CHECKSUM_TAB, 12 + 4096)
                    .u64(*chunkid)
                    .u32(*version)
                    .bytes(&t[..])
                    .finish(),
                Err(s) => Writer::packet(CSTOAN_CHUNK_CHECKSUM_TAB, 13)
                    .u64(*chunkid)
                    .u32(*version)
                    .u8(*s)
                    .finish(),
            },
        }
    }

    /// Decodes a packet received from a chunkserver.
    pub fn decode(msg_type: u32, p: &[u8]) -> Result<Self, DecodeError> {
        match msg_type {
            ANTOAN_NOP => Ok(CsToMaster::Nop),
            CSTOMA_REGISTER => {
                const M: &str = "CSTOMA_REGISTER";
                let mut r = Reader::new(M, p);
                match r.u8()? {
                    60 => {
                        let auth = match p.len() {
                            55 => None,
                            71 => Some(r.array::<16>()?),
                            _ => {
                                return Err(DecodeError::BadLength {
                                    msg: M,
                                    len: p.len(),
                                    expected: "55|71",
                                })
                            }
                        };
                        Ok(CsToMaster::RegisterBegin(RegisterBegin {
                            auth,
                            version: r.u32()?,
                            ip: r.u32()?,
                            port: r.u16()?,
                            timeout: r.u16()?,
                            csid: r.u16()?,
                            space: SpaceInfo::read(&mut r)?,
                        }))
                    }
                    61 => {
                        if !(p.len() - 1).is_multiple_of(12) {
                            return Err(DecodeError::BadLength {
                                msg: M,
                                len: p.len(),
                                expected: "1+N*12",
                            });
                        }
                        let mut v = Vec::with_capacity((p.len() - 1) / 12);
                        while r.remaining() > 0 {
                            v.push((r.u64()?, r.u32()?));
                        }
                        Ok(CsToMaster::RegisterChunks(v))
                    }
                    62 | 63 if p.len() != 1 => Err(DecodeError::BadLength {
                        msg: M,
                        len: p.len(),
                        expected: "1",
                    }),
                    62 => Ok(CsToMaster::RegisterEnd),
                    63 => Ok(CsToMaster::RegisterDisconnect),
                    v => Err(DecodeError::BadValue {
                        msg: M,
                        field: "rver",
                        value: v as u64,
                    }),
                }
            }
            CSTOMA_SPACE => {
                exact("CSTOMA_SPACE", p, 40, "40")?;
                Ok(CsToMaster::Space(SpaceInfo::read(&mut Reader::new(
                    "CSTOMA_SPACE",
                    p,
                ))?))
            }
            CSTOMA_CHUNK_DAMAGED => Ok(CsToMaster::ChunkDamaged(read_ids(
                "CSTOMA_CHUNK_DAMAGED",
                p,
            )?)),
            CSTOMA_CHUNK_LOST => Ok(CsToMaster::ChunkLost(read_ids("CSTOMA_CHUNK_LOST", p)?)),
            CSTOMA_CHUNK_NEW => {
                const M: &str = "CSTOMA_CHUNK_NEW";
                if !p.len().is_multiple_of(12) {
                    return Err(DecodeError::BadLength {
                        msg: M,
                        len: p.len(),
                        expected: "N*12",
                    });
                }
                let mut r = Reader::new(M, p);
                let mut v = Vec::with_capacity(p.len() / 12);
                while r.remaining() > 0 {
                    v.push((r.u64()?, r.u32()?));
                }
                Ok(CsToMaster::ChunkNew(v))
            }
            CSTOMA_ERROR_OCCURRED => {
                exact("CSTOMA_ERROR_OCCURRED", p, 0, "0")?;
                Ok(CsToMaster::ErrorOccurred)
            }
            CSTOMA_LABELS => {
                exact("CSTOMA_LABELS", p, 4, "4")?;
                Ok(CsToMaster::Labels(Reader::new("CSTOMA_LABELS", p).u32()?))
            }
            CSTOMA_CURRENT_LOAD => {
                exact("CSTOMA_CURRENT_LOAD", p, 5, "5")?;
                let mut r = Reader::new("CSTOMA_CURRENT_LOAD", p);
                Ok(CsToMaster::CurrentLoad {
                    load: r.u32()?,
                    hlstatus: r.u8()?,
                })
            }
            CSTOMA_REPLICATE => {
                exact("CSTOMA_REPLICATE", p, 13, "13")?;
                let mut r = Reader::new("CSTOMA_REPLICATE", p);
                Ok(CsToMaster::ReplicateStatus {
                    chunkid: r.u64()?,
                    version: r.u32()?,
                    status: r.u8()?,
                })
            }
            CSTOMA_CHUNKOP => {
                exact("CSTOMA_CHUNKOP", p, 33, "33")?;
                let mut r = Reader::new("CSTOMA_CHUNKOP", p);
                let a = ChunkOpArgs::read(&mut r)?;
                Ok(CsToMaster::ChunkOpStatus(a, r.u8()?))
            }
            CSTOAN_CHUNK_BLOCKS => {
                exact("CSTOAN_CHUNK_BLOCKS", p, 15, "15")?;
                let mut r = Reader::new("CSTOAN_CHUNK_BLOCKS", p);
                Ok(CsToMaster::ChunkBlocks {
                    chunkid: r.u64()?,
                    version: r.u32()?,
                    blocks: r.u16()?,
                    status: r.u8()?,
                })
            }
            CSTOAN_CHUNK_CHECKSUM => {
                const M: &str = "CSTOAN_CHUNK_CHECKSUM";
                let mut r = Reader::new(M, p);
                let (chunkid, version) = (r.u64()?, r.u32()?);
                let result = match p.len() {
                    16 => Ok(r.u32()?),
                    13 => Err(r.u8()?),
                    _ => {
                        return Err(DecodeError::BadLength {
                            msg: M,
                            len: p.len(),
                            expected: "13|16",
                        })
                    }
                };
                Ok(CsToMaster::ChunkChecksum {
                    chunkid,
                    version,
                    result,
                })
            }
            CSTOAN_CHUNK_CHECKSUM_TAB => {
                const M: &str = "CSTOAN_CHUNK_CHECKSUM_TAB";
                let mut r = Reader::new(M, p);
                let (chunkid, version) = (r.u64()?, r.u32()?);
                let result = match p.len() {
                    4108 => Ok(Box::new(r.array::<4096>()?)),
                    13 => Err(r.u8()?),
                    _ => {
                        return Err(DecodeError::BadLength {
                            msg: M,
                            len: p.len(),
                            expected: "13|4108",
                        })
                    }
                };
                Ok(CsToMaster::ChunkChecksumTab {
                    chunkid,
                    version,
                    result,
                })
            }
            t => match StatusKind::from_type(t) {
                Some(kind) => {
                    exact("CSTOMA status reply", p, 9, "9")?;
                    let mut r = Reader::new("CSTOMA status reply", p);
                    Ok(CsToMaster::Status {
                        kind,
                        chunkid: r.u64()?,
                        status: r.u8()?,
                    })
                }
                None => Err(DecodeError::UnknownType(t)),
            },
        }
    }
}

fn ids_packet(t: u32, ids: &[u64]) -> Vec<u8> {
    let mut w = Writer::packet(t, 8 * ids.len());
    for id in ids {
        w = w.u64(*id);
    }
    w.finish()
}

fn read_ids(msg: &'static str, p: &[u8]) -> Result<Vec<u64>, DecodeError> {
    if !p.len().is_multiple_of(8) {
        return Err(DecodeError::BadLength {
            msg,
            len: p.len(),
            expected: "N*8",
        });
    }
    let mut r = Reader::new(msg, p);
    let mut v = Vec::with_capacity(p.len() / 8);
    while r.remaining() > 0 {
        v.push(r.u64()?);
    }
    Ok(v)
}
