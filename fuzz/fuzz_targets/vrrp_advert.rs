#![no_main]
//! Fuzz target: ha-agent's VRRP decoders, on whole IP packets as they appear on the wire:
//! IPv4 (version nibble 4, as a raw IPv4 socket delivers them) or IPv6 (version nibble 6:
//! fixed header, then VRRP; a raw IPv6 socket hands over the same fields as payload,
//! addresses and hop limit). A decoded advert must re-encode to the same VRRP bytes.
use antler_ha_agent::packet::{decode_ip, decode_ip6, Advert, Version, IPV6_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.first().is_some_and(|b| b >> 4 == 6) {
        if let Ok(r) = decode_ip6(data) {
            let payload = u16::from_be_bytes([data[4], data[5]]) as usize;
            let orig = &data[IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload];
            assert_eq!(r.advert.version, Version::V3, "VRRPv2 does not exist over IPv6");
            assert_eq!(r.ttl, data[7]);
            assert_eq!(orig.len(), 8 + 16 * r.advert.addrs.len());
            let again = r.advert.encode(r.src, r.dst, r.checksum);
            // Exact round trip except v3's reserved nibble (ignored on reception) and
            // the checksum field's two one's-complement zeros.
            if orig[4] >> 4 == 0 {
                assert_eq!((&again[..6], &again[8..]), (&orig[..6], &orig[8..]));
            }
            let _ = Advert::decode(&again, r.src, r.dst).unwrap();
        }
        return;
    }
    if let Ok(r) = decode_ip(data) {
        let ihl = (data[0] & 0x0f) as usize * 4;
        let total = u16::from_be_bytes([data[2], data[3]]) as usize;
        let again = r.advert.encode(r.src, r.dst, r.checksum);
        // Exact round trip, except v3's reserved nibble (ignored on reception, RFC 5798)
        // and v2 auth data when no authentication is used (ignored too).
        let v3_rsvd = r.advert.version == Version::V3 && data[ihl + 4] >> 4 != 0;
        let v2_noauth = r.advert.version == Version::V2 && r.advert.auth.is_none();
        if !v3_rsvd && !v2_noauth {
            // The checksum field may differ only between the two one's-complement zeros.
            let orig = &data[ihl..total];
            assert_eq!((&again[..6], &again[8..]), (&orig[..6], &orig[8..]));
        }
        let _ = Advert::decode(&again, r.src, r.dst).unwrap();
    }
});
