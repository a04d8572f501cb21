//! VRRP advertisements (RFC 3768 v2, RFC 5798 v3) over IPv4, and gratuitous ARP frames.
//!
//! ```text
//! v2:  ver=2|type=1  VRID  priority  count | auth type  adver int(s)  checksum | IPv4 addrs… | auth data (8)
//! v3:  ver=3|type=1  VRID  priority  count | rsvd(4)|max adver int(12, cs)  checksum | IPv4 addrs…
//! ```
//! The v2 checksum covers the VRRP message only. For v3 over IPv4 the RFC adds the IPv4
//! pseudo-header; keepalived does so by default and some implementations do not
//! (`v3_checksum_as_v2`), so both are accepted and the form seen is reported.
//! The length must match the address count: CARP (ucarp) also uses protocol 112 and a
//! first byte of 0x21, and must not be read as a VRRP "master leaving" advert.

use std::net::Ipv4Addr;
use thiserror::Error;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// VRRP IPv4 multicast group.
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The only TTL a VRRP advert may arrive with.
pub const VRRP_TTL: u8 = 255;

/// Protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Version {
    /// RFC 3768.
    V2,
    /// RFC 5798.
    V3,
}

/// How a v3 checksum was (or is to be) computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Over the VRRP message only (v2, or v3 "as v2").
    Plain,
    /// With the IPv4 pseudo-header (RFC 5798, keepalived's default).
    PseudoHeader,
}

/// One VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id.
    pub vrid: u8,
    /// Sender priority (0 = master leaving, 255 = address owner).
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2 carries whole seconds).
    pub interval_cs: u16,
    /// v2 simple-text password (auth type 1); `None` = no authentication.
    pub auth: Option<[u8; 8]>,
    /// Virtual addresses.
    pub addrs: Vec<Ipv4Addr>,
}

/// Why bytes are not a VRRP advert we accept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Shorter than a header.
    #[error("truncated packet ({0} bytes)")]
    Truncated(usize),
    /// Not IPv4, bad header length or total length.
    #[error("bad IPv4 header: {0}")]
    BadIp(&'static str),
    /// Not protocol 112.
    #[error("not VRRP (IP protocol {0})")]
    NotVrrp(u8),
    /// Version nibble is not 2 or 3.
    #[error("unsupported VRRP version {0}")]
    BadVersion(u8),
    /// Type is not 1 (advertisement).
    #[error("unsupported VRRP type {0}")]
    BadType(u8),
    /// Length does not match the address count (for example a CARP packet).
    #[error(
        "length {len} does not match {count} addresses (expected {expected}); CARP or corrupt"
    )]
    BadLength {
        /// Actual VRRP length.
        len: usize,
        /// Address count field.
        count: u8,
        /// Expected length.
        expected: usize,
    },
    /// Checksum mismatch.
    #[error("bad checksum")]
    BadChecksum,
    /// v2 auth type other than 0 (none) or 1 (simple text).
    #[error("unsupported v2 auth type {0}")]
    BadAuthType(u8),
    /// An advertisement interval of 0.
    #[error("advertisement interval 0")]
    BadInterval,
}

/// A received advert with the IP fields that matter for validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// IP source.
    pub src: Ipv4Addr,
    /// IP destination.
    pub dst: Ipv4Addr,
    /// IP TTL.
    pub ttl: u8,
    /// The advert.
    pub advert: Advert,
    /// Checksum form seen (v3 only tells them apart).
    pub checksum: Checksum,
}

/// Internet (one's complement) checksum over `chunks` taken as one byte string.
pub fn inet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for c in chunks {
        for &b in c.iter() {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = IPPROTO_VRRP;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

impl Advert {
    /// Encodes the VRRP message (no IP header). `src`/`dst` feed the v3 pseudo-header.
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr, mode: Checksum) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + 4 * self.addrs.len());
        let ver = match self.version {
            Version::V2 => 2u8,
            Version::V3 => 3,
        };
        v.push((ver << 4) | 1);
        v.push(self.vrid);
        v.push(self.priority);
        v.push(self.addrs.len() as u8);
        match self.version {
            Version::V2 => {
                v.push(if self.auth.is_some() { 1 } else { 0 });
                v.push((self.interval_cs / 100).max(1) as u8);
            }
            Version::V3 => v.extend_from_slice(&(self.interval_cs & 0x0FFF).to_be_bytes()),
        }
        v.extend_from_slice(&[0, 0]);
        for a in &self.addrs {
            v.extend_from_slice(&a.octets());
        }
        if self.version == Version::V2 {
            v.extend_from_slice(&self.auth.unwrap_or([0; 8]));
        }
        let c = match (self.version, mode) {
            (Version::V3, Checksum::PseudoHeader) => {
                inet_checksum(&[&pseudo_header(src, dst, v.len()), &v])
            }
            _ => inet_checksum(&[&v]),
        };
        v[6..8].copy_from_slice(&c.to_be_bytes());
        v
    }

    /// Decodes a VRRP message; `src`/`dst` are needed to check a v3 pseudo-header checksum.
    pub fn decode(
        p: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<(Advert, Checksum), DecodeError> {
        if p.len() < 8 {
            return Err(DecodeError::Truncated(p.len()));
        }
        let ver = p[0] >> 4;
        let typ = p[0] & 0x0F;
        let version = match ver {
            2 => Version::V2,
            3 => Version::V3,
            v => return Err(DecodeError::BadVersion(v)),
        };
        if typ != 1 {
            return Err(DecodeError::BadType(typ));
        }
        let count = p[3];
        let expected = 8 + 4 * count as usize + if version == Version::V2 { 8 } else { 0 };
        if p.len() != expected {
            return Err(DecodeError::BadLength {
                len: p.len(),
                count,
                expected,
            });
        }
        let checksum = if inet_checksum(&[p]) == 0 {
            Checksum::Plain
        } else if version == Version::V3
            && inet_checksum(&[&pseudo_header(src, dst, p.len()), p]) == 0
        {
            Checksum::PseudoHeader
        } else {
            return Err(DecodeError::BadChecksum);
        };
        let (interval_cs, auth) = match version {
            Version::V2 => {
                let auth = match p[4] {
                    0 => None,
                    1 => {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(&p[p.len() - 8..]);
                        Some(a)
                    }
                    t => return Err(DecodeError::BadAuthType(t)),
                };
                (u16::from(p[5]) * 100, auth)
            }
            Version::V3 => (u16::from_be_bytes([p[4], p[5]]) & 0x0FFF, None),
        };
        if interval_cs == 0 {
            return Err(DecodeError::BadInterval);
        }
        let addrs = (0..count as usize)
            .map(|i| Ipv4Addr::new(p[8 + 4 * i], p[9 + 4 * i], p[10 + 4 * i], p[11 + 4 * i]))
            .collect();
        Ok((
            Advert {
                version,
                vrid: p[1],
                priority: p[2],
                interval_cs,
                auth,
                addrs,
            },
            checksum,
        ))
    }
}

/// Decodes a whole IPv4 packet as received on a raw protocol-112 socket.
pub fn decode_ip(b: &[u8]) -> Result<Received, DecodeError> {
    if b.len() < 20 {
        return Err(DecodeError::Truncated(b.len()));
    }
    if b[0] >> 4 != 4 {
        return Err(DecodeError::BadIp("not IPv4"));
    }
    let ihl = (b[0] & 0x0F) as usize * 4;
    let total = u16::from_be_bytes([b[2], b[3]]) as usize;
    if ihl < 20 || total < ihl || total > b.len() {
        return Err(DecodeError::BadIp("header or total length"));
    }
    if b[9] != IPPROTO_VRRP {
        return Err(DecodeError::NotVrrp(b[9]));
    }
    let src = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
    let dst = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    let (advert, checksum) = Advert::decode(&b[ihl..total], src, dst)?;
    Ok(Received {
        src,
        dst,
        ttl: b[8],
        advert,
        checksum,
    })
}

/// Builds the IPv4 header keepalived uses for adverts: TOS 0xc0, TTL 255, DF clear.
pub fn encode_ip(src: Ipv4Addr, dst: Ipv4Addr, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut h = vec![0x45, 0xc0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&[0, 0, VRRP_TTL, IPPROTO_VRRP, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = inet_checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A gratuitous ARP request for `vip` from `mac`, as keepalived sends it: Ethernet
/// broadcast, opcode 1, sender IP = target IP = VIP, target MAC ff:ff:ff:ff:ff:ff.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&vip.octets());
    f[32..38].copy_from_slice(&[0xff; 6]);
    f[38..42].copy_from_slice(&vip.octets());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn carp_is_rejected_by_length() {
        // A CARP advert: first byte 0x21 like VRRPv2, 36 bytes, "7 addresses".
        let mut p = vec![0x21, 51, 0, 7, 0, 1, 0, 0];
        p.resize(36, 0);
        assert!(matches!(
            Advert::decode(&p, Ipv4Addr::LOCALHOST, VRRP_GROUP),
            Err(DecodeError::BadLength {
                len: 36,
                count: 7,
                expected: 44
            })
        ));
    }

    proptest! {
        #[test]
        fn roundtrip(v3: bool, vrid: u8, prio: u8, int in 1u16..4095, pass: Option<[u8; 8]>,
                     addrs in proptest::collection::vec(any::<u32>(), 0..20), pseudo: bool) {
            let a = Advert {
                version: if v3 { Version::V3 } else { Version::V2 },
                vrid, priority: prio,
                interval_cs: if v3 { int } else { (int / 100).max(1) * 100 },
                auth: if v3 { None } else { pass },
                addrs: addrs.into_iter().map(Ipv4Addr::from).collect(),
            };
            let (src, dst) = (Ipv4Addr::new(192, 0, 2, 1), VRRP_GROUP);
            let mode = if pseudo { Checksum::PseudoHeader } else { Checksum::Plain };
            let ip = encode_ip(src, dst, 7, &a.encode(src, dst, mode));
            let r = decode_ip(&ip).unwrap();
            prop_assert_eq!(r.advert, a);
            prop_assert_eq!(r.ttl, 255);
        }

        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_ip(&b);
            let _ = Advert::decode(&b, Ipv4Addr::LOCALHOST, VRRP_GROUP);
        }
    }
}
