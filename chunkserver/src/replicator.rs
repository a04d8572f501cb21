//! Replication: fetch a whole chunk copy from another chunkserver on the master's order.
//!
//! The copy is built under version 0 and only gets its real version once every block
//! arrived with a correct CRC, so a half-copied chunk is never reported as valid; on any
//! error it is deleted.

use crate::net::{self, read_packet};
use crate::store::{Status, Store};
use antler_protocol::codes::{status, BLOCK_SIZE, CSTOCS_MAXPACKETSIZE};
use antler_protocol::data::{FromCs, ReadReq, ToCs};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// Copies chunk `chunkid` at `version` from the chunkserver at `ip:port`.
pub fn replicate(store: &Arc<Store>, chunkid: u64, version: u32, ip: u32, port: u16) -> Status {
    if store.get(chunkid).is_some() {
        return status::CHUNKEXIST;
    }
    let src = net::ip_port(ip, port);
    let r = fetch(store, chunkid, version, src);
    if let Err(code) = r {
        warn!(chunk = format_args!("{chunkid:016X}"), %src, "replication failed: {}", status::name(code));
        if store.version_of(chunkid) == Some(0) {
            let _ = store.delete(chunkid, 0);
        }
        return code;
    }
    status::OK
}

fn fetch(
    store: &Arc<Store>,
    chunkid: u64,
    version: u32,
    src: std::net::SocketAddrV4,
) -> Result<(), Status> {
    let mut s = net::connect(src, Duration::from_secs(5)).map_err(|_| status::CANTCONNECT)?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    net::send(&mut s, &ToCs::GetChunkBlocks { chunkid, version }.encode())
        .map_err(|_| status::DISCONNECTED)?;
    let blocks = loop {
        let t = read_packet(&mut s, &mut buf, CSTOCS_MAXPACKETSIZE)
            .map_err(|_| status::DISCONNECTED)?
            .ok_or(status::DISCONNECTED)?;
        match FromCs::decode(t, &buf).map_err(|_| status::DISCONNECTED)? {
            FromCs::Nop => continue,
            FromCs::ChunkBlocks {
                chunkid: c,
                version: v,
                blocks,
                status: st,
            } => {
                if c != chunkid {
                    return Err(status::WRONGCHUNKID);
                }
                if v != version {
                    return Err(status::WRONGVERSION);
                }
                if st != status::OK {
                    return Err(st);
                }
                break blocks;
            }
            _ => return Err(status::DISCONNECTED),
        }
    };
    store.create(chunkid, 0)?;
    let sess = store.session(chunkid, 0)?;
    let mut scratch = Vec::new();
    if blocks > 0 {
        let req = ReadReq {
            protocol: None,
            chunkid,
            version,
            offset: 0,
            size: blocks as u32 * BLOCK_SIZE as u32,
        };
        net::send(&mut s, &ToCs::Read(req).encode()).map_err(|_| status::DISCONNECTED)?;
        let mut got = 0u16;
        loop {
            let t = read_packet(&mut s, &mut buf, CSTOCS_MAXPACKETSIZE)
                .map_err(|_| status::DISCONNECTED)?
                .ok_or(status::DISCONNECTED)?;
            match FromCs::decode(t, &buf).map_err(|_| status::DISCONNECTED)? {
                FromCs::Nop => {}
                FromCs::ReadData {
                    chunkid: c,
                    blocknum,
                    offset,
                    crc,
                    data,
                } => {
                    if c != chunkid {
                        return Err(status::WRONGCHUNKID);
                    }
                    if blocknum != got || offset != 0 || data.len() != BLOCK_SIZE {
                        return Err(status::DISCONNECTED);
                    }
                    sess.write(blocknum, 0, data, crc, &mut scratch)?;
                    got += 1;
                }
                FromCs::ReadStatus {
                    chunkid: c,
                    status: st,
                } => {
                    if c != chunkid {
                        return Err(status::WRONGCHUNKID);
                    }
                    if st != status::OK {
                        return Err(st);
                    }
                    if got != blocks {
                        return Err(status::DISCONNECTED);
                    }
                    break;
                }
                _ => return Err(status::DISCONNECTED),
            }
        }
    }
    sess.finish()?;
    store.set_version(chunkid, 0, version)
}
