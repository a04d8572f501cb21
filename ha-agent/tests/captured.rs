//! The VRRP codec against packets captured from real keepalived 2.2.7
//! (`../shared/testdata/vrrp/*.pcap`): every advert decodes, re-encodes byte for byte
//! (IP header included), and every gratuitous ARP matches our frame builder.

use antler_ha_agent::packet::{decode_ip, encode_ip, garp_frame, Checksum, Version};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

fn pcap_frames(name: &str) -> Vec<Vec<u8>> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/vrrp")
        .join(name);
    let b = std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (shared/ must sit beside the repository)",
            p.display()
        )
    });
    let le = match &b[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] => false,
        m => panic!("not a classic pcap: {m:02x?}"),
    };
    let u32at = |i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    assert_eq!(u32at(20), 1, "link type must be Ethernet");
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= b.len() {
        let incl = u32at(i + 8) as usize;
        out.push(b[i + 16..i + 16 + incl].to_vec());
        i += 16 + incl;
    }
    out
}

fn check_file(name: &str, version: Version) -> (usize, usize) {
    let (mut adverts, mut garps) = (0, 0);
    for f in pcap_frames(name) {
        match u16::from_be_bytes([f[12], f[13]]) {
            0x0800 if f[23] == 112 => {
                let ip = &f[14..];
                let r = decode_ip(ip).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(r.advert.version, version);
                assert_eq!(r.ttl, 255);
                assert_eq!(r.advert.vrid, 51);
                assert_eq!(r.advert.addrs, vec![Ipv4Addr::new(192, 0, 2, 100)]);
                let (IpAddr::V4(src), IpAddr::V4(dst)) = (r.src, r.dst) else {
                    panic!("{name}: IPv4 packet decoded with IPv6 addresses: {r:?}");
                };
                match version {
                    Version::V2 => {
                        assert_eq!(r.advert.auth, Some(*b"s3cr3t\0\0"));
                        assert_eq!(r.advert.interval_cs, 100);
                    }
                    Version::V3 => {
                        assert_eq!(
                            r.checksum,
                            Checksum::PseudoHeader,
                            "keepalived's default v3 checksum"
                        );
                        assert_eq!(r.advert.interval_cs, 10);
                    }
                }
                let id = u16::from_be_bytes([ip[4], ip[5]]);
                let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
                let again = encode_ip(src, dst, id, &r.advert.encode(src, dst, r.checksum));
                assert_eq!(
                    again,
                    ip[..total],
                    "{name}: advert does not re-encode byte for byte"
                );
                adverts += 1;
            }
            0x0806 => {
                let is_garp = f[20..22] == [0, 1] && f[28..32] == f[38..42] && f[0..6] == [0xff; 6];
                if is_garp {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&f[6..12]);
                    let vip = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
                    assert_eq!(garp_frame(mac, vip)[..], f[..42], "{name}: GARP differs");
                    garps += 1;
                }
            }
            _ => {}
        }
    }
    (adverts, garps)
}

#[test]
fn keepalived_v2_pass_auth() {
    let (a, g) = check_file("vrrpv2_pass_auth.pcap", Version::V2);
    assert!(a >= 5 && g >= 10, "adverts {a}, garps {g}");
}

#[test]
fn keepalived_v3_100ms() {
    let (a, g) = check_file("vrrpv3_adv100ms.pcap", Version::V3);
    assert!(a >= 20 && g >= 5, "adverts {a}, garps {g}");
}

#[test]
fn keepalived_v2_failover_with_priority_zero() {
    let (a, g) = check_file("vrrpv2_failover_garp.pcap", Version::V2);
    assert!(a >= 10 && g >= 20, "adverts {a}, garps {g}");
}
