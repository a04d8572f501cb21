//! Antler's `mfsmaster` with the real MooseFS 3.0.117 `mfsmount` and chunkservers
//! (real and Antler's), all on loopback through the harness.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use antler_tests::*;

fn antler_master() -> Cluster {
    Cluster::builder().master_kind(MasterKind::Antler).start()
}

/// Files written through the real mount land on real and Antler chunkservers with the
/// goal's number of copies, read back intact after a remount, and tools see them.
#[test]
fn antler_master_serves_real_mount_and_chunkservers() {
    let _lock = cluster_lock();
    let mut c = antler_master();
    let cs0 = c.add_chunkserver(CsKind::Real);
    let cs1 = c.add_chunkserver(CsKind::Antler);
    c.wait_chunkservers(2, Duration::from_secs(90));
    let ports: BTreeSet<u16> = [c.chunkserver_port(cs0), c.chunkserver_port(cs1)].into();

    let mnt = c.mount();
    let dir = mnt.join("g2");
    fs::create_dir(&dir).unwrap();
    c.mfssetgoal(2, &dir, false);
    assert_eq!(parse_getgoal(&c.mfsgetgoal(&dir)), Some(2));

    let small = pattern_bytes(1, 3 << 20);
    let big = pattern_bytes(2, 70 << 20); // two chunks
    write_file_synced(&dir.join("small"), &small);
    write_file_synced(&dir.join("big"), &big);
    assert_eq!(parse_getgoal(&c.mfsgetgoal(&dir.join("big"))), Some(2));

    c.drop_caches();
    let mnt = c.remount();
    let dir = mnt.join("g2");
    c.drop_caches();
    assert_file_eq(&dir.join("small"), &small);
    assert_file_eq(&dir.join("big"), &big);

    for (name, nchunks) in [("small", 1usize), ("big", 2)] {
        let p = dir.join(name);
        let chunks = c.wait_copies(&p, 2, Duration::from_secs(120));
        assert_eq!(chunks.len(), nchunks, "{name}: {chunks:?}");
        for ch in chunks {
            assert_eq!(ch.valid_ports(), ports, "{name} chunk {}", ch.index);
        }
    }
    c.assert_alive();
}
