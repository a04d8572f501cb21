//! The data path: client ↔ chunkserver and chunkserver ↔ chunkserver messages.
//!
//! Reads: `CLTOCS_READ` is answered by one `CSTOCL_READ_DATA` per block piece (each
//! with the CRC-32 of its bytes) and a final `CSTOCL_READ_STATUS`.
//!
//! Writes form a chain: `CLTOCS_WRITE` carries the rest of the chain as `ip:port`
//! pairs; every chunkserver pops the first pair, forwards the request to it and relays.
//! Data comes as `CLTOCS_WRITE_DATA` pieces; statuses flow back per write id as
//! `CSTOCL_WRITE_STATUS` (write id 0 = the chain is ready, or an error for the whole
//! chain). `CLTOCS_WRITE_FINISH` ends the chain. A leading `protocolid` byte (odd payload
//! length) marks the 1.7.32+ dialect, in which NOPs may be interleaved.
//!
//! Decoders borrow data from the payload, so a write piece is never copied.

use crate::codes::*;
use crate::frame::{DecodeError, Reader, Writer, HEADER_LEN};
use crate::version::{VERSMAJ, VERSMID, VERSMIN, VERSSTR};

/// Payload bytes of a `CSTOCL_READ_DATA` / `CLTOCS_WRITE_DATA` before the data
/// (`chunkid:64 blocknum:16 offset:16 size:32 crc:32` for reads; writes add `writeid:32`).
pub const READ_DATA_PREFIX: usize = 20;
/// Payload bytes of a `CLTOCS_WRITE_DATA` before the data.
pub const WRITE_DATA_PREFIX: usize = 24;

/// Messages a chunkserver receives on its data port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToCs<'a> {
    /// Keep-alive.
    Nop,
    /// Version query (with the optional msgid some tools send).
    GetVersion {
        /// Message id to echo.
        msgid: Option<u32>,
    },
    /// Read `size` bytes at `offset` of a chunk.
    Read(ReadReq),
    /// Open a write chain.
    Write(WriteReq),
    /// One piece of data for an open write chain.
    WriteData(WriteData<'a>),
    /// End of the write chain.
    WriteFinish {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
    },
    /// Block count query.
    GetChunkBlocks {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
    },
    /// Checksum query.
    GetChunkChecksum {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
    },
    /// CRC table query.
    GetChunkChecksumTab {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
    },
}

/// A read request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadReq {
    /// `Some(protocolid)` for the 21-byte form (NOPs may be interleaved), `None` for the
    /// legacy 20-byte form (used by chunkserver replication).
    pub protocol: Option<u8>,
    /// Chunk id.
    pub chunkid: u64,
    /// Version (0 = any).
    pub version: u32,
    /// Offset inside the chunk.
    pub offset: u32,
    /// Bytes to read.
    pub size: u32,
}

/// A write chain request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReq {
    /// Protocol id byte if present (odd payload length).
    pub protocol: Option<u8>,
    /// Chunk id.
    pub chunkid: u64,
    /// Version the chunk must have.
    pub version: u32,
    /// Remaining chain: where to forward (first) and beyond.
    pub chain: Vec<(u32, u16)>,
}

/// A write piece, borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteData<'a> {
    /// Chunk id.
    pub chunkid: u64,
    /// Write id (echoed in the status).
    pub writeid: u32,
    /// Block number inside the chunk.
    pub blocknum: u16,
    /// Offset inside the block.
    pub offset: u16,
    /// CRC-32 of `data` as computed by the sender.
    pub crc: u32,
    /// The bytes.
    pub data: &'a [u8],
}

fn id_ver(msg: &'static str, p: &[u8]) -> Result<(u64, u32), DecodeError> {
    if p.len() != 12 {
        return Err(DecodeError::BadLength {
            msg,
            len: p.len(),
            expected: "12",
        });
    }
    let mut r = Reader::new(msg, p);
    Ok((r.u64()?, r.u32()?))
}

impl<'a> ToCs<'a> {
    /// Decodes a packet received on the data port.
    pub fn decode(msg_type: u32, p: &'a [u8]) -> Result<Self, DecodeError> {
        match msg_type {
            ANTOAN_NOP => Ok(ToCs::Nop),
            ANTOAN_GET_VERSION => match p.len() {
                0 => Ok(ToCs::GetVersion { msgid: None }),
                4 => Ok(ToCs::GetVersion {
                    msgid: Some(Reader::new("ANTOAN_GET_VERSION", p).u32()?),
                }),
                n => Err(DecodeError::BadLength {
                    msg: "ANTOAN_GET_VERSION",
                    len: n,
                    expected: "0|4",
                }),
            },
            CLTOCS_READ => {
                const M: &str = "CLTOCS_READ";
                let mut r = Reader::new(M, p);
                let protocol = match p.len() {
                    21 => Some(r.u8()?),
                    20 => None,
                    n => {
                        return Err(DecodeError::BadLength {
                            msg: M,
                            len: n,
                            expected: "20|21",
                        })
                    }
                };
                Ok(ToCs::Read(ReadReq {
                    protocol,
                    chunkid: r.u64()?,
                    version: r.u32()?,
                    offset: r.u32()?,
                    size: r.u32()?,
                }))
            }
            CLTOCS_WRITE => {
                const M: &str = "CLTOCS_WRITE";
                let mut r = Reader::new(M, p);
                let protocol = if p.len() % 2 == 1 {
                    Some(r.u8()?)
                } else {
                    None
                };
                if r.remaining() < 12 || !(r.remaining() - 12).is_multiple_of(6) {
                    return Err(DecodeError::BadLength {
                        msg: M,
                        len: p.len(),
                        expected: "12+N*6 or 13+N*6",
                    });
                }
                let chunkid = r.u64()?;
                let version = r.u32()?;
                let mut chain = Vec::with_capacity(r.remaining() / 6);
                while r.remaining() > 0 {
                    chain.push((r.u32()?, r.u16()?));
                }
                Ok(ToCs::Write(WriteReq {
                    protocol,
                    chunkid,
                    version,
                    chain,
                }))
            }
            CLTOCS_WRITE_DATA => {
                const M: &str = "CLTOCS_WRITE_DATA";
                let mut r = Reader::new(M, p);
                if p.len() < WRITE_DATA_PREFIX {
                    return Err(DecodeError::BadLength {
                        msg: M,
                        len: p.len(),
                        expected: "24+size",
                    });
                }
                let chunkid = r.u64()?;
                let writeid = r.u32()?;
                let blocknum = r.u16()?;
                let offset = r.u16()?;
                let size = r.u32()?;
                let crc = r.u32()?;
                if r.remaining() as u64 != size as u64 {
                    return Err(DecodeError::BadLength {
                        msg: M,
                        len: p.len(),
                        expected: "24+size",
                    });
                }
                Ok(ToCs::WriteData(WriteData {
                    chunkid,
                    writeid,
                    blocknum,
                    offset,
                    crc,
                    data: r.rest(),
                }))
            }
            CLTOCS_WRITE_FINISH => {
                let (chunkid, version) = id_ver("CLTOCS_WRITE_FINISH", p)?;
                Ok(ToCs::WriteFinish { chunkid, version })
            }
            ANTOCS_GET_CHUNK_BLOCKS => {
                let (chunkid, version) = id_ver("ANTOCS_GET_CHUNK_BLOCKS", p)?;
                Ok(ToCs::GetChunkBlocks { chunkid, version })
            }
            ANTOCS_GET_CHUNK_CHECKSUM => {
                let (chunkid, version) = id_ver("ANTOCS_GET_CHUNK_CHECKSUM", p)?;
                Ok(ToCs::GetChunkChecksum { chunkid, version })
            }
            ANTOCS_GET_CHUNK_CHECKSUM_TAB => {
                let (chunkid, version) = id_ver("ANTOCS_GET_CHUNK_CHECKSUM_TAB", p)?;
                Ok(ToCs::GetChunkChecksumTab { chunkid, version })
            }
            t => Err(DecodeError::UnknownType(t)),
        }
    }

    /// Encodes the message as a complete packet.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToCs::Nop => Writer::packet(ANTOAN_NOP, 0).finish(),
            ToCs::GetVersion { msgid: None } => Writer::packet(ANTOAN_GET_VERSION, 0).finish(),
            ToCs::GetVersion { msgid: Some(m) } => {
                Writer::packet(ANTOAN_GET_VERSION, 4).u32(*m).finish()
            }
            ToCs::Read(r) => encode_read(r),
            ToCs::Write(w) => encode_write(w.protocol, w.chunkid, w.version, &w.chain),
            ToCs::WriteData(d) => {
                let mut v = write_data_header(
                    d.chunkid,
                    d.writeid,
                    d.blocknum,
                    d.offset,
                    d.data.len() as u32,
                    d.crc,
                )
                .to_vec();
                v.extend_from_slice(d.data);
                v
            }
            ToCs::WriteFinish { chunkid, version } => Writer::packet(CLTOCS_WRITE_FINISH, 12)
                .u64(*chunkid)
                .u32(*version)
                .finish(),
            ToCs::GetChunkBlocks { chunkid, version } => {
                Writer::packet(ANTOCS_GET_CHUNK_BLOCKS, 12)
                    .u64(*chunkid)
                    .u32(*version)
                    .finish()
            }
            ToCs::GetChunkChecksum { chunkid, version } => {
                Writer::packet(ANTOCS_GET_CHUNK_CHECKSUM, 12)
                    .u64(*chunkid)
                    .u32(*version)
                    .finish()
            }
            ToCs::GetChunkChecksumTab { chunkid, version } => {
                Writer::packet(ANTOCS_GET_CHUNK_CHECKSUM_TAB, 12)
                    .u64(*chunkid)
                    .u32(*version)
                    .finish()
            }
        }
    }
}

/// Encodes a read request.
pub fn encode_read(r: &ReadReq) -> Vec<u8> {
    let len = if r.protocol.is_some() { 21 } else { 20 };
    let mut w = Writer::packet(CLTOCS_READ, len);
    if let Some(p) = r.protocol {
        w = w.u8(p);
    }
    w.u64(r.chunkid)
        .u32(r.version)
        .u32(r.offset)
        .u32(r.size)
        .finish()
}

/// Encodes a write-chain request for the given (remaining) chain.
pub fn encode_write(
    protocol: Option<u8>,
    chunkid: u64,
    version: u32,
    chain: &[(u32, u16)],
) -> Vec<u8> {
    let len = protocol.map_or(0, |_| 1) + 12 + 6 * chain.len();
    let mut w = Writer::packet(CLTOCS_WRITE, len);
    if let Some(p) = protocol {
        w = w.u8(p);
    }
    w = w.u64(chunkid).u32(version);
    for (ip, port) in chain {
        w = w.u32(*ip).u16(*port);
    }
    w.finish()
}

/// Packet header plus the fixed part of a `CLTOCS_WRITE_DATA`; the data follows.
pub fn write_data_header(
    chunkid: u64,
    writeid: u32,
    blocknum: u16,
    offset: u16,
    size: u32,
    crc: u32,
) -> [u8; HEADER_LEN + WRITE_DATA_PREFIX] {
    let v = Writer::packet(CLTOCS_WRITE_DATA, WRITE_DATA_PREFIX + size as usize)
        .u64(chunkid)
        .u32(writeid)
        .u16(blocknum)
        .u16(offset)
        .u32(size)
        .u32(crc);
    let mut out = [0u8; HEADER_LEN + WRITE_DATA_PREFIX];
    // The writer announced the full length; only the fixed part is copied here.
    let bytes = v.into_inner_unchecked();
    out.copy_from_slice(&bytes);
    out
}

/// Packet header plus the fixed part of a `CSTOCL_READ_DATA`; `size` data bytes follow.
pub fn read_data_header(
    chunkid: u64,
    blocknum: u16,
    offset: u16,
    size: u32,
    crc: u32,
) -> [u8; HEADER_LEN + READ_DATA_PREFIX] {
    let v = Writer::packet(CSTOCL_READ_DATA, READ_DATA_PREFIX + size as usize)
        .u64(chunkid)
        .u16(blocknum)
        .u16(offset)
        .u32(size)
        .u32(crc)
        .into_inner_unchecked();
    let mut out = [0u8; HEADER_LEN + READ_DATA_PREFIX];
    out.copy_from_slice(&v);
    out
}

/// `CSTOCL_READ_STATUS chunkid:64 status:8`.
pub fn read_status(chunkid: u64, status: u8) -> Vec<u8> {
    Writer::packet(CSTOCL_READ_STATUS, 9)
        .u64(chunkid)
        .u8(status)
        .finish()
}

/// `CSTOCL_WRITE_STATUS chunkid:64 writeid:32 status:8`.
pub fn write_status(chunkid: u64, writeid: u32, status: u8) -> [u8; 21] {
    let v = Writer::packet(CSTOCL_WRITE_STATUS, 13)
        .u64(chunkid)
        .u32(writeid)
        .u8(status)
        .finish();
    let mut out = [0u8; 21];
    out.copy_from_slice(&v);
    out
}

/// `ANTOAN_VERSION [msgid] maj:16 mid:8 min:8 text`.
pub fn version_reply(msgid: Option<u32>) -> Vec<u8> {
    let len = msgid.map_or(0, |_| 4) + 4 + VERSSTR.len();
    let mut w = Writer::packet(ANTOAN_VERSION, len);
    if let Some(m) = msgid {
        w = w.u32(m);
    }
    w.u16(VERSMAJ)
        .u8(VERSMID)
        .u8(VERSMIN)
        .bytes(VERSSTR.as_bytes())
        .finish()
}

/// Messages a chunkserver sends on a data connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromCs<'a> {
    /// Keep-alive.
    Nop,
    /// End of a read, or a read error.
    ReadStatus {
        /// Chunk id.
        chunkid: u64,
        /// Status code.
        status: u8,
    },
    /// A piece of read data.
    ReadData {
        /// Chunk id.
        chunkid: u64,
        /// Block number.
        blocknum: u16,
        /// Offset in the block.
        offset: u16,
        /// CRC-32 of `data`.
        crc: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// Status of one write piece (write id 0: chain setup or chain-wide error).
    WriteStatus {
        /// Chunk id.
        chunkid: u64,
        /// Write id.
        writeid: u32,
        /// Status code.
        status: u8,
    },
    /// Answer to a block count query.
    ChunkBlocks {
        /// Chunk id.
        chunkid: u64,
        /// Version.
        version: u32,
        /// Number of blocks.
        blocks: u16,
        /// Status.
        status: u8,
    },
}

impl<'a> FromCs<'a> {
    /// Decodes a packet sent by a chunkserver on a data connection.
    pub fn decode(msg_type: u32, p: &'a [u8]) -> Result<Self, DecodeError> {
        match msg_type {
            ANTOAN_NOP => Ok(FromCs::Nop),
            CSTOCL_READ_STATUS => {
                const M: &str = "CSTOCL_READ_STATUS";
                if p.len() != 9 {
                    return Err(DecodeError::BadLength {
                        msg: M,
                        len: p.len(),
                        expected: "9",
                    });
                }
                let mut r = Reader::new(M, p);
                Ok(FromCs::ReadStatus {
                    chunkid: r.u64()?,
                    status: r.u8()?,
                })
            }
            CSTOCL_READ_DATA => {
                const M: &str = "CSTOCL_READ_DATA";
                let mut r = Reader::new(M, p);
                if p.len() < READ_DATA_PREFIX {
                    return Err(DecodeError::BadLength {
                        msg: M,
                        len: p.len(),
                        expected: "20+size",
                    });
                }
                let chunkid = r.u64()?;
                let blocknum = r.u16()?;
                let offset = r.u16()?;
                let size = r.u32()?;
                let crc = r.u32()?;
                if r.remaining() as u64 != size as u64 {
                    return Err(DecodeError::BadLength {
                        msg: M,
                        len: p.len(),
                        expected: "20+size",
                    });
                }
                Ok(FromCs::ReadData {
                    chunkid,
                    blocknum,
                    offset,
                    crc,
                    data: r.rest(),
                })
            }
            CSTOCL_WRITE_STATUS => {
                const M: &str = "CSTOCL_WRITE_STATUS";
                if p.len() != 13 {
                    return Err(DecodeError::BadLength {
                        msg: M,
                        len: p.len(),
                        expected: "13",
                    });
                }
                let mut r = Reader::new(M, p);
                Ok(FromCs::WriteStatus {
                    chunkid: r.u64()?,
                    writeid: r.u32()?,
                    status: r.u8()?,
                })
            }
            CSTOAN_CHUNK_BLOCKS => {
                const M: &str = "CSTOAN_CHUNK_BLOCKS";
                if p.len() != 15 {
                    return Err(DecodeError::BadLength {
                        msg: M,
                        len: p.len(),
                        expected: "15",
                    });
                }
                let mut r = Reader::new(M, p);
                Ok(FromCs::ChunkBlocks {
                    chunkid: r.u64()?,
                    version: r.u32()?,
                    blocks: r.u16()?,
                    status: r.u8()?,
                })
            }
            t => Err(DecodeError::UnknownType(t)),
        }
    }

    /// Encodes the message as a complete packet.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            FromCs::Nop => Writer::packet(ANTOAN_NOP, 0).finish(),
            FromCs::ReadStatus { chunkid, status } => read_status(*chunkid, *status),
            FromCs::ReadData {
                chunkid,
                blocknum,
                offset,
                crc,
                data,
            } => {
                let mut v = read_data_header(*chunkid, *blocknum, *offset, data.len() as u32, *crc)
                    .to_vec();
                v.extend_from_slice(data);
                v
            }
            FromCs::WriteStatus {
                chunkid,
                writeid,
                status,
            } => write_status(*chunkid, *writeid, *status).to_vec(),
            FromCs::ChunkBlocks {
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
        }
    }
}
