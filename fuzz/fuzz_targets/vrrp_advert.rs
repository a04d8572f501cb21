#![no_main]
//! Fuzz target: ha-agent's VRRP decoder (whole IPv4 packets as a raw socket delivers them).
//! A decoded advert must re-encode to the same VRRP bytes.
use antler_ha_agent::packet::{decode_ip, Advert};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode_ip(data) {
        let ihl = (data[0] & 0x0f) as usize * 4;
        let total = u16::from_be_bytes([data[2], data[3]]) as usize;
        let again = r.advert.encode(r.src, r.dst, r.checksum);
        // Exact round trip, except v3's reserved nibble (ignored on reception, RFC 5798)
        // and v2 auth data when no authentication is used (ignored too).
        let v3_rsvd = r.advert.version == antler_ha_agent::packet::Version::V3 && data[ihl + 4] >> 4 != 0;
        let v2_noauth = r.advert.version == antler_ha_agent::packet::Version::V2 && r.advert.auth.is_none();
        if !v3_rsvd && !v2_noauth {
            // The checksum field may differ only between the two one's-complement zeros.
            let orig = &data[ihl..total];
            assert_eq!((&again[..6], &again[8..]), (&orig[..6], &orig[8..]));
        }
        let _ = Advert::decode(&again, r.src, r.dst).unwrap();
    }
});
