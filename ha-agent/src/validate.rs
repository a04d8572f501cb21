//! Acceptance checks on received adverts (RFC 3768 §7.1, RFC 5798 §7.1), with a counter
//! per rejection reason for `ha-agent status`.

use crate::packet::{DecodeError, Received, Version, VRRP_TTL};
use serde::Serialize;
use std::collections::BTreeMap;

/// Why a received packet was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Reject {
    /// Not decodable (truncated, bad IP header).
    Malformed,
    /// VRRP version other than the instance's.
    WrongVersion,
    /// Length does not match the address count (CARP and the like).
    BadLength,
    /// Checksum mismatch.
    BadChecksum,
    /// TTL (IPv4) or hop limit (IPv6) other than 255 (RFC 5798 §7.1).
    BadTtl,
    /// v2 authentication type or password mismatch.
    BadAuth,
    /// VRID of another instance (not an error: another group on the LAN).
    OtherVrid,
    /// v2 advert interval differs from ours.
    IntervalMismatch,
}

impl Reject {
    /// Text for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed packet",
            Reject::WrongVersion => "wrong VRRP version",
            Reject::BadLength => "length does not match address count",
            Reject::BadChecksum => "bad checksum",
            Reject::BadTtl => "TTL (IPv4) or hop limit (IPv6) is not 255",
            Reject::BadAuth => "authentication mismatch",
            Reject::OtherVrid => "other VRID",
            Reject::IntervalMismatch => "advert interval mismatch",
        }
    }

    /// Classifies a decode failure.
    pub fn from_decode(e: &DecodeError) -> Reject {
        match e {
            DecodeError::BadVersion(_) => Reject::WrongVersion,
            DecodeError::BadLength { .. } => Reject::BadLength,
            DecodeError::BadChecksum => Reject::BadChecksum,
            DecodeError::BadAuthType(_) => Reject::BadAuth,
            _ => Reject::Malformed,
        }
    }
}

/// Counters of rejected packets by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RejectCounters(pub BTreeMap<Reject, u64>);

impl RejectCounters {
    /// Counts one rejection.
    pub fn add(&mut self, r: Reject) {
        *self.0.entry(r).or_default() += 1;
    }
}

/// What an instance expects of adverts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Our VRID.
    pub vrid: u8,
    /// Our version.
    pub version: Version,
    /// v2 password (None = no authentication).
    pub auth: Option<[u8; 8]>,
    /// Our advert interval (centiseconds).
    pub interval_cs: u16,
}

/// Checks a decoded advert against the instance's settings.
pub fn check(r: &Received, e: &Expect) -> Result<(), Reject> {
    if r.advert.vrid != e.vrid {
        return Err(Reject::OtherVrid);
    }
    if r.ttl != VRRP_TTL {
        return Err(Reject::BadTtl);
    }
    if r.advert.version != e.version {
        return Err(Reject::WrongVersion);
    }
    if e.version == Version::V2 {
        if r.advert.auth != e.auth {
            return Err(Reject::BadAuth);
        }
        if r.advert.interval_cs != e.interval_cs {
            return Err(Reject::IntervalMismatch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{decode_ip, encode_ip, Advert, Checksum, VRRP_GROUP};
    use std::net::Ipv4Addr;

    fn pkt(version: Version, vrid: u8, auth: Option<[u8; 8]>, ttl: u8) -> Vec<u8> {
        let a = Advert {
            version,
            vrid,
            priority: 100,
            interval_cs: 100,
            auth,
            addrs: vec![Ipv4Addr::new(192, 0, 2, 100).into()],
        };
        let src = Ipv4Addr::new(192, 0, 2, 2);
        let mut ip = encode_ip(
            src,
            VRRP_GROUP,
            1,
            &a.encode(src, VRRP_GROUP, Checksum::Plain),
        );
        ip[8] = ttl;
        ip
    }

    fn verdict(b: &[u8], e: &Expect) -> Result<(), Reject> {
        match decode_ip(b) {
            Ok(r) => check(&r, e),
            Err(d) => Err(Reject::from_decode(&d)),
        }
    }

    #[test]
    fn every_reason() {
        let e = Expect {
            vrid: 51,
            version: Version::V2,
            auth: Some(*b"s3cr3t\0\0"),
            interval_cs: 100,
        };
        assert_eq!(
            verdict(&pkt(Version::V2, 51, Some(*b"s3cr3t\0\0"), 255), &e),
            Ok(())
        );
        assert_eq!(
            verdict(&pkt(Version::V2, 52, Some(*b"s3cr3t\0\0"), 255), &e),
            Err(Reject::OtherVrid)
        );
        assert_eq!(
            verdict(&pkt(Version::V2, 51, Some(*b"wrong\0\0\0"), 255), &e),
            Err(Reject::BadAuth)
        );
        assert_eq!(
            verdict(&pkt(Version::V2, 51, None, 255), &e),
            Err(Reject::BadAuth)
        );
        assert_eq!(
            verdict(&pkt(Version::V2, 51, Some(*b"s3cr3t\0\0"), 64), &e),
            Err(Reject::BadTtl)
        );
        assert_eq!(
            verdict(&pkt(Version::V3, 51, None, 255), &e),
            Err(Reject::WrongVersion)
        );
        let mut bad = pkt(Version::V2, 51, Some(*b"s3cr3t\0\0"), 255);
        bad[20 + 6] ^= 1;
        assert_eq!(verdict(&bad, &e), Err(Reject::BadChecksum));
        let good = pkt(Version::V2, 51, Some(*b"s3cr3t\0\0"), 255);
        assert_eq!(verdict(&good[..30], &e), Err(Reject::Malformed));
        // CARP-like: first byte 0x21, 7 addresses, 36 bytes.
        let mut carp = encode_ip(Ipv4Addr::new(192, 0, 2, 9), VRRP_GROUP, 1, &[0u8; 36]);
        carp[20] = 0x21;
        carp[20 + 3] = 7;
        assert_eq!(verdict(&carp, &e), Err(Reject::BadLength));
    }

    #[test]
    fn ipv6_hop_limit_must_be_255() {
        use crate::packet::{decode_v6, VRRP_GROUP6};
        use std::net::Ipv6Addr;
        let src: Ipv6Addr = "fe80::ff:fe00:2".parse().unwrap();
        let a = Advert {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            auth: None,
            addrs: vec!["2001:db8:0:1::100".parse().unwrap()],
        };
        let p = a.encode(src, VRRP_GROUP6, Checksum::PseudoHeader);
        let e = Expect {
            vrid: 51,
            version: Version::V3,
            auth: None,
            interval_cs: 100,
        };
        let verdict = |hops| check(&decode_v6(&p, src, VRRP_GROUP6, hops).unwrap(), &e);
        assert_eq!(verdict(255), Ok(()));
        assert_eq!(verdict(64), Err(Reject::BadTtl));
        assert_eq!(verdict(0), Err(Reject::BadTtl), "no IPV6_HOPLIMIT data");
    }
}
