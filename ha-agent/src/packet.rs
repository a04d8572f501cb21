//! VRRP advertisements (RFC 3768 v2, RFC 5798 v3) over IPv4 and IPv6, gratuitous ARP
//! frames and unsolicited neighbour advertisement frames. Pure code: no sockets, no clock.
//!
//! ```text
//! v2:  ver=2|type=1  VRID  priority  count | auth type  adver int(s)  checksum | IPv4 addrs… | auth data (8)
//! v3:  ver=3|type=1  VRID  priority  count | rsvd(4)|max adver int(12, cs)  checksum | IPv4 or IPv6 addrs…
//! ```
//! The v2 checksum covers the VRRP message only. For v3 over IPv4 the RFC adds the IPv4
//! pseudo-header; keepalived does so by default and some implementations do not
//! (`v3_checksum_as_v2`), so both are accepted and the form seen is reported.
//! Over IPv6 only VRRPv3 exists, each address takes 16 bytes, and the checksum always
//! covers the IPv6 pseudo-header (source, destination, upper-layer length, next header
//! 112; RFC 5798 §5.2.8 and RFC 8200 §8.1).
//! The length must match the address count: CARP (ucarp) also uses protocol 112 and a
//! first byte of 0x21, and must not be read as a VRRP "master leaving" advert.
//!
//! The family of an advert is the family of its IP source address: [`Advert::encode`]
//! and [`Advert::decode`] take the source and destination as [`IpAddr`]s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use thiserror::Error;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// VRRP IPv4 multicast group.
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// VRRP IPv6 multicast group (RFC 5798 §5.1.2.2).
pub const VRRP_GROUP6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The link-local all-nodes group, destination of unsolicited neighbour advertisements.
pub const ALL_NODES6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The only TTL (IPv4) or hop limit (IPv6) a VRRP advert may arrive with.
pub const VRRP_TTL: u8 = 255;
/// IPv6 next-header value of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// Length of an [`na_frame`]: Ethernet (14) + IPv6 (40) + neighbour advertisement with a
/// target link-layer address option (32).
pub const NA_FRAME_LEN: usize = 86;

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
    /// Over the VRRP message only (v2, or v3 over IPv4 "as v2").
    Plain,
    /// With the IPv4 or IPv6 pseudo-header (RFC 5798, keepalived's default; the only
    /// form over IPv6).
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
    /// Virtual addresses, all of the advert's family (IPv4 or IPv6).
    pub addrs: Vec<IpAddr>,
}

/// Why bytes are not a VRRP advert we accept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Shorter than a header.
    #[error("truncated packet ({0} bytes)")]
    Truncated(usize),
    /// Not IPv4 / IPv6, bad header length or total length, or mixed address families.
    #[error("bad IP header: {0}")]
    BadIp(&'static str),
    /// Not protocol 112 (for IPv6: the next header after the fixed header).
    #[error("not VRRP (IP protocol {0})")]
    NotVrrp(u8),
    /// Version nibble is not 2 or 3 (over IPv6: not 3).
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
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// IPv4 TTL, or IPv6 hop limit (checked against [`VRRP_TTL`] by
    /// [`crate::validate::check`], so that a bad one is counted like any rejection).
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

/// The IPv6 pseudo-header of RFC 8200 §8.1 for an upper-layer message of `len` bytes.
fn pseudo_header6(src: Ipv6Addr, dst: Ipv6Addr, len: usize, next_header: u8) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[..16].copy_from_slice(&src.octets());
    p[16..32].copy_from_slice(&dst.octets());
    p[32..36].copy_from_slice(&(len as u32).to_be_bytes());
    p[39] = next_header;
    p
}

/// Address family of an advert, from its IP source and destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Family {
    fn of(src: IpAddr, dst: IpAddr) -> Option<Family> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some(Family::V4(s, d)),
            (IpAddr::V6(s), IpAddr::V6(d)) => Some(Family::V6(s, d)),
            _ => None,
        }
    }

    fn addr_len(self) -> usize {
        match self {
            Family::V4(..) => 4,
            Family::V6(..) => 16,
        }
    }
}

impl Advert {
    /// Encodes the VRRP message (no IP header). `src`/`dst` feed the pseudo-header: over
    /// IPv4 for v3 with [`Checksum::PseudoHeader`]; over IPv6 always (`mode` is then
    /// ignored). Every address of `addrs` must be of the family of `src`; an address of
    /// the other family is written with its own length, which no receiver accepts.
    pub fn encode(
        &self,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        mode: Checksum,
    ) -> Vec<u8> {
        let (src, dst) = (src.into(), dst.into());
        let mut v = Vec::with_capacity(16 + 16 * self.addrs.len());
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
            match a {
                IpAddr::V4(a) => v.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => v.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            v.extend_from_slice(&self.auth.unwrap_or([0; 8]));
        }
        let c = match (Family::of(src, dst), self.version, mode) {
            (Some(Family::V6(s, d)), _, _) => {
                inet_checksum(&[&pseudo_header6(s, d, v.len(), IPPROTO_VRRP), &v])
            }
            (Some(Family::V4(s, d)), Version::V3, Checksum::PseudoHeader) => {
                inet_checksum(&[&pseudo_header(s, d, v.len()), &v])
            }
            _ => inet_checksum(&[&v]),
        };
        v[6..8].copy_from_slice(&c.to_be_bytes());
        v
    }

    /// Decodes a VRRP message; `src`/`dst` (the IP source and destination) give the
    /// family (IPv4: v2 or v3, 4-byte addresses; IPv6: v3 only, 16-byte addresses) and
    /// are needed to check a pseudo-header checksum. Over IPv6 only the pseudo-header
    /// checksum is accepted.
    pub fn decode(
        p: &[u8],
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
    ) -> Result<(Advert, Checksum), DecodeError> {
        let family = Family::of(src.into(), dst.into()).ok_or(DecodeError::BadIp(
            "source and destination of different families",
        ))?;
        if p.len() < 8 {
            return Err(DecodeError::Truncated(p.len()));
        }
        let ver = p[0] >> 4;
        let typ = p[0] & 0x0F;
        let version = match (ver, family) {
            (2, Family::V4(..)) => Version::V2,
            (3, _) => Version::V3,
            (v, _) => return Err(DecodeError::BadVersion(v)),
        };
        if typ != 1 {
            return Err(DecodeError::BadType(typ));
        }
        let count = p[3];
        let alen = family.addr_len();
        let expected = 8 + alen * count as usize + if version == Version::V2 { 8 } else { 0 };
        if p.len() != expected {
            return Err(DecodeError::BadLength {
                len: p.len(),
                count,
                expected,
            });
        }
        let checksum = match family {
            Family::V4(s, d) => {
                if inet_checksum(&[p]) == 0 {
                    Checksum::Plain
                } else if version == Version::V3
                    && inet_checksum(&[&pseudo_header(s, d, p.len()), p]) == 0
                {
                    Checksum::PseudoHeader
                } else {
                    return Err(DecodeError::BadChecksum);
                }
            }
            Family::V6(s, d) => {
                if inet_checksum(&[&pseudo_header6(s, d, p.len(), IPPROTO_VRRP), p]) == 0 {
                    Checksum::PseudoHeader
                } else {
                    return Err(DecodeError::BadChecksum);
                }
            }
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
        let addrs = p[8..8 + alen * count as usize]
            .chunks_exact(alen)
            .map(|c| match family {
                Family::V4(..) => IpAddr::from(<[u8; 4]>::try_from(c).expect("4-byte chunk")),
                Family::V6(..) => IpAddr::from(<[u8; 16]>::try_from(c).expect("16-byte chunk")),
            })
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
        src: src.into(),
        dst: dst.into(),
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

/// Decodes a VRRP message received on a raw IPv6 socket, which hands over the payload
/// only: the source comes from the socket address, the destination and the hop limit
/// from the `IPV6_PKTINFO` and `IPV6_HOPLIMIT` ancillary data.
pub fn decode_v6(
    vrrp: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
) -> Result<Received, DecodeError> {
    let (advert, checksum) = Advert::decode(vrrp, src, dst)?;
    Ok(Received {
        src: src.into(),
        dst: dst.into(),
        ttl: hop_limit,
        advert,
        checksum,
    })
}

/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;

/// Decodes a whole IPv6 packet (fixed header directly followed by VRRP, as captured on
/// the wire; extension headers are not VRRP and are rejected as [`DecodeError::NotVrrp`]).
pub fn decode_ip6(b: &[u8]) -> Result<Received, DecodeError> {
    if b.len() < IPV6_HEADER_LEN {
        return Err(DecodeError::Truncated(b.len()));
    }
    if b[0] >> 4 != 6 {
        return Err(DecodeError::BadIp("not IPv6"));
    }
    let payload = u16::from_be_bytes([b[4], b[5]]) as usize;
    if IPV6_HEADER_LEN + payload > b.len() {
        return Err(DecodeError::BadIp("payload length"));
    }
    if b[6] != IPPROTO_VRRP {
        return Err(DecodeError::NotVrrp(b[6]));
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&b[8..24]).expect("16 bytes"));
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&b[24..40]).expect("16 bytes"));
    decode_v6(
        &b[IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload],
        src,
        dst,
        b[7],
    )
}

/// Builds the IPv6 header an advert leaves with: traffic class 0xc0 (network control,
/// as keepalived sets with `IPV6_TCLASS`), flow label 0, next header 112, hop limit 255.
/// The kernel writes this header itself on a raw socket; this is for tests and tools.
pub fn encode_ip6(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(IPV6_HEADER_LEN + payload.len());
    h.extend_from_slice(&[0x6c, 0x00, 0x00, 0x00]);
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[IPPROTO_VRRP, VRRP_TTL]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// An unsolicited neighbour advertisement (RFC 4861 §4.4, §7.2.6) for `vip` from `mac`,
/// as a complete Ethernet frame, in the form keepalived sends:
///
/// - Ethernet: destination 33:33:00:00:00:01 (RFC 2464 mapping of ff02::1), source
///   `mac`, type 0x86dd;
/// - IPv6: source `vip`, destination ff02::1 (all nodes), hop limit 255, next header 58;
/// - ICMPv6 type 136 code 0, flags: router = `router` (the interface forwards IPv6),
///   solicited clear, override set (so neighbours replace a cached link-layer address);
///   target `vip`; one option, target link-layer address (type 2, length 1) = `mac`;
///   checksum over the IPv6 pseudo-header.
pub fn na_frame(mac: [u8; 6], vip: Ipv6Addr, router: bool) -> [u8; NA_FRAME_LEN] {
    let mut f = [0u8; NA_FRAME_LEN];
    f[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ip = &mut f[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = IPPROTO_ICMPV6;
    ip[7] = VRRP_TTL;
    ip[8..24].copy_from_slice(&vip.octets());
    ip[24..40].copy_from_slice(&ALL_NODES6.octets());
    let icmp = &mut f[54..86];
    icmp[0] = 136;
    icmp[4] = if router { 0x80 } else { 0 } | 0x20;
    icmp[8..24].copy_from_slice(&vip.octets());
    icmp[24] = 2;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&mac);
    let c = inet_checksum(&[
        &pseudo_header6(vip, ALL_NODES6, 32, IPPROTO_ICMPV6),
        &f[54..86],
    ]);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f
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

    const LL1: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x100);

    #[test]
    fn v6_advert_known_answer() {
        // VRRPv3, VRID 51, priority 150, 1 s, one address, from fe80::ff:fe00:1 to
        // ff02::12. The checksum was computed independently (Python, RFC 8200 §8.1).
        let a = Advert {
            version: Version::V3,
            vrid: 51,
            priority: 150,
            interval_cs: 100,
            auth: None,
            addrs: vec![VIP6.into()],
        };
        let p = a.encode(LL1, VRRP_GROUP6, Checksum::PseudoHeader);
        let mut want = vec![0x31, 51, 150, 1, 0x00, 100, 0x0c, 0x8e];
        want.extend_from_slice(&VIP6.octets());
        assert_eq!(p, want);
        let (b, c) = Advert::decode(&p, LL1, VRRP_GROUP6).unwrap();
        assert_eq!((b, c), (a, Checksum::PseudoHeader));
    }

    #[test]
    fn v6_rejects_what_v6_cannot_carry() {
        let a = Advert {
            version: Version::V3,
            vrid: 51,
            priority: 150,
            interval_cs: 100,
            auth: None,
            addrs: vec![VIP6.into()],
        };
        let p = a.encode(LL1, VRRP_GROUP6, Checksum::PseudoHeader);
        // The checksum "as v2" (no pseudo-header) is not accepted over IPv6.
        let mut plain = p.clone();
        plain[6..8].copy_from_slice(&[0, 0]);
        let c = inet_checksum(&[&plain]);
        plain[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            Advert::decode(&plain, LL1, VRRP_GROUP6),
            Err(DecodeError::BadChecksum)
        );
        // VRRPv2 does not exist over IPv6.
        let mut v2 = p.clone();
        v2[0] = 0x21;
        assert_eq!(
            Advert::decode(&v2, LL1, VRRP_GROUP6),
            Err(DecodeError::BadVersion(2))
        );
        // Length must match the count of 16-byte addresses: an IPv4-sized body is not
        // an IPv6 advert, and neither is one byte more or less.
        assert!(matches!(
            Advert::decode(&p[..12], LL1, VRRP_GROUP6),
            Err(DecodeError::BadLength {
                len: 12,
                count: 1,
                expected: 24
            })
        ));
        let mut long = p.clone();
        long.push(0);
        assert!(matches!(
            Advert::decode(&long, LL1, VRRP_GROUP6),
            Err(DecodeError::BadLength {
                len: 25,
                count: 1,
                expected: 24
            })
        ));
        // Mixed families are refused before anything else.
        assert!(matches!(
            Advert::decode(&p, LL1, VRRP_GROUP),
            Err(DecodeError::BadIp(_))
        ));
        // A whole packet: not VRRP when an extension header comes first; truncated.
        let mut ip = encode_ip6(LL1, VRRP_GROUP6, &p);
        assert_eq!(decode_ip6(&ip).unwrap().advert, a);
        assert_eq!(decode_ip6(&ip[..39]), Err(DecodeError::Truncated(39)));
        assert_eq!(
            decode_ip6(&ip[..50]),
            Err(DecodeError::BadIp("payload length"))
        );
        ip[6] = 0; // hop-by-hop options header
        assert_eq!(decode_ip6(&ip), Err(DecodeError::NotVrrp(0)));
    }

    #[test]
    fn neighbour_advert_frame() {
        let mac = [0x02, 0, 0, 0, 0, 0x01];
        let f = na_frame(mac, VIP6, false);
        assert_eq!(
            &f[..14],
            &[0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xdd]
        );
        // IPv6: version 6, payload 32, ICMPv6, hop limit 255, VIP -> ff02::1.
        assert_eq!(&f[14..22], &[0x60, 0, 0, 0, 0, 32, 58, 255]);
        assert_eq!(&f[22..38], &VIP6.octets());
        assert_eq!(&f[38..54], &ALL_NODES6.octets());
        // ICMPv6 136/0, override only, target = VIP, target link-layer address = mac.
        assert_eq!(&f[54..56], &[136, 0]);
        assert_eq!(&f[58..62], &[0x20, 0, 0, 0]);
        assert_eq!(&f[62..78], &VIP6.octets());
        assert_eq!(&f[78..86], &[2, 1, 2, 0, 0, 0, 0, 1]);
        // Checksum: known answer (computed independently, Python) and self-check.
        assert_eq!(&f[56..58], &[0xf7, 0x2a]);
        assert_eq!(
            inet_checksum(&[&pseudo_header6(VIP6, ALL_NODES6, 32, 58), &f[54..]]),
            0
        );
        // A router sets the R flag; the checksum follows.
        let r = na_frame(mac, VIP6, true);
        assert_eq!(r[58], 0xa0);
        assert_eq!(
            inet_checksum(&[&pseudo_header6(VIP6, ALL_NODES6, 32, 58), &r[54..]]),
            0
        );
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
                addrs: addrs.into_iter().map(|a| Ipv4Addr::from(a).into()).collect(),
            };
            let (src, dst) = (Ipv4Addr::new(192, 0, 2, 1), VRRP_GROUP);
            let mode = if pseudo { Checksum::PseudoHeader } else { Checksum::Plain };
            let ip = encode_ip(src, dst, 7, &a.encode(src, dst, mode));
            let r = decode_ip(&ip).unwrap();
            prop_assert_eq!(r.advert, a);
            prop_assert_eq!(r.ttl, 255);
        }

        #[test]
        fn roundtrip_v6(vrid: u8, prio: u8, int in 1u16..4096, unicast: bool,
                        addrs in proptest::collection::vec(any::<u128>(), 0..20), src: u64) {
            let a = Advert {
                version: Version::V3,
                vrid, priority: prio, interval_cs: int, auth: None,
                addrs: addrs.into_iter().map(|a| Ipv6Addr::from(a).into()).collect(),
            };
            let src = Ipv6Addr::from((0xfe80u128 << 112) | u128::from(src));
            let dst = if unicast { Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 2) } else { VRRP_GROUP6 };
            // Whatever mode is asked for, IPv6 always uses the pseudo-header.
            let payload = a.encode(src, dst, Checksum::Plain);
            prop_assert_eq!(payload.len(), 8 + 16 * a.addrs.len());
            let r = decode_ip6(&encode_ip6(src, dst, &payload)).unwrap();
            prop_assert_eq!(&r.advert, &a);
            prop_assert_eq!(r.checksum, Checksum::PseudoHeader);
            prop_assert_eq!((r.src, r.dst, r.ttl), (IpAddr::from(src), IpAddr::from(dst), 255));
            prop_assert_eq!(decode_v6(&payload, src, dst, 7).unwrap().ttl, 7);
            // The checksum binds the addresses: another source does not verify.
            let other = Ipv6Addr::from(u128::from(src) ^ 1);
            prop_assert_eq!(decode_v6(&payload, other, dst, 255), Err(DecodeError::BadChecksum));
        }

        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_ip(&b);
            let _ = decode_ip6(&b);
            let _ = Advert::decode(&b, Ipv4Addr::LOCALHOST, VRRP_GROUP);
            let _ = Advert::decode(&b, Ipv6Addr::LOCALHOST, VRRP_GROUP6);
            let _ = Advert::decode(&b, Ipv6Addr::LOCALHOST, VRRP_GROUP);
        }
    }
}
