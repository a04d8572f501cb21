//! The metadata codec against files written by a real MooseFS 3.0.117 master
//! (`tests/data/empty.mfs`: a new file system after its first save; `rich.mfs`: every node
//! type, trash and sustained files, xattrs, ACLs, a quota, user storage classes, an open
//! session with locks, chunks). The `.metadump.txt` files are real `mfsmetadump` output.

use antler_protocol::metadata::{ntype, MetaImage, NodeData};
use std::path::PathBuf;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn dump_count(name: &str, prefix: &str) -> usize {
    String::from_utf8_lossy(&data(name))
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

#[test]
fn real_empty_file_round_trips_byte_for_byte() {
    let b = data("empty.mfs");
    let m = MetaImage::decode(&b).unwrap();
    assert_eq!(m.version, 2);
    assert_eq!(m.metaid, 0x6B01B7772853413E);
    assert_eq!(m.nodes.len(), 1);
    assert_eq!(m.nodes[0].inode, 1);
    assert_eq!(m.nodes[0].ntype, ntype::DIRECTORY);
    assert_eq!(m.next_chunk, 1);
    assert_eq!(m.encode(), b);
}

#[test]
fn real_rich_file_decodes_like_mfsmetadump_and_re_encodes() {
    let b = data("rich.mfs");
    let m = MetaImage::decode(&b).unwrap();
    let d = "rich.metadump.txt";
    assert_eq!(m.nodes.len(), dump_count(d, "NODE|"));
    assert_eq!(m.edges.len(), dump_count(d, "EDGE|"));
    assert_eq!(m.chunks.len(), dump_count(d, "CHUNK|"));
    assert_eq!(m.xattrs.len(), dump_count(d, "XATTR|"));
    assert_eq!(m.sessions.len(), dump_count(d, "SESSION|"));
    assert_eq!(m.open.len(), dump_count(d, "OPENFILE|"));
    assert_eq!(m.csdb.len(), dump_count(d, "CHUNKSERVER|"));
    assert_eq!(m.user_sclasses.len() + 9, dump_count(d, "SCLASS|"));
    assert!(m.nodes.iter().any(|n| n.ntype == ntype::TRASH));
    assert!(m.nodes.iter().any(|n| n.ntype == ntype::SUSTAINED));
    assert!(m
        .nodes
        .iter()
        .any(|n| matches!(&n.data, NodeData::Symlink(p) if !p.is_empty())));
    assert!(!m.quota_raw.is_empty() && !m.acl_raw.is_empty());
    assert!(!m.flock_raw.is_empty() && !m.plock_raw.is_empty());
    // Our encoding keeps everything but the per-session operation counters.
    let again = MetaImage::decode(&m.encode()).unwrap();
    assert_eq!(again, m);
    assert_eq!(m.encode().len(), b.len());
}
