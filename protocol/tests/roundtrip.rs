//! Round-trip property tests: every message encodes to a packet whose payload decodes to
//! the same message, and decoders never panic on arbitrary payloads.

use antler_protocol::cstoma::{
    Accepted, ChunkOpArgs, CsToMaster, MasterToCs, RegisterBegin, SpaceInfo, StatusKind,
};
use antler_protocol::data::{FromCs, ReadReq, ToCs, WriteData, WriteReq};
use antler_protocol::frame::split_packet;
use proptest::prelude::*;

fn accepted() -> impl Strategy<Value = Accepted> {
    prop_oneof![
        Just(Accepted {
            version: None,
            timeout: None,
            csid: None,
            metaid: None
        }),
        any::<u32>().prop_map(|v| Accepted {
            version: Some(v),
            timeout: None,
            csid: None,
            metaid: None
        }),
        (any::<u32>(), any::<u16>(), any::<u16>()).prop_map(|(v, t, c)| Accepted {
            version: Some(v),
            timeout: Some(t),
            csid: Some(c),
            metaid: None
        }),
        (any::<u32>(), any::<u16>(), any::<u16>(), any::<u64>()).prop_map(|(v, t, c, m)| {
            Accepted {
                version: Some(v),
                timeout: Some(t),
                csid: Some(c),
                metaid: Some(m),
            }
        }),
    ]
}

fn chunkop() -> impl Strategy<Value = ChunkOpArgs> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(chunkid, version, new_version, copy_chunkid, copy_version, length)| ChunkOpArgs {
                chunkid,
                version,
                new_version,
                copy_chunkid,
                copy_version,
                length,
            },
        )
}

fn master_to_cs() -> impl Strategy<Value = MasterToCs> {
    prop_oneof![
        Just(MasterToCs::Nop),
        accepted().prop_map(MasterToCs::Ack),
        any::<u32>().prop_map(|ip| MasterToCs::Redirect { ip }),
        (
            any::<u32>(),
            any::<u16>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(version, timeout, metaid)| MasterToCs::Wait {
                version,
                timeout,
                metaid
            }),
        any::<[u8; 32]>().prop_map(MasterToCs::AuthChallenge),
        (any::<u64>(), any::<u32>())
            .prop_map(|(chunkid, version)| MasterToCs::Create { chunkid, version }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(chunkid, version)| MasterToCs::Delete { chunkid, version }),
        (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
            |(chunkid, new_version, old_version)| MasterToCs::SetVersion {
                chunkid,
                new_version,
                old_version
            }
        ),
        (any::<u64>(), any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(a, b, c, d)| {
            MasterToCs::Duplicate {
                new_chunkid: a,
                new_version: b,
                src_chunkid: c,
                src_version: d,
            }
        }),
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(chunkid, length, new_version, old_version)| {
                MasterToCs::Truncate {
                    chunkid,
                    length,
                    new_version,
                    old_version,
                }
            }
        ),
        (
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(a, b, c, d, e)| {
                MasterToCs::DupTrunc {
                    new_chunkid: a,
                    new_version: b,
                    src_chunkid: c,
                    src_version: d,
                    length: e,
                }
            }),
        chunkop().prop_map(MasterToCs::ChunkOp),
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<u16>()).prop_map(
            |(chunkid, version, ip, port)| MasterToCs::Replicate {
                chunkid,
                version,
                ip,
                port
            }
        ),
        (any::<u64>(), any::<u32>())
            .prop_map(|(chunkid, version)| MasterToCs::GetChunkBlocks { chunkid, version }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(chunkid, version)| MasterToCs::GetChunkChecksumTab { chunkid, version }),
    ]
}

fn space() -> impl Strategy<Value = SpaceInfo> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
    )
        .prop_map(
            |(used, total, chunks, td_used, td_total, td_chunks)| SpaceInfo {
                used,
                total,
                chunks,
                td_used,
                td_total,
                td_chunks,
            },
        )
}

fn status_kind() -> impl Strategy<Value = StatusKind> {
    prop_oneof![
        Just(StatusKind::Create),
        Just(StatusKind::Delete),
        Just(StatusKind::Duplicate),
        Just(StatusKind::SetVersion),
        Just(StatusKind::Truncate),
        Just(StatusKind::DupTrunc),
    ]
}

fn cs_to_master() -> impl Strategy<Value = CsToMaster> {
    let list = proptest::collection::vec((any::<u64>(), any::<u32>()), 0..50);
    prop_oneof![
        Just(CsToMaster::Nop),
        (
            proptest::option::of(any::<[u8; 16]>()),
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            space()
        )
            .prop_map(|(auth, version, ip, port, timeout, csid, space)| {
                CsToMaster::RegisterBegin(RegisterBegin {
                    auth,
                    version,
                    ip,
                    port,
                    timeout,
                    csid,
                    space,
                })
            }),
        list.clone().prop_map(CsToMaster::RegisterChunks),
        Just(CsToMaster::RegisterEnd),
        Just(CsToMaster::RegisterDisconnect),
        space().prop_map(CsToMaster::Space),
        proptest::collection::vec(any::<u64>(), 0..50).prop_map(CsToMaster::ChunkDamaged),
        proptest::collection::vec(any::<u64>(), 0..50).prop_map(CsToMaster::ChunkLost),
        list.prop_map(CsToMaster::ChunkNew),
        Just(CsToMaster::ErrorOccurred),
        any::<u32>().prop_map(CsToMaster::Labels),
        (any::<u32>(), any::<u8>())
            .prop_map(|(load, hlstatus)| CsToMaster::CurrentLoad { load, hlstatus }),
        (status_kind(), any::<u64>(), any::<u8>()).prop_map(|(kind, chunkid, status)| {
            CsToMaster::Status {
                kind,
                chunkid,
                status,
            }
        }),
        (any::<u64>(), any::<u32>(), any::<u8>()).prop_map(|(chunkid, version, status)| {
            CsToMaster::ReplicateStatus {
                chunkid,
                version,
                status,
            }
        }),
        (chunkop(), any::<u8>()).prop_map(|(a, s)| CsToMaster::ChunkOpStatus(a, s)),
        (any::<u64>(), any::<u32>(), any::<u16>(), any::<u8>()).prop_map(
            |(chunkid, version, blocks, status)| CsToMaster::ChunkBlocks {
                chunkid,
                version,
                blocks,
                status
            }
        ),
        (
            any::<u64>(),
            any::<u32>(),
            prop_oneof![any::<u32>().prop_map(Ok), any::<u8>().prop_map(Err)]
        )
            .prop_map(|(chunkid, version, result)| CsToMaster::ChunkChecksum {
                chunkid,
                version,
                result
            }),
    ]
}

proptest! {
    #[test]
    fn master_to_cs_roundtrips(m in master_to_cs()) {
        let pkt = m.encode();
        let (t, p) = split_packet(&pkt).unwrap();
        prop_assert_eq!(MasterToCs::decode(t, p).unwrap(), m);
    }

    #[test]
    fn cs_to_master_roundtrips(m in cs_to_master()) {
        let pkt = m.encode();
        let (t, p) = split_packet(&pkt).unwrap();
        prop_assert_eq!(CsToMaster::decode(t, p).unwrap(), m);
    }

    #[test]
    fn data_requests_roundtrip(
        kind in 0u8..5, protocol in proptest::option::of(any::<u8>()), chunkid: u64, version: u32,
        a: u32, b: u32, chain in proptest::collection::vec((any::<u32>(), any::<u16>()), 0..5),
        data in proptest::collection::vec(any::<u8>(), 0..200), writeid: u32, blocknum: u16, offset: u16, crc: u32,
    ) {
        let m = match kind {
            0 => ToCs::Read(ReadReq { protocol, chunkid, version, offset: a, size: b }),
            1 => ToCs::Write(WriteReq { protocol: protocol.map(|p| p | 1).or(None), chunkid, version, chain }),
            2 => ToCs::WriteData(WriteData { chunkid, writeid, blocknum, offset, crc, data: &data }),
            3 => ToCs::WriteFinish { chunkid, version },
            _ => ToCs::GetVersion { msgid: protocol.map(|p| p as u32) },
        };
        let pkt = m.encode();
        let (t, p) = split_packet(&pkt).unwrap();
        prop_assert_eq!(ToCs::decode(t, p).unwrap(), m);
    }

    #[test]
    fn data_answers_roundtrip(
        kind in 0u8..4, chunkid: u64, version: u32, st: u8, writeid: u32, blocknum: u16, offset: u16, crc: u32,
        data in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let m = match kind {
            0 => FromCs::ReadStatus { chunkid, status: st },
            1 => FromCs::ReadData { chunkid, blocknum, offset, crc, data: &data },
            2 => FromCs::WriteStatus { chunkid, writeid, status: st },
            _ => FromCs::ChunkBlocks { chunkid, version, blocks: blocknum, status: st },
        };
        let pkt = m.encode();
        let (t, p) = split_packet(&pkt).unwrap();
        prop_assert_eq!(FromCs::decode(t, p).unwrap(), m);
    }

    #[test]
    fn decoders_never_panic(t in 0u32..400, p in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = MasterToCs::decode(t, &p);
        let _ = CsToMaster::decode(t, &p);
        let _ = ToCs::decode(t, &p);
        let _ = FromCs::decode(t, &p);
    }
}
