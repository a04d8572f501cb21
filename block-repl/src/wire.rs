//! Frame I/O on a stream and the shared-secret challenge.

use crate::frame::{bulk_prefix, decode_header, Frame, FrameError, Payload, HEADER_LEN};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{self, Read};
use thiserror::Error;

/// Why a frame could not be read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The stream failed or timed out.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer sent something that is not a valid frame.
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
}

/// Reads one whole frame (nothing is returned from a truncated or malformed one).
pub fn read_frame(r: &mut impl Read) -> Result<(Frame, usize), ReadError> {
    read_frame_into(r, Payload::zeroed)
}

/// [`read_frame`], taking the storage for a bulk frame's data from `storage(len)` (a
/// caller can hand back the storage of frames it has finished with).
pub fn read_frame_into(
    r: &mut impl Read,
    storage: impl FnOnce(usize) -> Payload,
) -> Result<(Frame, usize), ReadError> {
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h)?;
    let hdr = decode_header(&h)?;
    let len = hdr.len as usize;
    if let Some(p) = bulk_prefix(hdr.ty).filter(|p| len >= *p) {
        // The data goes straight into aligned storage (no second copy, and none to
        // reach an O_DIRECT file either).
        let mut prefix = [0u8; 32];
        r.read_exact(&mut prefix[..p])?;
        let mut data = storage(len - p);
        r.read_exact(data.as_mut_slice())?;
        return Ok((
            Frame::decode_bulk(hdr.ty, &prefix[..p], data)?,
            HEADER_LEN + len,
        ));
    }
    let mut payload = vec![0u8; hdr.len as usize];
    r.read_exact(&mut payload)?;
    Ok((Frame::decode(hdr.ty, &payload)?, HEADER_LEN + payload.len()))
}

/// The answer to a challenge: HMAC-SHA256 over a context string, the challenge and the
/// answering node's name (so an answer cannot be reflected back).
pub fn auth_response(secret: &str, challenge: &[u8; 32], responder: &str) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(b"block-repl auth v1\0");
    m.update(challenge);
    m.update(responder.as_bytes());
    m.finalize().into_bytes().into()
}

/// Checks an answer in constant time.
pub fn auth_ok(secret: &str, challenge: &[u8; 32], responder: &str, response: &[u8; 32]) -> bool {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(b"block-repl auth v1\0");
    m.update(challenge);
    m.update(responder.as_bytes());
    m.verify_slice(response).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_binds_secret_challenge_and_name() {
        let c = [7u8; 32];
        let r = auth_response("s3cret", &c, "node1");
        assert!(auth_ok("s3cret", &c, "node1", &r));
        assert!(!auth_ok("other", &c, "node1", &r));
        assert!(!auth_ok("s3cret", &c, "node2", &r));
        assert!(!auth_ok("s3cret", &[8u8; 32], "node1", &r));
    }

    #[test]
    fn frames_from_a_stream_and_truncation() {
        let mut b = Frame::Ping.encode();
        b.extend(
            Frame::Data {
                seq: 1,
                offset: 4096,
                data: vec![1; 4096].into(),
            }
            .encode(),
        );
        let mut r = &b[..];
        assert_eq!(read_frame(&mut r).unwrap().0, Frame::Ping);
        assert!(matches!(
            read_frame(&mut r).unwrap().0,
            Frame::Data { seq: 1, .. }
        ));
        let mut t = &b[..b.len() - 1];
        read_frame(&mut t).unwrap();
        assert!(matches!(read_frame(&mut t), Err(ReadError::Io(_))));
        let mut bad = &b"XXXX\0\0\0\0\0\0\0\0"[..];
        assert!(matches!(read_frame(&mut bad), Err(ReadError::Frame(_))));
    }
}
