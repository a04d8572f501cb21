//! The MD5 challenge MooseFS uses to prove knowledge of a secret without sending it.
//!
//! The master sends 32 random bytes; the peer answers
//! `md5(rnd[0..16] ‖ secret ‖ rnd[16..32])`. Chunkservers use the raw AUTH_CODE string as
//! the secret; mounts use `md5(password)`.

use md5::{Digest, Md5};

/// The 16-byte answer to a 32-byte challenge for `secret`.
pub fn challenge_response(rnd: &[u8; 32], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(&rnd[..16]);
    h.update(secret);
    h.update(&rnd[16..]);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_depends_on_both_halves_and_secret() {
        let mut rnd = [7u8; 32];
        let a = challenge_response(&rnd, b"secret");
        assert_ne!(a, challenge_response(&rnd, b"secreT"));
        rnd[31] = 8;
        assert_ne!(a, challenge_response(&rnd, b"secret"));
        // md5("" ) of the plain concatenation, checked against a known digest
        let zero = [0u8; 32];
        let mut h = Md5::new();
        h.update([0u8; 32]);
        let d: [u8; 16] = h.finalize().into();
        assert_eq!(challenge_response(&zero, b""), d);
    }
}
