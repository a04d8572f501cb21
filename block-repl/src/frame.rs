//! Replication frames between the two nodes of a resource.
//!
//! ```text
//!  0        4      6      8          12
//! +--------+------+------+----------+-----------------+
//! | "BRP1" | type | flags| length   | payload          |   big-endian, length = payload bytes
//! +--------+------+------+----------+-----------------+
//! ```
//! A frame is decoded completely before anything is applied: a malformed or truncated
//! frame is an error for the whole frame, never a half-applied write.

use thiserror::Error;

/// Frame magic.
pub const MAGIC: [u8; 4] = *b"BRP1";
/// Header size.
pub const HEADER_LEN: usize = 12;
/// Largest payload accepted (a 1 MiB write plus its fields).
pub const MAX_PAYLOAD: u32 = (1 << 20) + 64;

/// A frame that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The header does not start with the magic.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// The announced payload is too large.
    #[error("frame type {ty} announces {len} bytes (limit {MAX_PAYLOAD})")]
    TooLarge {
        /// Frame type.
        ty: u16,
        /// Announced length.
        len: u32,
    },
    /// Unknown frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u16),
    /// The payload does not match the type's layout.
    #[error("frame type {ty}: {what}")]
    Bad {
        /// Frame type.
        ty: u16,
        /// What is wrong.
        what: &'static str,
    },
}

/// Disk states, as in DRBD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DiskState {
    /// No usable data (being created or a sync target mid-resync).
    Inconsistent,
    /// Consistent but known to be older than the peer: must not be promoted.
    Outdated,
    /// Consistent, peer state unknown.
    Consistent,
    /// Up to date.
    UpToDate,
}

impl DiskState {
    fn code(self) -> u8 {
        self as u8
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => DiskState::Inconsistent,
            1 => DiskState::Outdated,
            2 => DiskState::Consistent,
            3 => DiskState::UpToDate,
            _ => return None,
        })
    }
}

/// One 4 KiB-aligned page of a [`Payload`].
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The data of a bulk frame (`Data`, `ResyncData`), kept in 4 KiB-aligned storage so
/// that it can go to an O_DIRECT file as it is, without a bounce copy. The storage can
/// be reused for a later frame ([`Payload::resized`]).
#[derive(Clone)]
pub struct Payload {
    pages: Vec<Page>,
    len: usize,
}

impl Payload {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Payload {
        Payload {
            pages: vec![Page([0; 4096]); len.div_ceil(4096)],
            len,
        }
    }

    /// This storage holding `len` bytes (grown if needed; the contents are left as they
    /// were: the caller overwrites them).
    pub fn resized(mut self, len: usize) -> Payload {
        let need = len.div_ceil(4096);
        if self.pages.len() < need {
            self.pages.resize(need, Page([0; 4096]));
        }
        self.len = len;
        self
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `Page` is plain bytes without padding, so the pages are one run of
        // initialised bytes, at least `len` long.
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr().cast(), self.len) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.pages.as_mut_ptr().cast(), self.len) }
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<&[u8]> for Payload {
    fn from(b: &[u8]) -> Payload {
        let mut p = Payload::zeroed(b.len());
        p.as_mut_slice().copy_from_slice(b);
        p
    }
}

impl From<Vec<u8>> for Payload {
    fn from(b: Vec<u8>) -> Payload {
        Payload::from(&b[..])
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Payload {}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.len)
    }
}

/// One replication frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame of each side: identity and a challenge for the shared secret.
    Hello {
        /// Node name.
        node: String,
        /// Device size in bytes.
        size: u64,
        /// Random challenge.
        challenge: [u8; 32],
    },
    /// HMAC of the peer's challenge with the shared secret.
    Auth {
        /// The MAC.
        response: [u8; 32],
    },
    /// Generation identifiers, role and disk state, dirty count.
    State {
        /// Current GI.
        current: u64,
        /// Bitmap GI.
        bitmap: u64,
        /// History GIs.
        history: [u64; 2],
        /// Primary now.
        primary: bool,
        /// Disk state.
        disk: DiskState,
        /// Dirty blocks in the bitmap.
        dirty: u64,
        /// When this node became primary during a split (0 = never).
        promoted_at: u64,
    },
    /// A slice of the sender's bitmap, `words` starting at word `first`.
    Bitmap {
        /// Index of the first word.
        first: u64,
        /// Words.
        words: Vec<u64>,
    },
    /// A replicated write.
    Data {
        /// Sequence number (acked in order).
        seq: u64,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        data: Payload,
    },
    /// A replicated discard or write-zeroes.
    Discard {
        /// Sequence number.
        seq: u64,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Zero the range (write-zeroes) rather than discard it.
        zero: bool,
    },
    /// Make everything up to `seq` stable before acknowledging.
    Flush {
        /// Sequence number.
        seq: u64,
    },
    /// Acknowledgement of `seq` (stable on the peer), or an error status.
    Ack {
        /// Sequence number.
        seq: u64,
        /// 0 = OK, else an errno.
        status: u32,
    },
    /// Resync block from the sync source.
    ResyncData {
        /// Byte offset (block aligned).
        offset: u64,
        /// Bytes.
        data: Payload,
    },
    /// Resync block stored by the target.
    ResyncAck {
        /// Byte offset.
        offset: u64,
        /// Bytes stored.
        len: u32,
    },
    /// The sync source has sent every out-of-sync block: the target adopts these
    /// generations and becomes UpToDate.
    ResyncDone {
        /// Source's current GI.
        current: u64,
        /// Source's bitmap GI.
        bitmap: u64,
        /// Source's history GIs.
        history: [u64; 2],
    },
    /// Online verify: the peer answers with a checksum per 4 KiB block of the range.
    VerifyReq {
        /// Byte offset (block aligned).
        offset: u64,
        /// Length (a multiple of 4 KiB, at most 1 MiB).
        len: u32,
    },
    /// Online verify answer: CRC-32 of each 4 KiB block.
    VerifyReply {
        /// Byte offset.
        offset: u64,
        /// One CRC per block.
        crcs: Vec<u32>,
    },
    /// The primary marks the peer Outdated (fencing).
    Outdate,
    /// Keep-alive.
    Ping,
    /// Keep-alive answer.
    PingAck,
}

const T_HELLO: u16 = 1;
const T_AUTH: u16 = 2;
const T_STATE: u16 = 3;
const T_BITMAP: u16 = 4;
const T_DATA: u16 = 5;
const T_DISCARD: u16 = 6;
const T_FLUSH: u16 = 7;
const T_ACK: u16 = 8;
const T_RSDATA: u16 = 9;
const T_RSACK: u16 = 10;
const T_OUTDATE: u16 = 11;
const T_PING: u16 = 12;
const T_PINGACK: u16 = 13;
const T_RSDONE: u16 = 14;
const T_VERIFYREQ: u16 = 15;
const T_VERIFYREPLY: u16 = 16;

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Frame type.
    pub ty: u16,
    /// Payload length.
    pub len: u32,
}

/// Decodes and checks a header.
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
    let magic = [b[0], b[1], b[2], b[3]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let ty = u16::from_be_bytes([b[4], b[5]]);
    let len = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge { ty, len });
    }
    Ok(Header { ty, len })
}

struct R<'a> {
    b: &'a [u8],
    ty: u16,
}

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(FrameError::Bad {
                ty: self.ty,
                what: "truncated payload",
            });
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn arr32(&mut self) -> Result<[u8; 32], FrameError> {
        Ok(self.take(32)?.try_into().expect("32"))
    }
    /// `len:u32`, which must be the length of the bulk data that follows.
    fn data_len(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if self.u32()? as usize != data.len() {
            return Err(FrameError::Bad {
                ty: self.ty,
                what: "data length does not match the frame",
            });
        }
        Ok(())
    }

    fn end(&self) -> Result<(), FrameError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Bad {
                ty: self.ty,
                what: "trailing bytes",
            })
        }
    }
}

/// For the bulk frames (`Data`, `ResyncData`): the length of the fixed part before the
/// data, so a reader can receive the data straight into its own buffer.
pub fn bulk_prefix(ty: u16) -> Option<usize> {
    match ty {
        T_DATA => Some(20),
        T_RSDATA => Some(12),
        _ => None,
    }
}

impl Frame {
    /// Decodes a bulk frame from its fixed part (`bulk_prefix(ty)` bytes) and its data.
    pub fn decode_bulk(ty: u16, prefix: &[u8], data: Payload) -> Result<Frame, FrameError> {
        let mut r = R { b: prefix, ty };
        let f = match ty {
            T_DATA => {
                let seq = r.u64()?;
                let offset = r.u64()?;
                r.data_len(&data)?;
                Frame::Data { seq, offset, data }
            }
            T_RSDATA => {
                let offset = r.u64()?;
                r.data_len(&data)?;
                Frame::ResyncData { offset, data }
            }
            _ => {
                return Err(FrameError::Bad {
                    ty,
                    what: "not a bulk frame",
                })
            }
        };
        r.end()?;
        Ok(f)
    }

    /// Decodes a payload of type `ty`.
    pub fn decode(ty: u16, payload: &[u8]) -> Result<Frame, FrameError> {
        let mut r = R { b: payload, ty };
        let f = match ty {
            T_HELLO => {
                let size = r.u64()?;
                let challenge = r.arr32()?;
                let n = r.u8()? as usize;
                let name = r.take(n)?;
                let node = std::str::from_utf8(name)
                    .map_err(|_| FrameError::Bad {
                        ty,
                        what: "node name is not UTF-8",
                    })?
                    .to_string();
                Frame::Hello {
                    node,
                    size,
                    challenge,
                }
            }
            T_AUTH => Frame::Auth {
                response: r.arr32()?,
            },
            T_STATE => {
                let current = r.u64()?;
                let bitmap = r.u64()?;
                let history = [r.u64()?, r.u64()?];
                let primary = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => {
                        return Err(FrameError::Bad {
                            ty,
                            what: "bad role",
                        })
                    }
                };
                let disk = DiskState::from_code(r.u8()?).ok_or(FrameError::Bad {
                    ty,
                    what: "bad disk state",
                })?;
                Frame::State {
                    current,
                    bitmap,
                    history,
                    primary,
                    disk,
                    dirty: r.u64()?,
                    promoted_at: r.u64()?,
                }
            }
            T_BITMAP => {
                let first = r.u64()?;
                if !r.b.len().is_multiple_of(8) {
                    return Err(FrameError::Bad {
                        ty,
                        what: "bitmap words not a multiple of 8 bytes",
                    });
                }
                let mut words = Vec::with_capacity(r.b.len() / 8);
                while !r.b.is_empty() {
                    words.push(r.u64()?);
                }
                Frame::Bitmap { first, words }
            }
            T_DATA | T_RSDATA => {
                let p = bulk_prefix(ty).expect("bulk type");
                let prefix = r.take(p)?;
                return Frame::decode_bulk(ty, prefix, Payload::from(r.b));
            }
            T_DISCARD => {
                let seq = r.u64()?;
                let offset = r.u64()?;
                let len = r.u64()?;
                let zero = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => {
                        return Err(FrameError::Bad {
                            ty,
                            what: "bad zero flag",
                        })
                    }
                };
                Frame::Discard {
                    seq,
                    offset,
                    len,
                    zero,
                }
            }
            T_FLUSH => Frame::Flush { seq: r.u64()? },
            T_ACK => Frame::Ack {
                seq: r.u64()?,
                status: r.u32()?,
            },
            T_RSACK => Frame::ResyncAck {
                offset: r.u64()?,
                len: r.u32()?,
            },
            T_RSDONE => Frame::ResyncDone {
                current: r.u64()?,
                bitmap: r.u64()?,
                history: [r.u64()?, r.u64()?],
            },
            T_VERIFYREQ => Frame::VerifyReq {
                offset: r.u64()?,
                len: r.u32()?,
            },
            T_VERIFYREPLY => {
                let offset = r.u64()?;
                if !r.b.len().is_multiple_of(4) {
                    return Err(FrameError::Bad {
                        ty,
                        what: "checksums not a multiple of 4 bytes",
                    });
                }
                let mut crcs = Vec::with_capacity(r.b.len() / 4);
                while !r.b.is_empty() {
                    crcs.push(r.u32()?);
                }
                Frame::VerifyReply { offset, crcs }
            }
            T_OUTDATE => Frame::Outdate,
            T_PING => Frame::Ping,
            T_PINGACK => Frame::PingAck,
            t => return Err(FrameError::UnknownType(t)),
        };
        r.end()?;
        Ok(f)
    }

    /// Encodes the frame with its header.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(HEADER_LEN + 64);
        p.extend_from_slice(&[0u8; HEADER_LEN]);
        let ty = match self {
            Frame::Hello {
                node,
                size,
                challenge,
            } => {
                p.extend_from_slice(&size.to_be_bytes());
                p.extend_from_slice(challenge);
                let name = &node.as_bytes()[..node.len().min(255)];
                p.push(name.len() as u8);
                p.extend_from_slice(name);
                T_HELLO
            }
            Frame::Auth { response } => {
                p.extend_from_slice(response);
                T_AUTH
            }
            Frame::State {
                current,
                bitmap,
                history,
                primary,
                disk,
                dirty,
                promoted_at,
            } => {
                for v in [*current, *bitmap, history[0], history[1]] {
                    p.extend_from_slice(&v.to_be_bytes());
                }
                p.push(*primary as u8);
                p.push(disk.code());
                p.extend_from_slice(&dirty.to_be_bytes());
                p.extend_from_slice(&promoted_at.to_be_bytes());
                T_STATE
            }
            Frame::Bitmap { first, words } => {
                p.extend_from_slice(&first.to_be_bytes());
                for w in words {
                    p.extend_from_slice(&w.to_be_bytes());
                }
                T_BITMAP
            }
            Frame::Data { seq, offset, data } => {
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&offset.to_be_bytes());
                p.extend_from_slice(&(data.len() as u32).to_be_bytes());
                p.extend_from_slice(data);
                T_DATA
            }
            Frame::Discard {
                seq,
                offset,
                len,
                zero,
            } => {
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&offset.to_be_bytes());
                p.extend_from_slice(&len.to_be_bytes());
                p.push(*zero as u8);
                T_DISCARD
            }
            Frame::Flush { seq } => {
                p.extend_from_slice(&seq.to_be_bytes());
                T_FLUSH
            }
            Frame::Ack { seq, status } => {
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&status.to_be_bytes());
                T_ACK
            }
            Frame::ResyncData { offset, data } => {
                p.extend_from_slice(&offset.to_be_bytes());
                p.extend_from_slice(&(data.len() as u32).to_be_bytes());
                p.extend_from_slice(data);
                T_RSDATA
            }
            Frame::ResyncAck { offset, len } => {
                p.extend_from_slice(&offset.to_be_bytes());
                p.extend_from_slice(&len.to_be_bytes());
                T_RSACK
            }
            Frame::ResyncDone {
                current,
                bitmap,
                history,
            } => {
                for v in [*current, *bitmap, history[0], history[1]] {
                    p.extend_from_slice(&v.to_be_bytes());
                }
                T_RSDONE
            }
            Frame::VerifyReq { offset, len } => {
                p.extend_from_slice(&offset.to_be_bytes());
                p.extend_from_slice(&len.to_be_bytes());
                T_VERIFYREQ
            }
            Frame::VerifyReply { offset, crcs } => {
                p.extend_from_slice(&offset.to_be_bytes());
                for c in crcs {
                    p.extend_from_slice(&c.to_be_bytes());
                }
                T_VERIFYREPLY
            }
            Frame::Outdate => T_OUTDATE,
            Frame::Ping => T_PING,
            Frame::PingAck => T_PINGACK,
        };
        put_header(&mut p, ty);
        p
    }
}

/// Fills the header of `v` (whose first [`HEADER_LEN`] bytes are reserved for it).
fn put_header(v: &mut [u8], ty: u16) {
    let len = (v.len() - HEADER_LEN) as u32;
    v[..4].copy_from_slice(&MAGIC);
    v[4..6].copy_from_slice(&ty.to_be_bytes());
    v[6..8].copy_from_slice(&[0, 0]);
    v[8..12].copy_from_slice(&len.to_be_bytes());
}

/// Encodes a `Data` frame straight from a borrowed buffer (one copy).
pub fn encode_data(seq: u64, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + 20 + data.len());
    encode_data_into(&mut v, seq, offset, data);
    v
}

/// Appends a `Data` frame to `out` (one copy of `data`).
pub fn encode_data_into(out: &mut Vec<u8>, seq: u64, offset: u64, data: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    put_header(&mut out[start..], T_DATA);
}

/// Encodes a `ResyncData` frame of `len` bytes whose data `fill` writes in place.
pub fn encode_resync_with<E>(
    offset: u64,
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    let start = HEADER_LEN + 12;
    let mut v = vec![0u8; start + len];
    v[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&offset.to_be_bytes());
    v[HEADER_LEN + 8..start].copy_from_slice(&(len as u32).to_be_bytes());
    fill(&mut v[start..])?;
    put_header(&mut v, T_RSDATA);
    Ok(v)
}

/// Splits a complete encoded frame and decodes it (used by tests and the fuzz target).
pub fn decode_all(b: &[u8]) -> Result<Frame, FrameError> {
    if b.len() < HEADER_LEN {
        return Err(FrameError::Bad {
            ty: 0,
            what: "shorter than a header",
        });
    }
    let h = decode_header(b[..HEADER_LEN].try_into().expect("12"))?;
    let rest = &b[HEADER_LEN..];
    if rest.len() != h.len as usize {
        return Err(FrameError::Bad {
            ty: h.ty,
            what: "length does not match the header",
        });
    }
    Frame::decode(h.ty, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn payloads_are_aligned_and_reusable() {
        let p = Payload::from(&[5u8; 5000][..]);
        assert_eq!(p.as_ptr() as usize % 4096, 0);
        assert_eq!(p.len(), 5000);
        let ptr = p.as_ptr();
        // Reused for a smaller frame: the same storage, the new length.
        let q = p.resized(4096);
        assert_eq!((q.as_ptr(), q.len()), (ptr, 4096));
        assert_eq!(q, Payload::from(vec![5u8; 4096]));
        assert_ne!(q, Payload::zeroed(4096));
        assert_eq!(format!("{q:?}"), "<4096 bytes>");
        let r = q.resized(3 * 4096 + 1);
        assert_eq!(r.len(), 3 * 4096 + 1);
        assert!(Payload::zeroed(0).is_empty());
    }

    fn frames() -> impl Strategy<Value = Frame> {
        let data = proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            ("[a-z0-9]{0,20}", any::<u64>(), any::<[u8; 32]>()).prop_map(
                |(node, size, challenge)| Frame::Hello {
                    node,
                    size,
                    challenge
                }
            ),
            any::<[u8; 32]>().prop_map(|response| Frame::Auth { response }),
            (
                any::<u64>(),
                any::<u64>(),
                any::<[u64; 2]>(),
                any::<bool>(),
                0u8..4,
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(
                    |(current, bitmap, history, primary, d, dirty, promoted_at)| Frame::State {
                        current,
                        bitmap,
                        history,
                        primary,
                        disk: DiskState::from_code(d).unwrap(),
                        dirty,
                        promoted_at
                    }
                ),
            (any::<u64>(), proptest::collection::vec(any::<u64>(), 0..20))
                .prop_map(|(first, words)| Frame::Bitmap { first, words }),
            (any::<u64>(), any::<u64>(), data.clone()).prop_map(|(seq, offset, data)| {
                Frame::Data {
                    seq,
                    offset,
                    data: data.into(),
                }
            }),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
                |(seq, offset, len, zero)| Frame::Discard {
                    seq,
                    offset,
                    len,
                    zero
                }
            ),
            any::<u64>().prop_map(|seq| Frame::Flush { seq }),
            (any::<u64>(), any::<u32>()).prop_map(|(seq, status)| Frame::Ack { seq, status }),
            (any::<u64>(), data).prop_map(|(offset, data)| Frame::ResyncData {
                offset,
                data: data.into()
            }),
            (any::<u64>(), any::<u32>()).prop_map(|(offset, len)| Frame::ResyncAck { offset, len }),
            (any::<u64>(), any::<u64>(), any::<[u64; 2]>()).prop_map(
                |(current, bitmap, history)| {
                    Frame::ResyncDone {
                        current,
                        bitmap,
                        history,
                    }
                }
            ),
            (any::<u64>(), any::<u32>()).prop_map(|(offset, len)| Frame::VerifyReq { offset, len }),
            (any::<u64>(), proptest::collection::vec(any::<u32>(), 0..40))
                .prop_map(|(offset, crcs)| Frame::VerifyReply { offset, crcs }),
            Just(Frame::Outdate),
            Just(Frame::Ping),
            Just(Frame::PingAck),
        ]
    }

    proptest! {
        #[test]
        fn fast_encoders_match(seq in any::<u64>(), offset in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(
                encode_data(seq, offset, &data),
                Frame::Data { seq, offset, data: data.clone().into() }.encode()
            );
            let r = encode_resync_with::<()>(offset, data.len(), |b| { b.copy_from_slice(&data); Ok(()) }).unwrap();
            prop_assert_eq!(r, Frame::ResyncData { offset, data: data.into() }.encode());
        }

        #[test]
        fn roundtrip(f in frames()) {
            prop_assert_eq!(decode_all(&f.encode()).unwrap(), f);
        }

        #[test]
        fn every_truncation_is_an_error_never_a_partial_frame(f in frames(), cut in 0usize..400) {
            let b = f.encode();
            if cut < b.len() {
                prop_assert!(decode_all(&b[..cut]).is_err());
            }
        }

        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_all(&b);
        }
    }

    #[test]
    fn header_errors() {
        let mut b = Frame::Ping.encode();
        b[0] = b'X';
        assert!(matches!(decode_all(&b), Err(FrameError::BadMagic(_))));
        let mut b = Frame::Ping.encode();
        b[8..12].copy_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
        assert!(matches!(
            decode_header(b[..12].try_into().unwrap()),
            Err(FrameError::TooLarge { .. })
        ));
        let mut b = Frame::Ping.encode();
        b[5] = 99;
        assert_eq!(decode_all(&b), Err(FrameError::UnknownType(99)));
    }
}
