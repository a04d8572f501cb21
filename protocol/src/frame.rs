//! Packet framing shared by every MooseFS link, and big-endian field access.
//!
//! ```text
//!  0               4               8
//! +---------------+---------------+------------------------+
//! | type: u32 BE  | length: u32 BE| payload (length bytes) |
//! +---------------+---------------+------------------------+
//! ```
//! `length` counts the payload only. Each link has its own maximum payload size
//! (see [`crate::codes`]); a larger length is a framing error, never an allocation.

use thiserror::Error;

/// Size of the packet header.
pub const HEADER_LEN: usize = 8;

/// A decoded packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type.
    pub msg_type: u32,
    /// Payload length in bytes.
    pub len: u32,
}

/// A header that must not be acted upon.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The announced payload is larger than this link allows.
    #[error("packet type {msg_type} announces {len} bytes, more than the {max} this link allows")]
    TooLarge {
        /// Message type.
        msg_type: u32,
        /// Announced length.
        len: u32,
        /// Limit for the link.
        max: u32,
    },
}

impl Header {
    /// Decodes a header and checks the payload size against `max_len`.
    pub fn decode(buf: &[u8; HEADER_LEN], max_len: u32) -> Result<Header, FrameError> {
        let msg_type = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if len > max_len {
            return Err(FrameError::TooLarge {
                msg_type,
                len,
                max: max_len,
            });
        }
        Ok(Header { msg_type, len })
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&self.msg_type.to_be_bytes());
        b[4..].copy_from_slice(&self.len.to_be_bytes());
        b
    }
}

/// A payload that does not match its message's layout.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The payload ended before a field.
    #[error("{msg}: truncated (needs {needed} more bytes at offset {offset})")]
    Truncated {
        /// Message name.
        msg: &'static str,
        /// Offset of the missing field.
        offset: usize,
        /// Bytes missing.
        needed: usize,
    },
    /// The payload length is not one the message allows.
    #[error("{msg}: wrong size {len} (expected {expected})")]
    BadLength {
        /// Message name.
        msg: &'static str,
        /// Actual payload length.
        len: usize,
        /// Allowed lengths, as text.
        expected: &'static str,
    },
    /// A field holds a value the message does not allow.
    #[error("{msg}: bad {field} value {value}")]
    BadValue {
        /// Message name.
        msg: &'static str,
        /// Field name.
        field: &'static str,
        /// The value seen.
        value: u64,
    },
    /// The message type is not expected on this link.
    #[error("unexpected message type {0} on this link")]
    UnknownType(u32),
}

/// Bounds-checked big-endian reader over a payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    msg: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`; `msg` names the message in errors.
    pub fn new(msg: &'static str, buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, msg }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::Truncated {
                msg: self.msg,
                offset: self.pos,
                needed: n - (self.buf.len() - self.pos),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.take(n)
    }
    /// Reads a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// Builds one packet (header + payload) with big-endian fields.
#[derive(Debug, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts a packet of type `msg_type` whose payload will be `len` bytes.
    pub fn packet(msg_type: u32, len: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_LEN + len);
        buf.extend_from_slice(&msg_type.to_be_bytes());
        buf.extend_from_slice(&(len as u32).to_be_bytes());
        Writer { buf }
    }
    /// Appends one byte.
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
    /// Finishes the packet. Panics in debug builds if the payload length announced in
    /// [`Writer::packet`] was not met: that is a bug in an encoder, not bad input.
    pub fn finish(self) -> Vec<u8> {
        debug_assert_eq!(
            self.buf.len() - HEADER_LEN,
            u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize,
            "encoder announced a different payload length"
        );
        self.buf
    }
}

impl Writer {
    /// Returns the bytes written so far without checking the announced length; used for
    /// fixed packet prefixes whose data is sent separately.
    pub fn into_inner_unchecked(self) -> Vec<u8> {
        self.buf
    }
}

/// Splits a complete packet (header + payload) into its type and payload.
pub fn split_packet(pkt: &[u8]) -> Option<(u32, &[u8])> {
    if pkt.len() < HEADER_LEN {
        return None;
    }
    let t = u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]);
    let l = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]) as usize;
    if pkt.len() != HEADER_LEN + l {
        return None;
    }
    Some((t, &pkt[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_limits() {
        let h = Header {
            msg_type: 200,
            len: 21,
        };
        assert_eq!(Header::decode(&h.encode(), 100_000).unwrap(), h);
        let big = Header {
            msg_type: 200,
            len: 100_001,
        };
        assert!(matches!(
            Header::decode(&big.encode(), 100_000),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn reader_reports_truncation() {
        let mut r = Reader::new("X", &[1, 2, 3]);
        assert_eq!(r.u16().unwrap(), 0x0102);
        let e = r.u32().unwrap_err();
        assert_eq!(
            e,
            DecodeError::Truncated {
                msg: "X",
                offset: 2,
                needed: 3
            }
        );
    }
}
