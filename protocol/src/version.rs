//! The protocol version Antler speaks and the one place where peer versions are judged.
//!
//! MooseFS encodes `maj.mid.min` as `maj<<16 | mid<<8 | min*2` (the low bit marks the Pro
//! edition), so 3.0.117 travels as `0x0300EA`. There is no negotiation: each side picks
//! record layouts from the peer's version, so we advertise exactly 3.0.117 and accept
//! only peers whose layouts are the 3.0.117 ones.

use thiserror::Error;

/// Major version number we advertise.
pub const VERSMAJ: u16 = 3;
/// Middle version number we advertise.
pub const VERSMID: u8 = 0;
/// Minor version number we advertise.
pub const VERSMIN: u8 = 117;
/// `3.0.117` as it travels on the wire.
pub const VERSHEX: u32 = version_hex(VERSMAJ, VERSMID, VERSMIN);
/// The version string reported by ANTOAN_VERSION.
pub const VERSSTR: &str = "3.0.117-antler";

/// Encodes `maj.mid.min` the way MooseFS does (minor doubled; low bit = Pro).
pub const fn version_hex(maj: u16, mid: u8, min: u8) -> u32 {
    ((maj as u32) << 16) | ((mid as u32) << 8) | ((min as u32) * 2)
}

/// Renders a wire version as `maj.mid.min` (with ` PRO` for the Pro flag).
pub fn version_str(v: u32) -> String {
    let pro = if v & 1 == 1 { " PRO" } else { "" };
    format!("{}.{}.{}{}", v >> 16, (v >> 8) & 0xFF, (v & 0xFF) >> 1, pro)
}

/// A peer whose version we cannot talk to.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("peer speaks MooseFS {}, Antler only talks to 3.0.117 peers", version_str(*.0))]
pub struct UnsupportedVersion(pub u32);

/// Checks a peer's advertised version. Only 3.0.117 (CE or Pro flag) is accepted: it is
/// the only layout set Antler implements.
pub fn check_peer_version(v: u32) -> Result<(), UnsupportedVersion> {
    if v & !1 == VERSHEX {
        Ok(())
    } else {
        Err(UnsupportedVersion(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_value_matches_real_peers() {
        // Captured from a real 3.0.117 master's MATOCS_MASTER_ACK.
        assert_eq!(VERSHEX, 0x0300EA);
        assert_eq!(version_str(0x0300EA), "3.0.117");
        assert_eq!(version_str(0x0300EB), "3.0.117 PRO");
    }

    #[test]
    fn peer_check() {
        assert!(check_peer_version(0x0300EA).is_ok());
        assert!(check_peer_version(0x0300EB).is_ok());
        let e = check_peer_version(version_hex(3, 0, 116)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "peer speaks MooseFS 3.0.116, Antler only talks to 3.0.117 peers"
        );
        assert!(check_peer_version(version_hex(4, 57, 5)).is_err());
    }
}
