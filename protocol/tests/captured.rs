//! Decoders and encoders against packets captured from real MooseFS 3.0.117 peers.
//!
//! `../shared/testdata/moosefs/session-goal2.txt` is `mfsnetdump` output of a real
//! master, chunkservers and mount. Every complete packet of a chunkserver link is decoded
//! with our decoder for its direction and re-encoded; the bytes must be identical.

use antler_protocol::codes::*;
use antler_protocol::cstoma::{CsToMaster, MasterToCs};
use antler_protocol::data::{FromCs, ToCs};
use std::path::PathBuf;

struct Captured {
    name: String,
    payload: Vec<u8>,
    complete: bool,
}

fn capture_path() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/moosefs/session-goal2.txt");
    assert!(
        p.exists(),
        "capture missing at {} (shared/ must sit beside the repository)",
        p.display()
    );
    p
}

fn load() -> Vec<Captured> {
    let text = std::fs::read_to_string(capture_path()).unwrap();
    let mut out: Vec<Captured> = Vec::new();
    for line in text.lines() {
        if let Some(hex) = line.strip_prefix("\t0x") {
            let bytes = hex.split_once(':').unwrap().1;
            let cur = out.last_mut().unwrap();
            for b in bytes.split_whitespace() {
                cur.payload.push(u8::from_str_radix(b, 16).unwrap());
            }
        } else if line.trim() == "(...)" {
            out.last_mut().unwrap().complete = false;
        } else if !line.starts_with('\t') && !line.is_empty() {
            let name = line.rsplit(' ').next().unwrap().to_string();
            out.push(Captured {
                name,
                payload: Vec::new(),
                complete: true,
            });
        }
    }
    out
}

fn code(name: &str) -> Option<u32> {
    Some(match name {
        "CSTOMA_REGISTER" => CSTOMA_REGISTER,
        "CSTOMA_SPACE" => CSTOMA_SPACE,
        "CSTOMA_CURRENT_LOAD" => CSTOMA_CURRENT_LOAD,
        "CSTOMA_LABELS" => CSTOMA_LABELS,
        "CSTOMA_CREATE" => CSTOMA_CREATE,
        "CSTOMA_TRUNCATE" => CSTOMA_TRUNCATE,
        "MATOCS_MASTER_ACK" => MATOCS_MASTER_ACK,
        "MATOCS_CREATE" => MATOCS_CREATE,
        "MATOCS_TRUNCATE" => MATOCS_TRUNCATE,
        "CLTOCS_READ" => CLTOCS_READ,
        "CLTOCS_WRITE" => CLTOCS_WRITE,
        "CLTOCS_WRITE_DATA" => CLTOCS_WRITE_DATA,
        "CLTOCS_WRITE_FINISH" => CLTOCS_WRITE_FINISH,
        "CSTOCL_READ_STATUS" => CSTOCL_READ_STATUS,
        "CSTOCL_READ_DATA" => CSTOCL_READ_DATA,
        "CSTOCL_WRITE_STATUS" => CSTOCL_WRITE_STATUS,
        _ => return None,
    })
}

fn packet(t: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = t.to_be_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn every_captured_chunkserver_packet_roundtrips() {
    let mut checked = std::collections::BTreeMap::<String, usize>::new();
    for c in load().into_iter().filter(|c| c.complete) {
        let Some(t) = code(&c.name) else { continue };
        let want = packet(t, &c.payload);
        let got = if c.name.starts_with("CSTOMA") {
            CsToMaster::decode(t, &c.payload)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name))
                .encode()
        } else if c.name.starts_with("MATOCS") {
            MasterToCs::decode(t, &c.payload)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name))
                .encode()
        } else if c.name.starts_with("CLTOCS") {
            ToCs::decode(t, &c.payload)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name))
                .encode()
        } else {
            FromCs::decode(t, &c.payload)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name))
                .encode()
        };
        assert_eq!(
            got, want,
            "{} does not re-encode to the captured bytes",
            c.name
        );
        *checked.entry(c.name).or_default() += 1;
    }
    // The capture holds complete packets of all these kinds; make sure none was skipped.
    for name in [
        "CSTOMA_REGISTER",
        "CSTOMA_SPACE",
        "CSTOMA_LABELS",
        "CSTOMA_CREATE",
        "MATOCS_MASTER_ACK",
        "MATOCS_CREATE",
        "CLTOCS_WRITE",
        "CLTOCS_WRITE_DATA",
        "CLTOCS_WRITE_FINISH",
        "CLTOCS_READ",
        "CSTOCL_WRITE_STATUS",
        "CSTOCL_READ_STATUS",
    ] {
        assert!(
            checked.get(name).copied().unwrap_or(0) > 0,
            "no complete {name} checked: {checked:?}"
        );
    }
}

#[test]
fn captured_register_and_ack_fields() {
    let all = load();
    let reg = all
        .iter()
        .find(|c| c.name == "CSTOMA_REGISTER" && c.payload.len() == 55)
        .unwrap();
    match CsToMaster::decode(CSTOMA_REGISTER, &reg.payload).unwrap() {
        CsToMaster::RegisterBegin(b) => {
            assert_eq!(b.version, 0x0300EA);
            assert_eq!(b.ip, 0x7F00_0001);
            assert_eq!(b.port, 19522);
            assert_eq!(b.auth, None);
            assert_eq!(b.csid, 0);
        }
        other => panic!("{other:?}"),
    }
    let ack = all.iter().find(|c| c.name == "MATOCS_MASTER_ACK").unwrap();
    match MasterToCs::decode(MATOCS_MASTER_ACK, &ack.payload).unwrap() {
        MasterToCs::Ack(a) => {
            assert_eq!(a.version, Some(0x0300EA));
            assert_eq!(a.timeout, Some(10));
            assert_eq!(a.csid, Some(1));
            assert_eq!(a.metaid, Some(0x6B01_6053_FC04_4DBA));
        }
        other => panic!("{other:?}"),
    }
    // The first write piece carries "6:0 hello\n"-style content with the sender's CRC.
    let wd = all
        .iter()
        .find(|c| c.name == "CLTOCS_WRITE_DATA" && c.complete)
        .unwrap();
    match ToCs::decode(CLTOCS_WRITE_DATA, &wd.payload).unwrap() {
        ToCs::WriteData(d) => assert_eq!(d.crc, antler_protocol::crc::crc32(d.data)),
        other => panic!("{other:?}"),
    }
}
